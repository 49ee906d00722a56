//! Sources: the storage systems and feeds a connection reaches. [`probe`] is the connection
//! test, which proves that a connection's settings and credentials let sluice list what it
//! names; [`Source`] is what a sync run lists and reads.

pub mod feed;
pub mod sigv4;
pub mod sts;

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::blob::{BlobStore, BlobStream, ListedBlob};
use crate::fetch::Fetcher;

/// How long a connection test may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The outcome of a connection test, as the test endpoint reports it.
#[derive(Debug)]
pub struct Probe {
    pub success: bool,
    pub message: String,
    pub details: Value,
}

impl Probe {
    fn ok(message: impl Into<String>, details: Value) -> Self {
        Self { success: true, message: message.into(), details }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self { success: false, message: message.into(), details: json!({}) }
    }
}

/// Tests a connection of `provider` with its settings (`config`, defaults applied) and its
/// opened credentials. Never fails: a refusal or an unreachable store is a failed [`Probe`]
/// whose message says why, without the credentials.
pub async fn probe(
    fetcher: &Fetcher,
    identity: &sts::Identity,
    provider: &str,
    config: &Map<String, Value>,
    credentials: &Map<String, Value>,
) -> Probe {
    let run = async {
        match provider {
            "s3" | "tigris" | "backblaze" | "supabase" => {
                probe_s3(fetcher, identity, config, credentials).await
            }
            "gcs" | "azure_blob" => {
                probe_listing(fetcher, identity, provider, config, credentials).await
            }
            "rss" | "http_api" => Probe::ok(
                "the settings are valid; the URL to read is each sync's source_path and is \
                 checked when the sync is created",
                json!({"checked": "settings"}),
            ),
            other => Probe::failed(format!("sluice cannot reach {other} storage")),
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, run).await.unwrap_or_else(|_| {
        Probe::failed(format!("the store did not answer within {} s", PROBE_TIMEOUT.as_secs()))
    })
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The S3 endpoint a connection's requests go to.
pub fn s3_endpoint(provider: &str, config: &Map<String, Value>) -> Option<String> {
    if let Some(endpoint) = text(config, "endpoint_url") {
        return Some(endpoint.trim_end_matches('/').to_string());
    }
    let region = text(config, "region").unwrap_or("us-east-1");
    let scheme = if config.get("use_ssl") == Some(&Value::Bool(false)) { "http" } else { "https" };
    match provider {
        "s3" if region == "us-east-1" => Some(format!("{scheme}://s3.amazonaws.com")),
        "s3" => Some(format!("{scheme}://s3.{region}.amazonaws.com")),
        "backblaze" if region != "auto" => Some(format!("{scheme}://s3.{region}.backblazeb2.com")),
        _ => None,
    }
}

/// Lists the buckets the key can see (`GET /`, ListBuckets), signed with SigV4.
async fn probe_s3(
    fetcher: &Fetcher,
    identity: &sts::Identity,
    config: &Map<String, Value>,
    credentials: &Map<String, Value>,
) -> Probe {
    let provider = text(config, "provider_type").unwrap_or("s3");
    let Some(endpoint) = s3_endpoint(provider, config) else {
        return Probe::failed("the connection names no endpoint_url or region to reach");
    };
    let url = match fetcher.policy().check_url(&endpoint) {
        Ok(url) => url,
        Err(e) => return Probe::failed(format!("endpoint_url: {e}")),
    };
    let (key_id, secret, token) = match s3_keys(identity, credentials).await {
        Ok(keys) => keys,
        Err(message) => return Probe::failed(message),
    };
    let keys = sigv4::Credentials {
        access_key_id: &key_id,
        secret_access_key: &secret,
        session_token: token.as_deref(),
    };
    let Some(host) = sigv4::host_header(&url) else {
        return Probe::failed("endpoint_url has no host");
    };
    let path = if url.path().is_empty() { "/" } else { url.path() };
    let region = text(config, "region").unwrap_or("us-east-1");
    let at = time::OffsetDateTime::now_utc();
    let headers = sigv4::sign(&keys, ("s3", region), "GET", &host, path, "", at);

    let mut request = fetcher.client().get(url.as_str()).timeout(PROBE_TIMEOUT);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Probe::failed(format!("could not reach {host}: {}", describe(&e))),
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        let buckets = body.matches("<Bucket>").count();
        return Probe::ok(
            format!("listed the buckets of the key at {host}"),
            json!({"endpoint": endpoint, "buckets_visible": buckets}),
        );
    }
    let code = xml_field(&body, "Code").unwrap_or_default();
    let message = xml_field(&body, "Message").unwrap_or_default();
    Probe {
        success: false,
        message: format!(
            "{host} refused the credentials: HTTP {} {code} {message}",
            status.as_u16()
        )
        .trim_end()
        .to_string(),
        details: json!({"status_code": status.as_u16(), "error_code": code}),
    }
}

/// Lists one object of the connection's bucket or container and prefix.
async fn probe_listing(
    fetcher: &Fetcher,
    identity: &sts::Identity,
    provider: &str,
    config: &Map<String, Value>,
    credentials: &Map<String, Value>,
) -> Probe {
    let store = match open(fetcher, identity, provider, config, credentials, "").await {
        Ok(store) => store,
        Err(message) => return Probe::failed(message),
    };
    let what = match provider {
        "gcs" => format!("bucket {}", text(config, "bucket").unwrap_or_default()),
        _ => format!("container {}", text(config, "container").unwrap_or_default()),
    };
    match store.count_some(1).await {
        Ok(seen) => Probe::ok(format!("listed the {what}"), json!({"objects_seen": seen})),
        Err(e) => Probe::failed(format!("could not list the {what}: {e}")),
    }
}

/// Opens a connection's storage for listing and reading, at `path`: for the S3 family
/// `bucket/prefix` (the connection names no bucket), for GCS and Azure a prefix inside the
/// connection's bucket or container (after its own `prefix`).
///
/// # Errors
///
/// A message fit for the caller: settings that cannot be used, or an endpoint that is not
/// public (unless the operator allows its network).
pub async fn open(
    fetcher: &Fetcher,
    identity: &sts::Identity,
    provider: &str,
    config: &Map<String, Value>,
    credentials: &Map<String, Value>,
    path: &str,
) -> Result<BlobStore, String> {
    let path = path.trim_matches('/');
    if let Some(endpoint) = text(config, "endpoint_url") {
        fetcher.check_resolved(endpoint).await.map_err(|e| format!("endpoint_url: {e}"))?;
    }
    let joined = |base: Option<&str>| {
        let base = base.unwrap_or_default().trim_matches('/');
        [base, path].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/")
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| env.push((name.to_string(), value.to_string()));
    let url = match provider {
        "gcs" => {
            match credentials.get("service_account_json") {
                Some(Value::String(json)) => set("GOOGLE_SERVICE_ACCOUNT_KEY", json),
                Some(other) => set("GOOGLE_SERVICE_ACCOUNT_KEY", &other.to_string()),
                None => return Err("the credentials hold no service account key".into()),
            }
            if let Some(endpoint) = text(config, "endpoint_url") {
                set("STORAGE_EMULATOR_HOST", endpoint);
            }
            let bucket = text(config, "bucket").unwrap_or_default();
            format!("gs://{bucket}/{}", joined(text(config, "prefix")))
        }
        "azure_blob" => {
            let account =
                text(credentials, "account_name").or_else(|| text(config, "account_name"));
            let account = account.ok_or("the connection names no storage account")?;
            set("AZURE_STORAGE_ACCOUNT_NAME", account);
            match credentials.get("type").and_then(Value::as_str) {
                Some("managed_identity") => {
                    if let Some(client) = text(credentials, "client_id") {
                        set("AZURE_CLIENT_ID", client);
                    }
                }
                _ => {
                    let key = text(credentials, "account_key")
                        .ok_or("the credentials hold no account key")?;
                    set("AZURE_STORAGE_ACCOUNT_KEY", key);
                }
            }
            if let Some(endpoint) = text(config, "endpoint_url") {
                set("AZURE_STORAGE_ENDPOINT", endpoint);
            }
            let container = text(config, "container").unwrap_or_default();
            format!("az://{container}/{}", joined(text(config, "prefix")))
        }
        _ => {
            let (key_id, secret, token) = s3_keys(identity, credentials).await?;
            set("AWS_ACCESS_KEY_ID", &key_id);
            set("AWS_SECRET_ACCESS_KEY", &secret);
            if let Some(token) = &token {
                set("AWS_SESSION_TOKEN", token);
            }
            set("AWS_REGION", text(config, "region").unwrap_or("us-east-1"));
            let provider = text(config, "provider_type").unwrap_or(provider);
            if let Some(endpoint) = s3_endpoint(provider, config) {
                set("AWS_ENDPOINT_URL", &endpoint);
            }
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if bucket.is_empty() {
                return Err(
                    "source_path must start with the bucket: bucket or bucket/prefix".into()
                );
            }
            format!("s3://{bucket}/{prefix}")
        }
    };
    BlobStore::open_with_env(&url, env).map_err(|e| format!("the settings are not usable: {e}"))
}

/// The access key id, secret and session token of S3-family credentials; for an IAM role,
/// the temporary keys STS hands out for it.
async fn s3_keys(
    identity: &sts::Identity,
    credentials: &Map<String, Value>,
) -> Result<(String, String, Option<String>), String> {
    let owned = |id: Option<&str>, secret: Option<&str>| match (id, secret) {
        (Some(id), Some(secret)) => Ok((id.to_string(), secret.to_string())),
        _ => Err("the credentials hold no access key".to_string()),
    };
    match credentials.get("type").and_then(Value::as_str) {
        Some("iam_role") => {
            let role = text(credentials, "role_arn").ok_or("the credentials name no role_arn")?;
            let external_id = text(credentials, "external_id");
            let keys = sts::assume_role(identity, role, external_id, "sluice-sync").await?;
            Ok((keys.access_key_id, keys.secret_access_key, Some(keys.session_token)))
        }
        Some("application_key") => {
            let (id, secret) =
                owned(text(credentials, "key_id"), text(credentials, "application_key"))?;
            Ok((id, secret, None))
        }
        _ => {
            let (id, secret) =
                owned(text(credentials, "access_key_id"), text(credentials, "secret_access_key"))?;
            Ok((id, secret, text(credentials, "session_token").map(String::from)))
        }
    }
}

/// What a sync run reads: a store's listing, or a feed's items.
pub enum Source {
    Store(BlobStore),
    Feed(feed::Feed),
}

impl Source {
    /// Opens the source of a sync: a store at `path` as [`open`] does, or for `rss` and
    /// `http_api` the feed at the URL `path`, read at once.
    ///
    /// # Errors
    ///
    /// A message fit for the caller, as [`open`] and [`feed::read`] give.
    pub async fn open(
        fetcher: &Fetcher,
        identity: &sts::Identity,
        provider: &str,
        config: &Map<String, Value>,
        credentials: &Map<String, Value>,
        path: &str,
    ) -> Result<Self, String> {
        match provider {
            "rss" | "http_api" => {
                feed::read(fetcher, provider, config, credentials, path).await.map(Self::Feed)
            }
            _ => {
                open(fetcher, identity, provider, config, credentials, path).await.map(Self::Store)
            }
        }
    }

    /// Every entry, page by page for a store; for a store, only the keys after `after` when it
    /// is given (a feed is read whole and ignores it).
    pub fn list_after(
        &self,
        after: Option<&str>,
    ) -> futures::stream::BoxStream<'_, Result<ListedBlob, String>> {
        use futures::StreamExt;
        match self {
            Self::Store(store) => {
                store.list_after(after).map(|r| r.map_err(|e| e.to_string())).boxed()
            }
            Self::Feed(feed) => {
                futures::stream::iter(feed.items.iter().map(|i| Ok(i.listed.clone()))).boxed()
            }
        }
    }

    /// The bytes of the entry under `key`, and their length when known.
    ///
    /// # Errors
    ///
    /// A message naming what could not be read.
    pub async fn open_read(
        &self,
        fetcher: &Fetcher,
        key: &str,
    ) -> Result<(Option<u64>, BlobStream), String> {
        match self {
            Self::Store(store) => {
                let (size, stream) = store.open_read(key).await.map_err(|e| e.to_string())?;
                Ok((Some(size), stream))
            }
            Self::Feed(feed) => feed.open_read(fetcher, key).await,
        }
    }

    /// Whether a listing can go on after a key: stores list in key order, feeds do not.
    pub fn resumable(&self) -> bool {
        matches!(self, Self::Store(_))
    }

    /// Where the entry under `key` lives in the source: its full key in the store, or its id
    /// in the feed.
    pub fn source_key(&self, key: &str) -> String {
        match self {
            Self::Store(store) if !store.prefix().is_empty() => {
                format!("{}/{key}", store.prefix())
            }
            _ => key.to_string(),
        }
    }

    /// The file name of the entry under `key`, and the media type the source announces.
    pub fn file_of(&self, key: &str) -> (String, Option<String>) {
        let item = match self {
            Self::Feed(feed) => feed.item(key),
            Self::Store(_) => None,
        };
        match item {
            Some(item) => {
                let mime = match &item.enclosure {
                    Some((_, mime)) => mime.clone(),
                    None => Some("application/json".to_string()),
                };
                (item.filename.clone(), mime)
            }
            None => (key.rsplit('/').next().unwrap_or(key).to_string(), None),
        }
    }

    /// The fields of a feed's item under `key`, for field mappings.
    pub fn fields_of(&self, key: &str) -> Option<&Map<String, Value>> {
        match self {
            Self::Feed(feed) => feed.item(key).map(|i| &i.fields),
            Self::Store(_) => None,
        }
    }
}

/// The innermost cause of a client error, which names what failed (a refused address, a TLS
/// problem) more plainly than the outer layers.
fn describe(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// The text of the first `<name>` element of an S3 error document.
pub(crate) fn xml_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}
