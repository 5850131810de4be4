//! `hermes bench --channel`: the message the load generator sends on each channel is one Hermes
//! accepts and delivers through the mock provider, so a bench run measures deliveries, not
//! refusals.

use crate::harness::{TestApp, WITHIN};
use clap::Parser;
use hermes_loadgen::{LoadArgs, message_body};
use serde_json::Value;

#[derive(Parser)]
struct Bench {
    #[command(flatten)]
    load: LoadArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_message_of_every_channel_is_delivered() {
    let app = TestApp::spawn().await;
    for channel in ["sms", "email", "push", "whatsapp"] {
        let args = Bench::parse_from(["bench", "--channel", channel]).load;
        let body: Value = serde_json::from_str(&message_body(&args)).unwrap();
        assert_eq!(body["cascade"][0]["channel"], channel, "{body}");
        let r = app.post_message(&body).await;
        assert_eq!(r.status(), 202, "{channel}: {}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let message = app
            .wait_for(&id, WITHIN, |m| {
                matches!(m["status"].as_str(), Some("delivered" | "read"))
            })
            .await;
        assert_eq!(message["attempts"][0]["channel"], channel);
    }
}
