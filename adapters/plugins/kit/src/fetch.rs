//! What a failed `fetch` means for a send.

use crate::reject::Reject;

/// `http-client.fetch-error`, without the bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// The host refused the request (its allow-list): nothing was sent.
    Denied(String),
    /// No connection: nothing was sent.
    Connect(String),
    /// The request may have arrived; no answer in time.
    Timeout,
    /// The answer was larger than the host accepts.
    TooLarge,
    /// The connection broke after the request may have arrived.
    Transport(String),
}

/// A send that did not get an answer to classify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// Nothing was sent (or the provider said no): a rejection.
    Rejected(Reject),
    /// The provider may have the message: in doubt, with why.
    InDoubt(String),
}

impl From<Reject> for SendFailure {
    fn from(reject: Reject) -> Self {
        SendFailure::Rejected(reject)
    }
}

impl FetchFailure {
    /// What went wrong, naming the other side as `peer` (`"Twilio"`, `"the token endpoint"`):
    /// `could not connect to <peer>: <err>`, `no answer from <peer> in time`,
    /// `<peer>'s answer was too large`, `<peer>'s answer was lost: <err>`; a denial is the host's
    /// own message.
    pub fn describe(&self, peer: &str) -> String {
        match self {
            FetchFailure::Denied(err) => err.clone(),
            FetchFailure::Connect(err) => format!("could not connect to {peer}: {err}"),
            FetchFailure::Timeout => format!("no answer from {peer} in time"),
            FetchFailure::TooLarge => format!("{peer}'s answer was too large"),
            FetchFailure::Transport(err) => format!("{peer}'s answer was lost: {err}"),
        }
    }

    /// Whether the request certainly did not reach the provider (Connect, Denied).
    pub fn nothing_sent(&self) -> bool {
        matches!(self, FetchFailure::Denied(_) | FetchFailure::Connect(_))
    }

    /// What a failed send request means, `provider` being the provider's display name in messages
    /// (see [`FetchFailure::describe`]). Connect and Denied left nothing: a retryable rejection
    /// (`connect_failed`, `fetch_denied`), safe to fail over at once. Timeout, TooLarge and
    /// Transport may have left the message with the provider: in doubt.
    pub fn after_send(self, provider: &str) -> SendFailure {
        let message = self.describe(provider);
        match self {
            FetchFailure::Connect(_) => {
                SendFailure::Rejected(Reject::new("connect_failed", message, true))
            }
            FetchFailure::Denied(_) => {
                SendFailure::Rejected(Reject::new("fetch_denied", message, true))
            }
            FetchFailure::Timeout | FetchFailure::TooLarge | FetchFailure::Transport(_) => {
                SendFailure::InDoubt(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(failure: FetchFailure) -> Reject {
        match failure.after_send("Twilio") {
            SendFailure::Rejected(reject) => reject,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn nothing_left_is_a_retryable_rejection() {
        let reject = rejected(FetchFailure::Connect("refused".to_owned()));
        assert_eq!(
            reject,
            Reject::new(
                "connect_failed",
                "could not connect to Twilio: refused",
                true
            )
        );
        let reject = rejected(FetchFailure::Denied("host not allowed".to_owned()));
        assert_eq!(
            reject,
            Reject::new("fetch_denied", "host not allowed", true)
        );
        assert!(FetchFailure::Connect(String::new()).nothing_sent());
        assert!(FetchFailure::Denied(String::new()).nothing_sent());
    }

    #[test]
    fn a_lost_answer_is_in_doubt() {
        assert_eq!(
            FetchFailure::Timeout.after_send("Twilio"),
            SendFailure::InDoubt("no answer from Twilio in time".to_owned())
        );
        assert_eq!(
            FetchFailure::TooLarge.after_send("the WhatsApp Cloud API"),
            SendFailure::InDoubt("the WhatsApp Cloud API's answer was too large".to_owned())
        );
        assert_eq!(
            FetchFailure::Transport("reset".to_owned()).after_send("SES"),
            SendFailure::InDoubt("SES's answer was lost: reset".to_owned())
        );
        for failure in [
            FetchFailure::Timeout,
            FetchFailure::TooLarge,
            FetchFailure::Transport(String::new()),
        ] {
            assert!(!failure.nothing_sent());
        }
    }

    #[test]
    fn a_reject_is_a_send_failure() {
        let reject = Reject::plugin_config("x");
        assert_eq!(
            SendFailure::from(reject.clone()),
            SendFailure::Rejected(reject)
        );
    }
}
