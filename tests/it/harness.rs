//! `TestApp`: a whole Hermes (API, saga, projector, timers, embedded mock provider) started
//! in-process on port 0 against a fresh database, plus helpers that speak its public API.

use hermes::app::{self, Roles, RunningApp};
use hermes::config::{DatabaseArgs, KafkaArgs, ServerArgs, WebhookArgs};
use hermes_infra::{Secret, db, tenants};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// How long a test waits for something that must happen (a status, a projection, a swap).
/// Generous on purpose: the tests assert outcomes, not latency (that is for benchmarks), and the
/// suite runs dozens of Hermes instances at once on two cores, where a subscriber can lag for
/// seconds. A passing run never waits this long.
pub const WITHIN: Duration = Duration::from_secs(60);

/// Where test databases are created; override with `HERMES_TEST_PG` (no database name).
fn pg_base() -> String {
    std::env::var("HERMES_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn database_url(name: &str) -> String {
    format!("{}/{name}", pg_base())
}

static CLEANED: OnceCell<()> = OnceCell::const_new();

/// Test databases are named `hermes_test_<pid>_<uuid>`: the process that made one.
const DATABASE_PREFIX: &str = "hermes_test_";

/// Drops the databases that test processes no longer running left behind (once per test
/// process). A database is only dropped when nobody is connected to it and the process that
/// made it is gone: a test process running alongside may have just created one and not yet
/// connected.
async fn drop_stale_databases() {
    CLEANED
        .get_or_init(|| async {
            let Ok(pool) = db::connect(&Secret::new(database_url("postgres")), 1).await else {
                return;
            };
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database d WHERE datname LIKE 'hermes\\_test\\_%'
                   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            for name in names.into_iter().filter(|n| !made_by_a_live_process(n)) {
                // Fails harmlessly if someone connected meanwhile.
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\""
                )))
                .execute(&pool)
                .await;
            }
        })
        .await;
}

fn made_by_a_live_process(database: &str) -> bool {
    let pid = database
        .strip_prefix(DATABASE_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// A fresh, empty database (Hermes migrates it when it starts); returns its URL.
pub async fn fresh_database() -> String {
    drop_stale_databases().await;
    let url = database_url(&format!(
        "{DATABASE_PREFIX}{}_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    db::ensure_database(&Secret::new(url.clone()))
        .await
        .expect("create test database");
    url
}

pub fn server_args(database_url: &str) -> ServerArgs {
    ServerArgs {
        database: DatabaseArgs {
            database_url: database_url.to_owned(),
            database_url_file: None,
            db_pool_size: 20,
        },
        kafka: KafkaArgs::off(),
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        mock_provider_url: None,
        mock_provider_secret: None,
        mock_receipt_delay_ms: 20,
        circuit_open_ms: 30_000,
        secret_key: None,
        secret_key_file: None,
        previous_secret_key: None,
        previous_secret_key_file: None,
        plugins_dir: None,
        admin_token: None,
        admin_token_file: None,
        mock_provider: true,
        tls_cert_file: None,
        tls_key_file: None,
        tls_reload_ms: 30_000,
        header_read_timeout_ms: 10_000,
        request_timeout_ms: 30_000,
        max_backlog_age_ms: None,
        log_checkpoint_every_ms: 60_000,
        redis_url: None,
        redis_url_file: None,
        webhooks: WebhookArgs {
            // The tests' receivers listen on 127.0.0.1.
            allow_private: true,
            ..WebhookArgs::default()
        },
    }
}

/// The admin token of [`TestApp::spawn_with_admin`].
pub const ADMIN_TOKEN: &str = "admin-token-for-the-tests-0123456789";

pub struct TestApp {
    pub app: RunningApp,
    pub database_url: String,
    pub client: reqwest::Client,
    pub api_key: String,
    pub tenant_id: Uuid,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut ServerArgs)) -> Self {
        Self::spawn_roles(Roles::all(), configure).await
    }

    /// Hermes with every role, its events carried to the saga and the projector by `kafka` when
    /// given (the relay role runs too), else by the Postgres tail: for scenarios that must hold on
    /// both transports.
    pub async fn spawn_over(
        kafka: Option<&crate::kafka::TestKafka>,
        configure: impl FnOnce(&mut ServerArgs),
    ) -> Self {
        Self::spawn_roles(Roles::all_for(kafka.is_some()), |args| {
            if let Some(kafka) = kafka {
                kafka.configure(&mut args.kafka);
            }
            configure(args);
        })
        .await
    }

    /// Hermes running only `roles` (as one of several processes would), on a fresh database.
    pub async fn spawn_roles(roles: Roles, configure: impl FnOnce(&mut ServerArgs)) -> Self {
        let database_url = fresh_database().await;
        let mut args = server_args(&database_url);
        configure(&mut args);
        let app = app::start(&args, roles).await.expect("hermes starts");
        let created = tenants::create_tenant(&app.pool, "test")
            .await
            .expect("tenant");
        TestApp {
            app,
            database_url,
            client: hermes_adapters::http::client(),
            api_key: created.api_key,
            tenant_id: created.tenant_id,
        }
    }

    /// Hermes with the admin API on ([`ADMIN_TOKEN`]).
    pub async fn spawn_with_admin() -> Self {
        Self::spawn_with(|args| args.admin_token = Some(ADMIN_TOKEN.to_owned())).await
    }

    /// An admin API call with [`ADMIN_TOKEN`]: its status and JSON body (`Null` when none).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An API call with `key`: its status and JSON body (`Null` when none).
    pub async fn call(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base_url)
    }

    /// Another tenant of the same Hermes: (tenant id, API key).
    pub async fn new_tenant(&self, name: &str) -> (Uuid, String) {
        let t = tenants::create_tenant(&self.app.pool, name)
            .await
            .expect("tenant");
        (t.tenant_id, t.api_key)
    }

    pub async fn post_message_as(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/messages"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_message(&self, body: &Value) -> reqwest::Response {
        self.post_message_as(&self.api_key, body).await
    }

    /// `POST /v1/messages/preview` with the tenant's key: the status and the JSON answer.
    pub async fn preview(&self, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/v1/messages/preview"))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON answer"))
    }

    /// Sends a message and returns its id, asserting it was accepted.
    pub async fn send(&self, body: &Value) -> String {
        let r = self.post_message(body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 202, "not accepted: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "accepted");
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn get_as(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// `GET /v1/messages/{id}`; `None` while the read model has not caught up (404).
    pub async fn message(&self, id: &str) -> Option<Value> {
        let r = self
            .get_as(&self.api_key, &format!("/v1/messages/{id}"))
            .await;
        match r.status().as_u16() {
            200 => Some(r.json().await.unwrap()),
            404 => None,
            s => panic!("GET message answered {s}: {}", r.text().await.unwrap()),
        }
    }

    /// Polls the message until `done` holds (the cascade runs in the background).
    pub async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(m) = self.message(id).await {
                if done(&m) {
                    return m;
                }
                last = Some(m);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("message {id} did not get there within {within:?}; last seen: {last:#?}");
    }

    pub async fn wait_for_status(&self, id: &str, status: &str, within: Duration) -> Value {
        self.wait_for(id, within, |m| m["status"] == status).await
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let r = self
            .get_as(&self.api_key, &format!("/v1/messages/{id}/events"))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["data"].as_array().unwrap().clone()
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Runs the `hermes` binary with `args` against this app's database.
    pub async fn hermes_cli(&self, args: &[&str]) -> std::process::Output {
        self.hermes_cli_with(args, &[]).await
    }

    /// [`Self::hermes_cli`] with `env` added to its environment.
    pub async fn hermes_cli_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_hermes"))
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("hermes runs")
    }

    pub fn mock_stats(&self) -> hermes_adapters::mock::MockProviderStats {
        self.app
            .mock
            .as_ref()
            .expect("embedded mock provider")
            .stats()
    }
}

/// A message body: `to`, a cascade of (channel, timeout seconds) steps, plain text content.
pub fn message(to: Value, steps: &[(&str, u32)]) -> Value {
    let cascade: Vec<Value> = steps
        .iter()
        .map(|(channel, timeout)| json!({"channel": channel, "timeout_seconds": timeout}))
        .collect();
    json!({
        "to": to,
        "content": {"text": "Your code is 1234", "email": {"subject": "Your code"}},
        "cascade": cascade,
    })
}

pub fn statuses(m: &Value) -> Vec<(String, String)> {
    m["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap().to_owned(),
                a["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
