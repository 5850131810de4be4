//! Firebase Cloud Messaging HTTP v1 (`fcm/fcm-v1.openapi.prism-patched.json`), with the OAuth2
//! token endpoint of the service-account key played by a small local server: no spec covers it.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use hermes_adapters::plugin::{PluginProvider, builtin};
use hermes_adapters::{Provider, SendError, SendRequest};
use hermes_domain::Channel;
use hermes_domain::message::ChannelContent;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

use crate::support::{self, attempt, prism};

const SPEC: &str = "fcm/fcm-v1.openapi.prism-patched.json";

/// Google's token endpoint: records each form it gets, answers with a token valid for an hour.
#[derive(Clone, Default)]
struct TokenServer {
    forms: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/token", post(token))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn forms(&self) -> Vec<String> {
        self.forms.lock().unwrap().clone()
    }
}

async fn token(State(server): State<TokenServer>, body: String) -> axum::Json<serde_json::Value> {
    server.forms.lock().unwrap().push(body);
    axum::Json(
        json!({"access_token": "ya29.hermes-test", "expires_in": 3599, "token_type": "Bearer"}),
    )
}

fn service_account(project_id: &str, token_uri: &str) -> String {
    let key = std::fs::read_to_string(
        support::repo_root()
            .join("adapters/plugins/fcm/tests/fixtures/test-service-account-key.pem"),
    )
    .unwrap();
    json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "0123456789abcdef",
        "private_key": key,
        "client_email": "hermes@hermes-test.iam.gserviceaccount.com",
        "token_uri": token_uri,
    })
    .to_string()
}

/// The FCM plugin for the Firebase project `project_id`. Prism is shared by the tests of this
/// binary, so a test that looks at Prism's log gives itself a project of its own and looks only
/// at the requests to it.
async fn plugin(project_id: &str, base_url: &str, token_uri: &str) -> Arc<PluginProvider> {
    support::load(
        builtin::FCM,
        "fcm",
        &[
            ("base_url", base_url),
            (
                "service_account_json",
                &service_account(project_id, token_uri),
            ),
        ],
    )
    .await
}

fn push(token: &str) -> SendRequest {
    let mut data = serde_json::Map::new();
    data.insert("order".to_owned(), json!("A-1042"));
    data.insert("items".to_owned(), json!(3));
    attempt(
        "fcm",
        Channel::Push,
        token,
        ChannelContent::Push {
            title: Some("Your order shipped".to_owned()),
            body: Some("It arrives on Tuesday".to_owned()),
            data: Some(data),
        },
    )
}

#[tokio::test]
async fn pushes_satisfy_the_fcm_spec_and_reuse_one_access_token() {
    let prism = prism::shared(SPEC);
    let tokens = TokenServer::default();
    let token_uri = tokens.start().await;
    let fcm = plugin("hermes-test", &prism.base_url, &token_uri).await;

    let accepted = support::send_accepted(prism, &fcm, &push("device-token-1")).await;
    assert!(accepted.provider_message_id.is_some(), "FCM's message name");
    support::send_accepted(prism, &fcm, &push("device-token-2")).await;
    assert!(
        prism.logs_within(
            "projects/hermes-test/messages:send",
            std::time::Duration::from_secs(5)
        ),
        "Prism's log names the project of each push (the test below relies on it)"
    );

    let forms = tokens.forms();
    assert_eq!(forms.len(), 1, "the access token is cached between calls");
    let form: Vec<(String, String)> = form_urlencoded::parse(forms[0].as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        form[0],
        (
            "grant_type".to_owned(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()
        )
    );
    let assertion = &form[1].1;
    let header = assertion.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(assertion.split('.').count(), 3, "a signed JWT");
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_a_retryable_rejection_and_nothing_is_sent() {
    let prism = prism::shared(SPEC);
    let fcm = plugin(
        "hermes-no-token",
        &prism.base_url,
        "http://127.0.0.1:9/token",
    )
    .await;
    match fcm.send(&push("device-token-1")).await {
        Err(SendError::Rejected { retryable, .. }) => assert!(retryable),
        other => panic!("expected a retryable rejection, got {other:?}"),
    }
    assert!(
        !prism
            .log()
            .iter()
            .any(|l| l.contains("projects/hermes-no-token/messages:send")),
        "no push went out without a token"
    );
}
