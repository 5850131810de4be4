//! Specs derived from the providers' own, where Prism cannot use the original as it is. Each change
//! is the smallest that lets Prism route or accept what the provider's documentation says, and is
//! written next to its reason. Derived files go to the test binary's scratch directory.

use std::path::PathBuf;

fn write(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("provider-specs");
    std::fs::create_dir_all(&dir).expect("creating the derived specs directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("writing a derived spec");
    path
}

/// Replaces `anchor`, which must occur exactly once, with `replacement`.
fn replace_once(text: &str, anchor: &str, replacement: &str) -> String {
    assert_eq!(
        text.matches(anchor).count(),
        1,
        "the spec changed: {anchor:?} is no longer unique"
    );
    text.replacen(anchor, replacement, 1)
}

/// Vonage SMS: the server is `https://rest.nexmo.com/sms` and the path `/{format}`; Prism drops a
/// server's path, so the original is served at `/json` instead of `/sms/json`. Moved into the path.
pub fn vonage_sms() -> PathBuf {
    let original = std::fs::read_to_string(super::spec("vonage/sms-1.2.0.openapi.json")).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(spec["servers"][0]["url"], "https://rest.nexmo.com/sms");
    spec["servers"][0]["url"] = "https://rest.nexmo.com".into();
    let paths = spec["paths"].as_object_mut().unwrap();
    let send = paths.remove("/{format}").expect("the spec's send path");
    paths.insert("/sms/{format}".to_owned(), send);
    write(
        "vonage-sms.json",
        &serde_json::to_string_pretty(&spec).unwrap(),
    )
}

/// WhatsApp Cloud API: `biz_opaque_callback_data` is a documented send field ("Messages" reference:
/// an arbitrary string returned in every status webhook of the message), and Hermes relies on it
/// to match statuses to attempts, but v23.0's spec does not declare it, and `TextMessage` forbids
/// undeclared properties. Declared on the common message properties and on `TextMessage`.
pub fn whatsapp() -> PathBuf {
    let original =
        std::fs::read_to_string(super::spec("whatsapp/business-messaging-api_v23.0.yaml")).unwrap();
    let field = |indent: &str| {
        format!(
            "{indent}biz_opaque_callback_data:\n{indent}  type: string\n{indent}  maxLength: 512\n"
        )
    };
    let base = "    BaseMessageProperties:\n      type: object\n      description: Common properties shared by all message types\n      required:\n      - messaging_product\n      - recipient_type\n      - to\n      - type\n      properties:\n";
    let patched = replace_once(&original, base, &format!("{base}{}", field("        ")));
    let text = "    TextMessage:\n      allOf:\n      - $ref: '#/components/schemas/BaseMessageProperties'\n      - type: object\n        additionalProperties: false\n        required:\n        - text\n        properties:\n";
    let patched = replace_once(&patched, text, &format!("{text}{}", field("          ")));
    write("whatsapp.yaml", &patched)
}
