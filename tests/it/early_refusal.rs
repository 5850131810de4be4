//! A request refused before its body was read (no key, a wrong token, a body over the limit) gets
//! its problem+json answer, whatever the client: reqwest, Python's urllib, curl. Without the
//! lingering read (`hermes_infra::http::drain`) most of these end in a reset connection.

use crate::harness::TestApp;
use serde_json::Value;
use std::process::{Command, Stdio};
use uuid::Uuid;

const TOKEN: &str = "admin-token-for-the-tests-0123456789";
/// Each case is tried this often, each time on a new connection: the reset it guards against
/// depends on timing, so one try proves little.
const TRIES: usize = 10;
const ONE_MIB: usize = 1 << 20;

struct Case {
    method: reqwest::Method,
    path: String,
    token: Option<&'static str>,
    body_len: usize,
    status: u16,
    code: &'static str,
}

fn cases(app: &TestApp) -> Vec<Case> {
    let upload_too_large = hermes_command::admin::MAX_PLUGIN_BYTES + 1;
    let (message, attempt) = (Uuid::now_v7(), Uuid::now_v7());
    let key: &'static str = Box::leak(app.api_key.clone().into_boxed_str());
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    let case = |method: &reqwest::Method, path: &str, token, body_len, status, code| Case {
        method: method.clone(),
        path: path.to_owned(),
        token,
        body_len,
        status,
        code,
    };
    vec![
        case(
            &put,
            "/admin/v1/plugins/mock",
            None,
            upload_too_large,
            401,
            "unauthorized",
        ),
        case(
            &put,
            "/admin/v1/plugins/mock",
            Some("wrong-token-wrong-token-wrong-token"),
            upload_too_large,
            401,
            "unauthorized",
        ),
        case(
            &put,
            "/admin/v1/plugins/mock",
            Some(TOKEN),
            upload_too_large,
            413,
            "payload_too_large",
        ),
        case(&post, "/v1/messages", None, ONE_MIB, 401, "unauthorized"),
        case(
            &post,
            "/v1/messages",
            Some("hms_not_a_key"),
            ONE_MIB,
            401,
            "unauthorized",
        ),
        case(
            &post,
            "/v1/messages",
            Some(key),
            ONE_MIB,
            413,
            "payload_too_large",
        ),
        case(
            &post,
            &format!("/v1/messages/{message}/ack"),
            None,
            ONE_MIB,
            401,
            "unauthorized",
        ),
        case(
            &post,
            &format!("/v1/messages/{message}/ack"),
            Some(key),
            ONE_MIB,
            413,
            "payload_too_large",
        ),
        case(
            &post,
            &format!("/v1/webhooks/nobody/{message}/{attempt}"),
            None,
            ONE_MIB,
            404,
            "unknown_provider",
        ),
        case(
            &post,
            &format!("/v1/webhooks/mock/{message}/{attempt}"),
            None,
            3 * ONE_MIB,
            413,
            "payload_too_large",
        ),
    ]
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(|args| args.admin_token = Some(TOKEN.to_owned())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_reads_every_early_refusal() {
    let app = spawn().await;
    // A new connection for every request: a connection the server closed is not reused.
    let client = hermes_adapters::http::client_builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for case in cases(&app) {
        for _ in 0..TRIES {
            let mut request = client
                .request(case.method.clone(), app.url(&case.path))
                .header("content-type", "application/json")
                .body(vec![b'x'; case.body_len]);
            if let Some(token) = case.token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{} {}: no answer read: {e:?}", case.method, case.path));
            assert_eq!(
                response.status(),
                case.status,
                "{} {}",
                case.method,
                case.path
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{} {}",
                case.method,
                case.path
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], case.code, "{} {}", case.method, case.path);
        }
    }
}

/// Runs a client (`python3`, `curl`) off the async runtime with `input` on its stdin, and returns
/// what it printed; fails the test, with its stderr, if it fails.
async fn run_client(case: &str, mut client: Command, input: Vec<u8>) -> String {
    let case = case.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = client
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{client:?} runs (it is on every machine of this project's kind): {err}")
            });
        // The client may stop reading its input once it has the answer.
        let mut stdin = child.stdin.take().unwrap();
        let _ = std::io::Write::write_all(&mut stdin, &input);
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{case}: {client:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .unwrap()
}

/// Python's urllib writes the whole body before it reads anything, the client most often broken
/// by an early close.
const URLLIB: &str = r#"
import sys, json, urllib.request, urllib.error
method, url, token, size, tries = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
for _ in range(tries):
    req = urllib.request.Request(url, data=b"x" * size, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        urllib.request.urlopen(req, timeout=30)
        print("unexpected success"); sys.exit(1)
    except urllib.error.HTTPError as e:
        print(e.code, e.headers.get("Content-Type"), json.loads(e.read())["code"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_urllib_reads_early_refusals() {
    let app = spawn().await;
    for case in cases(&app).into_iter().filter(|c| c.token.is_none()) {
        let url = app.url(&case.path);
        let size = case.body_len.to_string();
        let method = case.method.to_string();
        let mut urllib = Command::new("python3");
        urllib.args(["-c", URLLIB, &method, &url, "", &size, &TRIES.to_string()]);
        let stdout = run_client(&case.path, urllib, Vec::new()).await;
        let expected = format!("{} application/problem+json {}", case.status, case.code);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, vec![expected.as_str(); TRIES], "{}", case.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_early_refusals() {
    let app = spawn().await;
    for case in cases(&app) {
        let url = app.url(&case.path);
        let method = case.method.to_string();
        let token = case.token.map(|t| format!("Authorization: Bearer {t}"));
        let mut curl = Command::new("curl");
        // Over 1 MiB curl sends `Expect: 100-continue`; both paths are covered.
        curl.args([
            "-sS",
            "-X",
            &method,
            "--data-binary",
            "@-",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .args(["-H", "content-type: application/json"]);
        if let Some(token) = &token {
            curl.args(["-H", token]);
        }
        curl.arg(&url);
        let stdout = run_client(&case.path, curl, vec![b'x'; case.body_len]).await;
        let (body, last) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(
            last,
            format!("{} application/problem+json", case.status),
            "{}",
            case.path
        );
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], case.code, "{}", case.path);
    }
}
