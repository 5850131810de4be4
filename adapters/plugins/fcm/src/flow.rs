//! One send, from a prepared request to its result: the access token (cache, or JWT + token
//! endpoint), the FCM call, and what fetch errors mean at each step. The host's services come in
//! through [`Host`], so the whole flow is unit-tested natively with a fake host; `lib.rs` wires
//! the real imports in.

use hermes_guest_kit::{FetchFailure, Reject, SendFailure};

use crate::auth::{self, ServiceAccount};
use crate::classify::{self, Outcome};
use crate::jwt;
use crate::request::{self, HttpRequest, Prepared};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the flow needs of the host.
pub trait Host {
    fn cache_get(&self, key: &str) -> Option<String>;
    fn cache_set(&self, key: &str, value: &str, ttl_seconds: u32);
    fn now_millis(&self) -> u64;
    fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, FetchFailure>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Accepted(Option<String>),
    Rejected(Reject),
    InDoubt(String),
}

impl From<SendFailure> for SendOutcome {
    fn from(failure: SendFailure) -> Self {
        match failure {
            SendFailure::Rejected(reject) => SendOutcome::Rejected(reject),
            SendFailure::InDoubt(message) => SendOutcome::InDoubt(message),
        }
    }
}

/// The cached access token, or a fresh one from the key's token endpoint (then cached for
/// `expires_in - 300` seconds). No message has been sent yet, so every failure is a rejection,
/// never in doubt.
pub fn access_token(host: &impl Host, account: &ServiceAccount) -> Result<String, Reject> {
    if let Some(token) = host
        .cache_get(auth::CACHE_KEY)
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(token);
    }
    let key = jwt::parse_private_key(account.private_key()).map_err(Reject::plugin_config)?;
    let assertion = jwt::assertion(
        &jwt::AssertionInput {
            client_email: account.client_email(),
            private_key_id: account.private_key_id(),
            token_uri: account.token_uri(),
            scope: jwt::FCM_SCOPE,
            now_seconds: host.now_millis() / 1000,
        },
        &key,
    )
    .map_err(Reject::plugin_config)?;
    let response = host
        .fetch(auth::token_request(account, &assertion))
        .map_err(|fail| match fail {
            FetchFailure::Denied(err) => {
                Reject::new("fetch_denied", format!("token endpoint: {err}"), true)
            }
            // Connect: `connect_failed`. The token request carries no message: a lost answer
            // costs a token, nothing more (`fcm_auth`, never in doubt).
            fail => match fail.after_send("the token endpoint") {
                SendFailure::Rejected(reject) => reject,
                SendFailure::InDoubt(message) => Reject::new("fcm_auth", message, true),
            },
        })?;
    let token = auth::token_answer(response.status, &response.headers, &response.body)?;
    if token.cache_ttl_seconds > 0 {
        host.cache_set(auth::CACHE_KEY, &token.token, token.cache_ttl_seconds);
    }
    Ok(token.token)
}

/// Sends a prepared message.
pub fn deliver(host: &impl Host, prepared: &Prepared) -> SendOutcome {
    let token = match access_token(host, &prepared.account) {
        Ok(token) => token,
        Err(reject) => return SendOutcome::Rejected(reject),
    };
    let response = match host.fetch(request::send_request(prepared, &token)) {
        Ok(response) => response,
        // Connect/Denied: nothing left, a rejection; otherwise FCM may have sent the message.
        Err(fail) => return fail.after_send("FCM").into(),
    };
    match classify::classify(response.status, &response.headers, &response.body) {
        Outcome::Accepted(name) => SendOutcome::Accepted(name),
        Outcome::Rejected { reject, drop_token } => {
            if drop_token {
                // FCM refused the token: the next attempt fetches a fresh one.
                host.cache_set(auth::CACHE_KEY, "", 0);
            }
            SendOutcome::Rejected(reject)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::RsaPublicKey;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::signature::Verifier as _;
    use sha2::Sha256;

    use super::*;
    use crate::request::{Chan, Config};

    const TEST_KEY: &str = include_str!("../tests/fixtures/test-service-account-key.pem");
    const TEST_PUBLIC_KEY: &str =
        include_str!("../tests/fixtures/test-service-account-key.pub.pem");
    const TOKEN_URI: &str = "http://127.0.0.1:4011/token";
    const NOW_MILLIS: u64 = 1_700_000_000_123;
    const NAME: &str = "projects/example-project/messages/0:1500415314455276%31bd1c9631bd1c96";

    /// A host whose answers are scripted, recording what the plugin does.
    #[derive(Default)]
    struct FakeHost {
        cache: RefCell<HashMap<String, String>>,
        cache_sets: RefCell<Vec<(String, String, u32)>>,
        answers: RefCell<VecDeque<Result<HttpResponse, FetchFailure>>>,
        requests: RefCell<Vec<HttpRequest>>,
    }

    impl FakeHost {
        fn answering(answers: Vec<Result<HttpResponse, FetchFailure>>) -> Self {
            FakeHost {
                answers: RefCell::new(answers.into()),
                ..FakeHost::default()
            }
        }

        fn with_cached_token(self, token: &str) -> Self {
            self.cache
                .borrow_mut()
                .insert(auth::CACHE_KEY.to_owned(), token.to_owned());
            self
        }
    }

    impl Host for FakeHost {
        fn cache_get(&self, key: &str) -> Option<String> {
            self.cache.borrow().get(key).cloned()
        }

        fn cache_set(&self, key: &str, value: &str, ttl_seconds: u32) {
            if ttl_seconds == 0 {
                self.cache.borrow_mut().remove(key);
            } else {
                self.cache
                    .borrow_mut()
                    .insert(key.to_owned(), value.to_owned());
            }
            self.cache_sets
                .borrow_mut()
                .push((key.to_owned(), value.to_owned(), ttl_seconds));
        }

        fn now_millis(&self) -> u64 {
            NOW_MILLIS
        }

        fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, FetchFailure> {
            self.requests.borrow_mut().push(request);
            self.answers
                .borrow_mut()
                .pop_front()
                .expect("an unscripted fetch")
        }
    }

    fn answer(status: u16, body: &str) -> Result<HttpResponse, FetchFailure> {
        Ok(HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    fn token_answer() -> Result<HttpResponse, FetchFailure> {
        answer(
            200,
            r#"{"access_token":"ya29.fresh","expires_in":3599,"token_type":"Bearer"}"#,
        )
    }

    fn sent() -> Result<HttpResponse, FetchFailure> {
        answer(200, &serde_json::json!({ "name": NAME }).to_string())
    }

    fn prepared() -> Prepared {
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": "0123456789abcdef",
            "private_key": TEST_KEY,
            "client_email": "hermes@example-project.iam.gserviceaccount.com",
            "token_uri": TOKEN_URI,
        });
        let config = Config {
            base_url: Some("http://127.0.0.1:4010".to_owned()),
            project_id: None,
            service_account_json: Some(key.to_string()),
        };
        request::prepare(
            &config,
            Chan::Push,
            "device-token",
            r#"{"channel":"push","title":"Hi","body":"there","data":null}"#,
        )
        .unwrap()
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn without_a_cached_token_it_gets_one_caches_it_and_sends() {
        let host = FakeHost::answering(vec![token_answer(), sent()]);
        let outcome = deliver(&host, &prepared());
        assert_eq!(outcome, SendOutcome::Accepted(Some(NAME.to_owned())));
        let requests = host.requests.borrow();
        assert_eq!(requests.len(), 2);

        // The token request: a jwt-bearer grant whose assertion verifies with the key's public
        // half and carries the host's time.
        let token_request = &requests[0];
        assert_eq!(token_request.url, TOKEN_URI);
        let form: HashMap<String, String> = form_urlencoded::parse(&token_request.body)
            .into_owned()
            .collect();
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        let assertion = &form["assertion"];
        let (signed, signature) = assertion.rsplit_once('.').unwrap();
        let public = RsaPublicKey::from_public_key_pem(TEST_PUBLIC_KEY).unwrap();
        let signature =
            Signature::try_from(URL_SAFE_NO_PAD.decode(signature).unwrap().as_slice()).unwrap();
        VerifyingKey::<Sha256>::new(public)
            .verify(signed.as_bytes(), &signature)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(signed.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_003_600u64);
        assert_eq!(claims["aud"], TOKEN_URI);
        assert_eq!(
            claims["iss"],
            "hermes@example-project.iam.gserviceaccount.com"
        );

        // The send: bearer token, the FCM path.
        let send = &requests[1];
        assert_eq!(
            send.url,
            "http://127.0.0.1:4010/v1/projects/example-project/messages:send"
        );
        assert_eq!(header(send, "authorization"), Some("Bearer ya29.fresh"));

        // Cached for expires_in - 300.
        assert_eq!(
            *host.cache_sets.borrow(),
            vec![("access_token".to_owned(), "ya29.fresh".to_owned(), 3299)]
        );
    }

    #[test]
    fn a_cached_token_is_reused_without_a_token_request() {
        let host = FakeHost::answering(vec![sent()]).with_cached_token("ya29.cached");
        assert_eq!(
            deliver(&host, &prepared()),
            SendOutcome::Accepted(Some(NAME.to_owned()))
        );
        let requests = host.requests.borrow();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            header(&requests[0], "authorization"),
            Some("Bearer ya29.cached")
        );
        assert!(host.cache_sets.borrow().is_empty());
    }

    #[test]
    fn a_401_drops_the_cached_token_and_is_retryable() {
        let unauthenticated = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        let host =
            FakeHost::answering(vec![answer(401, unauthenticated)]).with_cached_token("ya29.stale");
        let SendOutcome::Rejected(reject) = deliver(&host, &prepared()) else {
            panic!("expected a rejection");
        };
        assert_eq!(reject.code, "fcm_UNAUTHENTICATED");
        assert!(reject.retryable);
        assert_eq!(
            *host.cache_sets.borrow(),
            vec![("access_token".to_owned(), String::new(), 0)]
        );
        assert!(host.cache_get(auth::CACHE_KEY).is_none());
        // The next attempt fetches a fresh token.
        host.answers.borrow_mut().extend([token_answer(), sent()]);
        assert_eq!(
            deliver(&host, &prepared()),
            SendOutcome::Accepted(Some(NAME.to_owned()))
        );
        assert_eq!(host.requests.borrow()[1].url, TOKEN_URI);
    }

    #[test]
    fn a_dead_token_is_permanent_and_keeps_the_access_token() {
        let unregistered = serde_json::json!({"error": {
            "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
        }});
        let host = FakeHost::answering(vec![answer(404, &unregistered.to_string())])
            .with_cached_token("ya29.cached");
        let SendOutcome::Rejected(reject) = deliver(&host, &prepared()) else {
            panic!("expected a rejection");
        };
        assert_eq!(reject.code, "fcm_UNREGISTERED");
        assert!(!reject.retryable);
        assert!(host.cache_sets.borrow().is_empty());
    }

    #[test]
    fn token_endpoint_failures_are_retryable_rejections_and_nothing_is_sent() {
        let invalid_grant = answer(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        );
        for (fail, code) in [
            (invalid_grant, "fcm_auth"),
            (Err(FetchFailure::Timeout), "fcm_auth"),
            (Err(FetchFailure::TooLarge), "fcm_auth"),
            (Err(FetchFailure::Transport("reset".to_owned())), "fcm_auth"),
            (
                Err(FetchFailure::Connect("refused".to_owned())),
                "connect_failed",
            ),
            (
                Err(FetchFailure::Denied("not allowed".to_owned())),
                "fetch_denied",
            ),
            (answer(503, ""), "http_503"),
        ] {
            let host = FakeHost::answering(vec![fail]);
            let SendOutcome::Rejected(reject) = deliver(&host, &prepared()) else {
                panic!("expected a rejection for {code}");
            };
            assert_eq!(reject.code, code);
            assert!(reject.retryable);
            // Only the token request left; nothing was cached.
            assert_eq!(host.requests.borrow().len(), 1);
            assert!(host.cache_sets.borrow().is_empty());
        }
    }

    #[test]
    fn a_token_without_lifetime_is_used_but_not_cached() {
        let host =
            FakeHost::answering(vec![answer(200, r#"{"access_token":"ya29.once"}"#), sent()]);
        assert!(matches!(
            deliver(&host, &prepared()),
            SendOutcome::Accepted(_)
        ));
        assert!(host.cache_sets.borrow().is_empty());
    }

    #[test]
    fn send_fetch_errors_after_the_request_left_are_in_doubt() {
        for (fail, in_doubt) in [
            (FetchFailure::Timeout, true),
            (FetchFailure::TooLarge, true),
            (FetchFailure::Transport("reset".to_owned()), true),
            (FetchFailure::Connect("refused".to_owned()), false),
            (FetchFailure::Denied("not allowed".to_owned()), false),
        ] {
            let host = FakeHost::answering(vec![Err(fail.clone())]).with_cached_token("ya29.c");
            let outcome = deliver(&host, &prepared());
            match outcome {
                SendOutcome::InDoubt(_) => assert!(in_doubt, "{fail:?}"),
                SendOutcome::Rejected(reject) => {
                    assert!(!in_doubt, "{fail:?}");
                    assert!(reject.retryable);
                }
                other => panic!("{fail:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unreadable_private_key_is_a_config_error_before_any_fetch() {
        let mut prepared = prepared();
        prepared.account.private_key =
            Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".to_owned());
        let host = FakeHost::default();
        let SendOutcome::Rejected(reject) = deliver(&host, &prepared) else {
            panic!("expected a rejection");
        };
        assert_eq!(reject.code, "plugin_config");
        assert!(reject.retryable);
        assert!(host.requests.borrow().is_empty());
    }
}
