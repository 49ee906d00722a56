//! Settings, read from flags and environment variables and checked once at start-up.
//!
//! Every setting arrives as a string and is parsed here, so that a bad value stops the start
//! with one line that names the variable, instead of a parser's multi-line usage text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// The settings every subcommand shares: where the metadata lives and how to log.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory for the embedded SQLite database and local blobs.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Metadata store: `sqlite:PATH` or `postgres://…`; default SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Tracing filter, e.g. `info` or `sluice=debug,sqlx=warn`.
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    pub log: String,

    /// Log format: `text` or `json`.
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// The settings of `sluice serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,

    /// Blob store: `file:PATH`, `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or
    /// `az://CONTAINER/PREFIX`; default files under the data directory.
    #[arg(long, env = "SLUICE_STORAGE_URL", hide_env_values = true)]
    pub storage_url: Option<String>,

    /// API key that a first start creates instead of a random one (`sk_…`).
    #[arg(long, env = "SLUICE_BOOTSTRAP_API_KEY", hide_env_values = true)]
    pub bootstrap_api_key: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value = "33554432")]
    pub max_body_bytes: String,

    /// Largest inline blob (base64 or data URI, decoded) accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_INLINE_BLOB_BYTES", default_value = "16777216")]
    pub max_inline_blob_bytes: String,

    /// The URL clients reach this server at, for the signed URLs it hands out; default
    /// `http://` and the listen address.
    #[arg(long, env = "SLUICE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Master key (32 bytes, base64) for signed URLs and sealed secrets; default a key file in
    /// the data directory.
    #[arg(long, env = "SLUICE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// What this process does: `all` (API and workers), `api` or `worker`.
    #[arg(long, env = "SLUICE_ROLE", default_value = "all")]
    pub role: String,

    /// How many background job workers run in this process (0 for none).
    #[arg(long, env = "SLUICE_WORKERS", default_value = "2")]
    pub workers: String,

    /// Who signs presigned URLs: `store` (the blob store where it can, else sluice) or `sluice`
    /// (always sluice, which then serves the bytes itself).
    #[arg(long, env = "SLUICE_SIGNED_URLS", default_value = "store")]
    pub signed_urls: String,

    /// Address ranges (CIDRs, comma-separated) that URL fetches may reach although they are
    /// private, loopback or link-local; by default none.
    #[arg(long, env = "SLUICE_ALLOW_PRIVATE_NETWORKS", default_value = "")]
    pub allow_private_networks: String,

    /// Largest file fetched from a URL, in bytes.
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES", default_value = "1073741824")]
    pub fetch_max_bytes: String,

    /// Longest a URL fetch may take, in seconds.
    #[arg(long, env = "SLUICE_FETCH_TIMEOUT_SECONDS", default_value = "300")]
    pub fetch_timeout_seconds: String,

    /// Largest file a presigned upload may carry, in bytes.
    #[arg(long, env = "SLUICE_MAX_UPLOAD_BYTES", default_value = "5368709120")]
    pub max_upload_bytes: String,

    /// Most connections the metadata store pool opens.
    #[arg(long, env = "SLUICE_DB_MAX_CONNECTIONS", default_value = "32")]
    pub db_max_connections: String,

    /// Wait before the first retry of a failed webhook delivery, in milliseconds; each further
    /// retry waits twice as long, up to `SLUICE_WEBHOOK_RETRY_MAX_MS`.
    #[arg(long, env = "SLUICE_WEBHOOK_RETRY_BASE_MS", default_value = "30000")]
    pub webhook_retry_base_ms: String,

    /// Longest wait between two attempts of a webhook delivery, in milliseconds.
    #[arg(long, env = "SLUICE_WEBHOOK_RETRY_MAX_MS", default_value = "3600000")]
    pub webhook_retry_max_ms: String,

    /// Attempts one webhook delivery gets before it is given up (the default spans about a
    /// day).
    #[arg(long, env = "SLUICE_WEBHOOK_MAX_ATTEMPTS", default_value = "30")]
    pub webhook_max_attempts: String,

    /// Failed delivery attempts in a row after which a webhook is paused.
    #[arg(long, env = "SLUICE_WEBHOOK_PAUSE_AFTER", default_value = "50")]
    pub webhook_pause_after: String,

    /// How many days the change feed and the webhook delivery log are kept.
    #[arg(long, env = "SLUICE_EVENT_RETENTION_DAYS", default_value = "90")]
    pub event_retention_days: String,
    /// How many objects of a batch one processing job takes on; the jobs of one batch may run
    /// on different workers and processes.
    #[arg(long, env = "SLUICE_BATCH_SLICE_SIZE", default_value = "500")]
    pub batch_slice_size: String,

    /// How many objects one processing job works on at once.
    #[arg(long, env = "SLUICE_BATCH_CONCURRENCY", default_value = "8")]
    pub batch_concurrency: String,

    /// How long a draft batch may wait for its submit before it is canceled, in seconds.
    #[arg(long, env = "SLUICE_BATCH_DRAFT_TTL_SECONDS", default_value = "86400")]
    pub batch_draft_ttl_seconds: String,

    /// How long a worker's claim on a job lasts without renewal, in seconds; a dead worker's
    /// jobs are taken over after this long.
    #[arg(long, env = "SLUICE_JOB_LEASE_SECONDS", default_value = "30")]
    pub job_lease_seconds: String,

    /// Base URL of an OpenAI-compatible embeddings service (ending in `/v1`; requests go to
    /// `{url}/embeddings`), e.g. Ollama, text-embeddings-inference, vLLM or OpenAI. Unset, text
    /// chunks get no vectors.
    #[arg(long, env = "SLUICE_EMBEDDINGS_URL")]
    pub embeddings_url: Option<String>,

    /// The model the embeddings service is asked for.
    #[arg(long, env = "SLUICE_EMBEDDINGS_MODEL", default_value = "all-minilm")]
    pub embeddings_model: String,

    /// Bearer key for the embeddings service, if it wants one.
    #[arg(long, env = "SLUICE_EMBEDDINGS_API_KEY", hide_env_values = true)]
    pub embeddings_api_key: Option<String>,

    /// Whether the embeddings service also takes images (as base64 data URLs): `true` or
    /// `false`.
    #[arg(long, env = "SLUICE_EMBEDDINGS_IMAGES", default_value = "false")]
    pub embeddings_images: String,
}

/// A setting that could not be used, naming the variable it came from.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self { variable, message: message.into() }
    }
}

/// What a sluice process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves the API and runs background jobs.
    All,
    /// Serves the API only.
    Api,
    /// Runs background jobs and answers health checks only.
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Limits on what one request may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_inline_blob_bytes: usize,
    pub max_upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_inline_blob_bytes: 16 << 20,
            max_upload_bytes: 5 << 30,
        }
    }
}

/// How webhooks are delivered and how long events are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The wait before the first retry of a failed delivery; it doubles with each retry.
    pub retry_base: std::time::Duration,
    /// The longest wait between two attempts.
    pub retry_max: std::time::Duration,
    /// Attempts one delivery gets.
    pub max_attempts: i32,
    /// Failed attempts in a row, over all of a webhook's deliveries, that pause the webhook.
    pub pause_after: i64,
    /// How long events and delivery records are kept.
    pub retention: std::time::Duration,
}

impl Default for WebhookSettings {
    /// Thirty seconds doubling up to an hour, thirty attempts (about a day), a pause after fifty
    /// failures in a row, and ninety days of events.
    fn default() -> Self {
        Self {
            retry_base: std::time::Duration::from_secs(30),
            retry_max: std::time::Duration::from_secs(3600),
            max_attempts: 30,
            pause_after: 50,
            retention: std::time::Duration::from_secs(90 * 86_400),
        }
    }
}

/// Where feature extractors get vectors from.
#[derive(Clone)]
pub struct EmbeddingSettings {
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub images: bool,
}

impl std::fmt::Debug for EmbeddingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingSettings")
            .field("url", &redact_url(&self.url))
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("images", &self.images)
            .finish()
    }
}

/// How batches are processed.
#[derive(Debug, Clone)]
pub struct ProcessingSettings {
    /// Objects per processing job.
    pub slice_size: i64,
    /// Objects one job works on at once.
    pub concurrency: usize,
    /// How long a draft batch lives unsubmitted.
    pub draft_ttl: std::time::Duration,
    /// How long a worker's claim on a job lasts without renewal: after a worker dies, its
    /// jobs wait this long before another worker takes them over.
    pub job_lease: std::time::Duration,
    /// The embeddings service, when one is configured.
    pub embeddings: Option<EmbeddingSettings>,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        Self {
            slice_size: 500,
            concurrency: 8,
            draft_ttl: std::time::Duration::from_secs(86_400),
            job_lease: std::time::Duration::from_secs(30),
            embeddings: None,
        }
    }
}

/// Where metadata lives and how to log: what every subcommand needs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub max_connections: u32,
}

/// The checked configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub storage_url: String,
    pub bootstrap_api_key: Option<String>,
    pub limits: Limits,
    pub role: Role,
    pub workers: usize,
    pub public_url: Option<String>,
    pub master_key: [u8; 32],
    /// How sluice fetches URLs given by callers.
    pub fetch: crate::fetch::FetchPolicy,
    /// Whether sluice signs every presigned URL itself.
    pub sluice_signs_urls: bool,
    /// Settings of the blob store that override the process environment (credentials and
    /// endpoints, as the `AWS_*`, `GOOGLE_*` and `AZURE_*` variables name them).
    pub storage_env: Vec<(String, String)>,
    /// Webhook delivery and event retention.
    pub webhooks: WebhookSettings,
    /// How batches are processed.
    pub processing: ProcessingSettings,
}

impl CommonArgs {
    /// Checks the shared settings.
    ///
    /// # Errors
    ///
    /// Returns the first setting that cannot be used.
    pub fn store_config(&self, max_connections: u32) -> Result<StoreConfig, ConfigError> {
        let database_url = match &self.database_url {
            None => format!("sqlite:{}", self.data_dir.join("sluice.db").display()),
            Some(url) if url.starts_with("sqlite:") || is_postgres_url(url) => url.clone(),
            Some(_) => {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "expected a sqlite: or postgres:// URL",
                ));
            }
        };
        Ok(StoreConfig { data_dir: self.data_dir.clone(), database_url, max_connections })
    }

    /// Checks the log format setting.
    ///
    /// # Errors
    ///
    /// Returns an error naming `SLUICE_LOG_FORMAT` for anything but `text` or `json`.
    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.log_format.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::new(
                "SLUICE_LOG_FORMAT",
                format!("expected text or json, got {other:?}"),
            )),
        }
    }
}

impl ServeArgs {
    /// Checks every setting of `serve`.
    ///
    /// # Errors
    ///
    /// Returns the first setting that cannot be used.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let listen = self.listen.parse().map_err(|_| {
            ConfigError::new("SLUICE_LISTEN", format!("expected HOST:PORT, got {:?}", self.listen))
        })?;
        let max_connections = parse_number("SLUICE_DB_MAX_CONNECTIONS", &self.db_max_connections)?;
        let store = self.common.store_config(max_connections)?;

        let storage_url = match &self.storage_url {
            None => format!("file:{}", self.common.data_dir.join("blobs").display()),
            Some(url) if is_storage_url(url) => url.clone(),
            Some(_) => {
                return Err(ConfigError::new(
                    "SLUICE_STORAGE_URL",
                    "expected file:PATH, s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] or \
                     az://CONTAINER[/PREFIX]",
                ));
            }
        };
        if let Some(key) = &self.bootstrap_api_key {
            check_api_key_shape(key)?;
        }

        let limits = Limits {
            max_body_bytes: parse_number("SLUICE_MAX_BODY_BYTES", &self.max_body_bytes)?,
            max_inline_blob_bytes: parse_number(
                "SLUICE_MAX_INLINE_BLOB_BYTES",
                &self.max_inline_blob_bytes,
            )?,
            max_upload_bytes: parse_number("SLUICE_MAX_UPLOAD_BYTES", &self.max_upload_bytes)?,
        };
        self.common.log_format()?;
        let role = match self.role.as_str() {
            "all" => Role::All,
            "api" => Role::Api,
            "worker" => Role::Worker,
            other => {
                return Err(ConfigError::new(
                    "SLUICE_ROLE",
                    format!("expected all, api or worker, got {other:?}"),
                ));
            }
        };
        let workers =
            self.workers.trim().parse::<usize>().ok().filter(|n| *n <= 64).ok_or_else(|| {
                ConfigError::new(
                    "SLUICE_WORKERS",
                    format!("expected 0 to 64, got {:?}", self.workers),
                )
            })?;
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "SLUICE_PUBLIC_URL",
                "expected an http:// or https:// URL",
            ));
        }
        let master_key =
            crate::secrets::master_key(&self.common.data_dir, self.master_key.as_deref())?;
        let allow = crate::fetch::FetchPolicy::parse_allow_list(&self.allow_private_networks)
            .map_err(|e| ConfigError::new("SLUICE_ALLOW_PRIVATE_NETWORKS", e))?;
        let fetch = crate::fetch::FetchPolicy {
            allow,
            max_bytes: parse_number("SLUICE_FETCH_MAX_BYTES", &self.fetch_max_bytes)?,
            timeout: std::time::Duration::from_secs(parse_number(
                "SLUICE_FETCH_TIMEOUT_SECONDS",
                &self.fetch_timeout_seconds,
            )?),
            ..crate::fetch::FetchPolicy::default()
        };
        let sluice_signs_urls = match self.signed_urls.as_str() {
            "store" => false,
            "sluice" => true,
            other => {
                return Err(ConfigError::new(
                    "SLUICE_SIGNED_URLS",
                    format!("expected store or sluice, got {other:?}"),
                ));
            }
        };
        let days: u64 = parse_number("SLUICE_EVENT_RETENTION_DAYS", &self.event_retention_days)?;
        let webhooks = WebhookSettings {
            retry_base: std::time::Duration::from_millis(parse_number(
                "SLUICE_WEBHOOK_RETRY_BASE_MS",
                &self.webhook_retry_base_ms,
            )?),
            retry_max: std::time::Duration::from_millis(parse_number(
                "SLUICE_WEBHOOK_RETRY_MAX_MS",
                &self.webhook_retry_max_ms,
            )?),
            max_attempts: parse_number("SLUICE_WEBHOOK_MAX_ATTEMPTS", &self.webhook_max_attempts)?,
            pause_after: parse_number("SLUICE_WEBHOOK_PAUSE_AFTER", &self.webhook_pause_after)?,
            retention: std::time::Duration::from_secs(days.saturating_mul(86_400)),
        };
        let processing = ProcessingSettings {
            slice_size: parse_number("SLUICE_BATCH_SLICE_SIZE", &self.batch_slice_size)?,
            concurrency: parse_number("SLUICE_BATCH_CONCURRENCY", &self.batch_concurrency)?,
            draft_ttl: std::time::Duration::from_secs(parse_number(
                "SLUICE_BATCH_DRAFT_TTL_SECONDS",
                &self.batch_draft_ttl_seconds,
            )?),
            job_lease: std::time::Duration::from_secs(parse_number(
                "SLUICE_JOB_LEASE_SECONDS",
                &self.job_lease_seconds,
            )?),
            embeddings: self.embeddings()?,
        };
        Ok(Config {
            webhooks,
            processing,
            storage_env: Vec::new(),
            sluice_signs_urls,
            fetch,
            role,
            workers,
            public_url: self.public_url.clone(),
            master_key,
            listen,
            store,
            storage_url,
            bootstrap_api_key: self.bootstrap_api_key.clone(),
            limits,
        })
    }
}

impl ServeArgs {
    fn embeddings(&self) -> Result<Option<EmbeddingSettings>, ConfigError> {
        let Some(url) = self.embeddings_url.as_ref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new("SLUICE_EMBEDDINGS_URL", "expected an http(s):// URL"));
        }
        let images = match self.embeddings_images.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ConfigError::new(
                    "SLUICE_EMBEDDINGS_IMAGES",
                    format!("expected true or false, got {other:?}"),
                ));
            }
        };
        Ok(Some(EmbeddingSettings {
            url: url.clone(),
            model: self.embeddings_model.clone(),
            api_key: self.embeddings_api_key.clone(),
            images,
        }))
    }
}

/// Whether `url` names a blob store sluice can open: local files, or a bucket (container) of
/// S3, GCS or Azure, optionally followed by a prefix.
fn is_storage_url(url: &str) -> bool {
    if url.starts_with("file:") {
        return true;
    }
    ["s3://", "gs://", "az://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|bucket| !bucket.is_empty())
    })
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn parse_number<T: std::str::FromStr + PartialOrd + From<u8>>(
    variable: &'static str,
    raw: &str,
) -> Result<T, ConfigError> {
    match raw.trim().parse::<T>() {
        Ok(n) if n > T::from(0) => Ok(n),
        _ => Err(ConfigError::new(variable, format!("expected a positive integer, got {raw:?}"))),
    }
}

fn check_api_key_shape(key: &str) -> Result<(), ConfigError> {
    let body = key.strip_prefix("sk_").unwrap_or("");
    let ok = body.len() >= 16
        && body.len() <= 128
        && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "SLUICE_BOOTSTRAP_API_KEY",
            "expected sk_ followed by 16 to 128 letters, digits, '_' or '-'",
        ))
    }
}

/// Returns the URL with any password replaced, fit for a log line.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("sqlite:./data/x.db"), "sqlite:./data/x.db");
    }

    #[test]
    fn bootstrap_key_shape_is_checked() {
        assert!(check_api_key_shape("sk_0123456789abcdef").is_ok());
        assert!(check_api_key_shape("sk_short").is_err());
        assert!(check_api_key_shape("pk_0123456789abcdef").is_err());
    }
}
