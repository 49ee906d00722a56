//! A sluice server per test, on port 0, on SQLite or on a fresh PostgreSQL database.

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::{Config, Limits, StoreConfig};
use sluice::store::Store;
use sqlx::Connection;
use tokio::sync::oneshot;

pub const KEY: &str = "sk_test_bootstrap_key_0123456789";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and a client for it.
pub struct TestServer {
    pub base: String,
    pub key: String,
    pub config: Config,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    /// The admin URL and name of this server's own PostgreSQL database, dropped on stop.
    postgres: Option<(String, String)>,
}

/// The PostgreSQL URL the suite runs against. The suite refuses to skip PostgreSQL silently:
/// without `SLUICE_TEST_POSTGRES_URL` a PostgreSQL test fails, unless
/// `SLUICE_TEST_SKIP_POSTGRES=1` says to skip on purpose.
fn postgres_admin_url() -> Option<String> {
    match std::env::var("SLUICE_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("SLUICE_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => None,
        Err(_) => panic!(
            "SLUICE_TEST_POSTGRES_URL is not set; run scripts/test.sh, or set \
             SLUICE_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL tests on purpose"
        ),
    }
}

async fn fresh_postgres_database(admin_url: &str) -> (String, String) {
    let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url).await.expect("connect to postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let (base, _) = admin_url.rsplit_once('/').expect("postgres URL has a database");
    (format!("{base}/{name}"), name)
}

async fn drop_postgres_database(admin_url: &str, name: &str) {
    let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await else { return };
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok();
    conn.close().await.ok();
}

/// Starts a server on `backend`; `None` when PostgreSQL is skipped on purpose.
pub async fn start(backend: Backend) -> Option<TestServer> {
    start_with(backend, Limits::default()).await
}

pub async fn start_with(backend: Backend, limits: Limits) -> Option<TestServer> {
    start_custom(backend, limits, 2).await
}

/// Starts a server whose URL fetches may reach the given private networks (CIDRs).
pub async fn start_allowing(backend: Backend, allow: &str) -> Option<TestServer> {
    let allow = sluice::fetch::FetchPolicy::parse_allow_list(allow).expect("allow list");
    let fetch = sluice::fetch::FetchPolicy { allow, ..Default::default() };
    start_full(backend, Limits::default(), 2, fetch, Default::default(), Default::default()).await
}

/// Starts a server whose fetches and webhooks may reach `allow` (CIDRs), with these webhook
/// settings (short retry delays, for tests).
pub async fn start_hooks(
    backend: Backend,
    allow: &str,
    webhooks: sluice::config::WebhookSettings,
) -> Option<TestServer> {
    let allow = sluice::fetch::FetchPolicy::parse_allow_list(allow).expect("allow list");
    let fetch = sluice::fetch::FetchPolicy { allow, ..Default::default() };
    start_full(backend, Limits::default(), 2, fetch, webhooks, Default::default()).await
}

/// Starts a server that processes batches with these settings.
pub async fn start_processing(
    backend: Backend,
    processing: sluice::config::ProcessingSettings,
) -> Option<TestServer> {
    let fetch = sluice::fetch::FetchPolicy::default();
    start_full(backend, Limits::default(), 2, fetch, Default::default(), processing).await
}

/// Starts a SQLite server whose blobs live at `storage_url`, configured by `storage_env`, and
/// whose URL fetches may reach `allow`.
pub async fn start_on_storage(
    storage_url: String,
    storage_env: Vec<(String, String)>,
    allow: &str,
) -> TestServer {
    let allow = sluice::fetch::FetchPolicy::parse_allow_list(allow).expect("allow list");
    let fetch = sluice::fetch::FetchPolicy { allow, ..Default::default() };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        store: StoreConfig {
            data_dir: dir.path().to_path_buf(),
            database_url: format!("sqlite:{}", dir.path().join("sluice.db").display()),
            max_connections: 8,
        },
        storage_url,
        bootstrap_api_key: Some(KEY.to_string()),
        limits: Limits::default(),
        role: sluice::config::Role::All,
        workers: 2,
        public_url: None,
        master_key: [42; 32],
        fetch,
        sluice_signs_urls: false,
        storage_env,
        webhooks: Default::default(),
        processing: sluice::config::ProcessingSettings::default(),
    };
    launch(config, dir, None).await
}

/// Starts a server with `workers` job workers (0 leaves every job queued).
pub async fn start_custom(backend: Backend, limits: Limits, workers: usize) -> Option<TestServer> {
    let fetch = sluice::fetch::FetchPolicy::default();
    start_full(backend, limits, workers, fetch, Default::default(), Default::default()).await
}

async fn start_full(
    backend: Backend,
    limits: Limits,
    workers: usize,
    fetch: sluice::fetch::FetchPolicy,
    webhooks: sluice::config::WebhookSettings,
    processing: sluice::config::ProcessingSettings,
) -> Option<TestServer> {
    // SLUICE_TEST_LOG=debug shows the servers' logs with a failing test's output.
    if let Ok(filter) = std::env::var("SLUICE_TEST_LOG") {
        let filter = tracing_subscriber::EnvFilter::new(filter);
        tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init().ok();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, postgres) = match backend {
        Backend::Sqlite => (format!("sqlite:{}", dir.path().join("sluice.db").display()), None),
        Backend::Postgres => {
            let admin = postgres_admin_url()?;
            let (url, name) = fresh_postgres_database(&admin).await;
            (url, Some((admin, name)))
        }
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        store: StoreConfig { data_dir: dir.path().to_path_buf(), database_url, max_connections: 8 },
        storage_url: format!("file:{}", dir.path().join("blobs").display()),
        bootstrap_api_key: Some(KEY.to_string()),
        limits,
        role: sluice::config::Role::All,
        workers,
        public_url: None,
        master_key: [42; 32],
        fetch,
        sluice_signs_urls: false,
        storage_env: Vec::new(),
        webhooks,
        processing,
    };
    Some(launch(config, dir, postgres).await)
}

async fn launch(
    config: Config,
    dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    let (tx, rx) = oneshot::channel::<()>();
    let run_config = config.clone();
    let handle = tokio::spawn(async move {
        let shutdown = async {
            rx.await.ok();
        };
        sluice::run(run_config, listener, shutdown).await.expect("server runs");
    });

    let server = TestServer {
        base: format!("http://{address}"),
        key: KEY.to_string(),
        config,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
        _dir: dir,
        postgres,
    };
    server.wait_ready().await;
    server
}

impl TestServer {
    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.client.get(format!("{}/v1/health", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("server did not become healthy");
    }

    /// Stops the server, waits for it to finish and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        self.halt().await;
        if let Some((admin, name)) = self.postgres.take() {
            drop_postgres_database(&admin, &name).await;
        }
    }

    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
    }

    /// Stops the server and starts it again on the same store and blobs, with `workers` workers,
    /// as an operator's restart would.
    pub async fn restart(mut self, workers: usize) -> TestServer {
        self.halt().await;
        let mut config = self.config.clone();
        config.workers = workers;
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        launch(config, dir, self.postgres.take()).await
    }

    /// Opens the server's store directly, as the admin command does.
    pub async fn store(&self) -> Store {
        Store::open(&self.config.store).await.expect("open store")
    }

    /// Creates another organization with a key, as `sluice admin` does, and returns the key.
    pub async fn other_org_key(&self) -> String {
        let store = self.store().await;
        let org = sluice::service::keys::create_organization(&store, "other").await.expect("org");
        let key = sluice::service::keys::create_key(&store, &org.id, "k", None).await.expect("key");
        store.close().await;
        key.secret
    }

    /// Sends a request with this server's key; `ns` sets `X-Namespace`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.key.clone(), method, path, ns, body).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(ns) = ns {
            request = request.header("X-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, value)
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body);
        if let Some(ns) = ns {
            request = request.header("X-Namespace", ns);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, ns: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, ns, Some(body)).await
    }

    pub async fn get(&self, path: &str, ns: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, ns, None).await
    }

    /// Creates a namespace and returns its id.
    pub async fn namespace(&self, name: &str) -> String {
        let (status, body) =
            self.post("/v1/namespaces", None, json!({"namespace_name": name})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["namespace_id"].as_str().expect("namespace_id").to_string()
    }

    /// Creates a bucket with `schema` and returns its id.
    pub async fn bucket(&self, ns: &str, name: &str, schema: Value) -> String {
        let body = json!({"bucket_name": name, "bucket_schema": schema});
        let (status, body) = self.post("/v1/buckets", Some(ns), body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["bucket_id"].as_str().expect("bucket_id").to_string()
    }

    /// Polls a task until it is terminal and returns it.
    pub async fn wait_task(&self, task_id: &str) -> Value {
        for _ in 0..400 {
            let (status, task) = self.get(&format!("/v1/tasks/{task_id}"), None).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            if ["COMPLETED", "FAILED", "CANCELED"].contains(&task["status"].as_str().unwrap_or(""))
            {
                return task;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("task {task_id} did not finish");
    }
}

/// Asserts the contract's error envelope and returns its `error` object.
pub fn assert_error(status: StatusCode, body: &Value, expected: u16) -> Value {
    assert_eq!(status.as_u16(), expected, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["status"], json!(expected), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    body["error"].clone()
}

/// Runs an async test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server =
                    $crate::common::start($crate::common::Backend::Sqlite).await.expect("sqlite");
                super::$name(&server).await;
                server.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(server) = $crate::common::start($crate::common::Backend::Postgres).await
                else {
                    eprintln!("skipping: SLUICE_TEST_SKIP_POSTGRES=1");
                    return;
                };
                super::$name(&server).await;
                server.stop().await;
            }
        }
    };
}
