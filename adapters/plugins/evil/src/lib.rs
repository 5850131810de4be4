//! A deliberately misbehaving provider plugin, to prove the host contains it. What `send` does
//! depends on the recipient:
//!
//! | `to`          | behaviour                                                  |
//! |---------------|------------------------------------------------------------|
//! | `loop`        | spins forever                                              |
//! | `oom`         | allocates until memory runs out                            |
//! | `panic`       | panics (a trap: `unreachable`)                             |
//! | `fetch:<url>` | fetches `<url>` and reports the outcome as a rejection     |
//! | anything else | accepted, provider message id `evil-ok`                    |
//!
//! `parse-callback` misbehaves the same way, keyed by the callback URL's last path segment.

// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider",
});

use hermes::provider::http_client::{self, Request};
use hermes::provider::types::{Accepted, Channel, ReceiptStyle, Rejection};

struct EvilPlugin;

export!(EvilPlugin);

impl Guest for EvilPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "evil".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Sms],
            receipt_style: ReceiptStyle::None,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        if let Some(url) = request.to.strip_prefix("fetch:") {
            let outcome = http_client::fetch(&Request {
                method: "GET".to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
            });
            return SendResult::Rejected(Rejection {
                code: "fetched".to_owned(),
                message: format!("{:?}", outcome.map(|r| r.status)),
                retryable: false,
                retry_after_seconds: None,
            });
        }
        misbehave(&request.to);
        SendResult::Accepted(Accepted {
            provider_message_id: Some("evil-ok".to_owned()),
        })
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        misbehave(request.url.rsplit('/').next().unwrap_or_default());
        Err(CallbackError::Malformed("evil never parses".to_owned()))
    }
}

fn misbehave(what: &str) {
    match what {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                hoard.push(std::hint::black_box(chunk));
            }
        }
        "panic" => panic!("evil plugin panics on purpose"),
        _ => {}
    }
}
