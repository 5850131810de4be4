//! moto's server (`moto[server]`, pinned in `tools/moto`) as Amazon SES v2 with authentication
//! enforced: every request past the first four must carry a valid SigV4 signature of an IAM user
//! allowed `ses:SendEmail`, so a wrongly signed request fails as it would at AWS.
//!
//! moto picks the service from the `Authorization` header's credential scope (it ignores Host),
//! so the four unauthenticated setup calls carry a dummy header naming the service. Started once
//! per test binary; stopped, like Prism, when the binary's end of a pipe closes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The address moto verifies as a sender during setup.
pub const SENDER: &str = "hermes@example.com";
pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub base_url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    _child: Child,
    _lifeline: ChildStdin,
}

impl Moto {
    /// Everything moto holds (sent emails under `ses`), as JSON text.
    pub async fn data(&self) -> String {
        hermes_adapters::http::client()
            .get(format!("{}/moto-api/data.json", self.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The moto of this test binary, started and set up on first use.
pub async fn shared() -> &'static Moto {
    static MOTO: OnceCell<Moto> = OnceCell::const_new();
    MOTO.get_or_init(start).await
}

fn dummy_auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20240101/{REGION}/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

fn xml_field<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find("</").unwrap() + start;
    &xml[start..end]
}

/// `moto_server` from the virtualenv in `tools/moto/.venv`, made on first use from the pinned
/// requirements by `tools/ensure_venv.py` (and made again when they change).
fn moto_server_bin() -> PathBuf {
    let root = super::repo_root();
    let status = Command::new("python3")
        .arg(root.join("tools/ensure_venv.py"))
        .arg(root.join("tools/moto"))
        .status()
        .expect("python3 runs (moto needs it)");
    assert!(status.success(), "tools/ensure_venv.py tools/moto failed");
    root.join("tools/moto/.venv/bin/moto_server")
}

async fn start() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" & moto=$!; read _ignored; kill $moto"#)
        .arg(moto_server_bin())
        .arg(port.to_string())
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto");
    let lifeline = child.stdin.take().expect("piped stdin");
    let base_url = format!("http://127.0.0.1:{port}");
    let http = hermes_adapters::http::client();
    let started = Instant::now();
    // `/moto-api/` does not count against the unauthenticated budget.
    while http
        .get(format!("{base_url}/moto-api/"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start within a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let iam = |form: String| {
        http.post(format!("{base_url}/"))
            .header("authorization", dummy_auth("iam"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let ok = |response: reqwest::Response| async move {
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "moto setup: {status} {text}");
        text
    };
    ok(
        iam("Action=CreateUser&Version=2010-05-08&UserName=hermes".into())
            .await
            .unwrap(),
    )
    .await;
    let key = ok(
        iam("Action=CreateAccessKey&Version=2010-05-08&UserName=hermes".into())
            .await
            .unwrap(),
    )
    .await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:SendEmail","Resource":"*"}]}"#;
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("Action", "PutUserPolicy"),
            ("Version", "2010-05-08"),
            ("UserName", "hermes"),
            ("PolicyName", "send-email"),
            ("PolicyDocument", policy),
        ])
        .finish();
    ok(iam(form).await.unwrap()).await;
    ok(http
        .post(format!("{base_url}/v2/email/identities"))
        .header("authorization", dummy_auth("ses"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"EmailIdentity":"{SENDER}"}}"#))
        .send()
        .await
        .unwrap())
    .await;
    Moto {
        base_url,
        access_key_id: xml_field(&key, "AccessKeyId").to_owned(),
        secret_access_key: xml_field(&key, "SecretAccessKey").to_owned(),
        _child: child,
        _lifeline: lifeline,
    }
}
