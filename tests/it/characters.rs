//! Characters a request may not carry (issue 8, item 2): NUL anywhere (Postgres cannot store
//! it) and, in text people read, every control character but tab, newline and CR. Each is a 422
//! `invalid_characters` naming the field, and stores nothing.

use crate::harness::TestApp;
use serde_json::{Value, json};

/// A request that uses every field kind, valid as it is.
fn everything() -> Value {
    json!({
        "to": {
            "phone": "+14155550100",
            "email": "ada@example.com",
            "push_token": "tok-1",
            "whatsapp": "+14155550100",
        },
        "content": {
            "text": "hello",
            "sms": {"text": "sms"},
            "email": {"subject": "subject", "text": "text", "html": "<p>html</p>"},
            "push": {"title": "title", "body": "body", "data": {"deep": {"list": ["v"]}}},
            "whatsapp": {
                "text": "wa",
                "template": {
                    "name": "order_shipped",
                    "language": "en_US",
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "p"}]}],
                },
            },
        },
        "cascade": [{"channel": "sms"}],
        "reference": "ref",
        "metadata": {"order": {"lines": [1, "x"]}},
    })
}

/// Appends `bad` to the string at `pointer` (or, for `key:` pointers, adds a member whose key
/// ends with it).
fn poisoned(pointer: &str, bad: &str) -> Value {
    let mut body = everything();
    if let Some(object) = pointer.strip_prefix("key:") {
        body.pointer_mut(object)
            .and_then(Value::as_object_mut)
            .expect("object")
            .insert(format!("k{bad}"), json!(1));
    } else {
        let s = body.pointer_mut(pointer).expect(pointer);
        *s = json!(format!("{}{bad}", s.as_str().expect("string")));
    }
    body
}

async fn problem(app: &TestApp, body: &Value) -> (u16, Value) {
    let r = app.post_message(body).await;
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_or_control_character_in_any_field_is_refused_with_its_path() {
    let app = TestApp::spawn().await;
    let (status, body) = problem(&app, &everything()).await;
    assert_eq!(status, 202, "the unpoisoned request is valid: {body}");

    // (where the character goes, the field path the answer names, whether only NUL is refused)
    let cases = [
        ("/to/phone", "to.phone", false),
        ("/to/email", "to.email", false),
        ("/to/push_token", "to.push_token", false),
        ("/to/whatsapp", "to.whatsapp", false),
        ("/content/text", "content.text", false),
        ("/content/sms/text", "content.sms.text", false),
        ("/content/email/subject", "content.email.subject", false),
        ("/content/email/text", "content.email.text", false),
        ("/content/email/html", "content.email.html", false),
        ("/content/push/title", "content.push.title", false),
        ("/content/push/body", "content.push.body", false),
        ("/content/whatsapp/text", "content.whatsapp.text", false),
        (
            "/content/whatsapp/template/name",
            "content.whatsapp.template.name",
            false,
        ),
        (
            "/content/whatsapp/template/language",
            "content.whatsapp.template.language",
            false,
        ),
        (
            "/content/whatsapp/template/components/0/parameters/0/text",
            "content.whatsapp.template.components[0].parameters[0].text",
            false,
        ),
        ("/reference", "reference", false),
        (
            "/content/push/data/deep/list/0",
            "content.push.data.deep.list[0]",
            true,
        ),
        (
            "key:/content/push/data/deep",
            "content.push.data.deep.k\\0",
            true,
        ),
        ("/metadata/order/lines/1", "metadata.order.lines[1]", true),
        ("key:/metadata", "metadata.k\\0", true),
        ("key:/metadata/order", "metadata.order.k\\0", true),
    ];
    for (pointer, field, opaque) in cases {
        for bad in ["\u{0}", "\u{1b}", "\u{7f}", "\u{85}"] {
            let (status, body) = problem(&app, &poisoned(pointer, bad)).await;
            if opaque && bad != "\u{0}" {
                assert_eq!(
                    status, 202,
                    "{pointer} {bad:?}: opaque data may hold it: {body}"
                );
                continue;
            }
            assert_eq!(status, 422, "{pointer} {bad:?}: {body}");
            assert_eq!(
                body["code"], "invalid_characters",
                "{pointer} {bad:?}: {body}"
            );
            let fields: Vec<&str> = body["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .filter(|e| e["code"] == "invalid_characters")
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert_eq!(fields, vec![field], "{pointer} {bad:?}: {body}");
        }
    }
    // Tab, newline and CR are text.
    let (status, body) = problem(&app, &poisoned("/content/text", "\t\r\n")).await;
    assert_eq!(status, 202, "{body}");

    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'MessageAccepted'")
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
    // The valid request, the opaque cases with other controls (5 × 3), the tab/newline one.
    assert_eq!(stored, 1 + 5 * 3 + 1);
}
