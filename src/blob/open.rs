//! Opening a blob store from its URL and the environment.
//!
//! | URL | credentials and settings |
//! |---|---|
//! | `file:PATH` | none; the directory is created |
//! | `s3://BUCKET/PREFIX` | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (`auto` is fine for R2), `AWS_ENDPOINT_URL` (any S3-compatible store; path-style requests), `SLUICE_S3_VIRTUAL_HOSTED=true` for `BUCKET.host` requests; without keys, `object_store`'s chain (web identity, ECS/EKS, instance metadata) |
//! | `gs://BUCKET/PREFIX` | `GOOGLE_APPLICATION_CREDENTIALS`, or `GOOGLE_SERVICE_ACCOUNT` (`_PATH`) / `GOOGLE_SERVICE_ACCOUNT_KEY` (the JSON itself); `GOOGLE_BASE_URL` or `STORAGE_EMULATOR_HOST` for another endpoint |
//! | `az://CONTAINER/PREFIX` | `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY` (or `AZURE_STORAGE_SAS_TOKEN`, or the `AZURE_CLIENT_*` / managed identity variables), `AZURE_STORAGE_ENDPOINT` for another endpoint, `AZURE_STORAGE_USE_EMULATOR=true` for Azurite, or `AZURE_STORAGE_CONNECTION_STRING` |
//!
//! Every other `AWS_*`, `GOOGLE_*` and `AZURE_*` variable that `object_store` knows is passed
//! on as its own builders would read it. An `http://` endpoint is allowed without a further
//! switch: naming one is the operator's choice.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Url;
use object_store::{ClientConfigKey, ObjectStore};

use super::azure::AzureTarget;
use super::gcs::GcsTarget;
use super::local::ClassRecords;
use super::s3::S3Target;
use super::{Backend, BlobError, BlobStore, wire};

/// Azurite's development account and address, which `object_store` assumes in emulator mode.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_DEFAULT_URL: &str = "http://127.0.0.1:10000";

/// Where Google Cloud Storage answers unless told otherwise.
const GCS_DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

type Env = HashMap<String, String>;

/// Opens the store `url` names with the settings in `env`.
pub(super) fn open(
    url: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BlobStore, BlobError> {
    let env: Env = env.into_iter().collect();
    if let Some(path) = url.strip_prefix("file:") {
        return open_file(path);
    }

    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(BlobError::Unsupported(url.to_string()));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(BlobError::Config(format!("{url}: the URL names no bucket or container")));
    }
    let prefix = Path::parse(prefix.trim_matches('/'))
        .map_err(|e| BlobError::Config(format!("{url}: the prefix is not a valid path: {e}")))?;

    let http = wire::client()?;
    let (inner, backend): (Arc<dyn ObjectStore>, Backend) = match scheme {
        "s3" => {
            let store = Arc::new(s3_builder(bucket, &env)?.build()?);
            (store.clone(), Backend::S3(S3Target::new(store, bucket, http)))
        }
        "gs" => {
            let (builder, base_url) = gcs_builder(bucket, &env);
            let store = Arc::new(builder.build()?);
            (store.clone(), Backend::Gcs(GcsTarget::new(store, &base_url, bucket, http)))
        }
        "az" => {
            let builder = azure_builder(bucket, &env)?;
            let (account, container_url) = azure_container_url(&builder, bucket)?;
            let store = Arc::new(builder.build()?);
            (store.clone(), Backend::Azure(AzureTarget::new(store, http, &account, container_url)))
        }
        _ => return Err(BlobError::Unsupported(url.to_string())),
    };
    Ok(BlobStore { inner, backend, prefix, location_base: format!("{scheme}://{bucket}") })
}

fn open_file(path: &str) -> Result<BlobStore, BlobError> {
    let path = path.strip_prefix("//").unwrap_or(path);
    std::fs::create_dir_all(path)?;
    let root = std::fs::canonicalize(path)?;
    let store = LocalFileSystem::new_with_prefix(&root)?;
    Ok(BlobStore {
        inner: Arc::new(store),
        backend: Backend::File(ClassRecords::new(root)),
        prefix: Path::default(),
        location_base: "sluice:".to_string(),
    })
}

fn s3_builder(bucket: &str, env: &Env) -> Result<AmazonS3Builder, BlobError> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (name, value) in prefixed(env, "AWS_") {
        if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }

    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    if endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    if flag(env, "SLUICE_S3_VIRTUAL_HOSTED")? {
        builder = builder.with_virtual_hosted_style_request(true);
        // object_store expects a virtual-hosted endpoint to name the bucket's own host.
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(bucket_host(&endpoint, bucket));
        }
    }
    Ok(builder)
}

/// The GCS builder and the base URL its requests go to.
fn gcs_builder(bucket: &str, env: &Env) -> (GoogleCloudStorageBuilder, String) {
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    for (name, value) in prefixed(env, "GOOGLE_") {
        if let Ok(key) = name.to_ascii_lowercase().parse::<GoogleConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    // The variable Google's own client libraries read to reach an emulator.
    if let Some(host) = env.get("STORAGE_EMULATOR_HOST").filter(|h| !h.is_empty()) {
        let base = if host.contains("://") { host.clone() } else { format!("http://{host}") };
        builder = builder.with_base_url(base.trim_end_matches('/'));
    }

    let base_url = builder
        .get_config_value(&GoogleConfigKey::BaseUrl)
        .unwrap_or_else(|| GCS_DEFAULT_BASE_URL.to_string());
    if base_url.starts_with("http://") {
        builder = builder.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
    }
    (builder, base_url)
}

fn azure_builder(container: &str, env: &Env) -> Result<MicrosoftAzureBuilder, BlobError> {
    let mut builder = MicrosoftAzureBuilder::new().with_container_name(container);
    if let Some(connection) = env.get("AZURE_STORAGE_CONNECTION_STRING") {
        builder = apply_connection_string(builder, connection)?;
    }
    // Single variables come after the connection string, so they override its parts.
    for (name, value) in prefixed(env, "AZURE_") {
        if let Ok(key) = name.to_ascii_lowercase().parse::<AzureConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    let endpoint = builder.get_config_value(&AzureConfigKey::Endpoint);
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    Ok(builder)
}

/// The account and the container URL that `object_store` addresses blobs under, for the
/// requests sluice authorizes itself; the same rules as its builder.
fn azure_container_url(
    builder: &MicrosoftAzureBuilder,
    container: &str,
) -> Result<(String, Url), BlobError> {
    let setting = |key| builder.get_config_value(&key);
    let account = setting(AzureConfigKey::AccountName);
    let (account, base) = if setting(AzureConfigKey::UseEmulator).as_deref() == Some("true") {
        let account = account.unwrap_or_else(|| AZURITE_ACCOUNT.to_string());
        // object_store reads this variable from the process environment, so it is read here too.
        let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
            .unwrap_or_else(|_| AZURITE_DEFAULT_URL.to_string());
        let base = format!("{}/{account}", base.trim_end_matches('/'));
        (account, base)
    } else {
        let Some(account) = account else {
            return Err(BlobError::Config("az:// needs AZURE_STORAGE_ACCOUNT_NAME".to_string()));
        };
        let base = match setting(AzureConfigKey::Endpoint) {
            Some(endpoint) => endpoint,
            None if setting(AzureConfigKey::UseFabricEndpoint).as_deref() == Some("true") => {
                format!("https://{account}.blob.fabric.microsoft.com")
            }
            None => format!("https://{account}.blob.core.windows.net"),
        };
        (account, base)
    };
    let url = Url::parse(&format!("{}/{container}", base.trim_end_matches('/')))
        .map_err(|e| BlobError::Config(format!("the Azure endpoint is not a URL: {e}")))?;
    Ok((account, url))
}

/// Applies the parts of an Azure connection string
/// (`DefaultEndpointsProtocol=…;AccountName=…;AccountKey=…;BlobEndpoint=…`).
fn apply_connection_string(
    mut builder: MicrosoftAzureBuilder,
    connection: &str,
) -> Result<MicrosoftAzureBuilder, BlobError> {
    let mut parts = HashMap::new();
    for part in connection.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        // Keys are base64 and end in '=', so only the first '=' separates name and value.
        let Some((name, value)) = part.split_once('=') else {
            return Err(BlobError::Config(
                "AZURE_STORAGE_CONNECTION_STRING: expected NAME=VALUE parts separated by ';'"
                    .to_string(),
            ));
        };
        parts.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }

    if parts.get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        builder = builder.with_use_emulator(true);
    }
    if let Some(account) = parts.get("accountname") {
        builder = builder.with_account(account);
    }
    if let Some(key) = parts.get("accountkey") {
        builder = builder.with_access_key(key);
    }
    if let Some(sas) = parts.get("sharedaccesssignature") {
        builder = builder.with_config(AzureConfigKey::SasKey, sas);
    }
    let endpoint = parts.get("blobendpoint").cloned().or_else(|| {
        let account = parts.get("accountname")?;
        let suffix = parts.get("endpointsuffix")?;
        let protocol = parts.get("defaultendpointsprotocol").map_or("https", String::as_str);
        Some(format!("{protocol}://{account}.blob.{suffix}"))
    });
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    Ok(builder)
}

fn prefixed<'a>(env: &'a Env, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a String)> {
    env.iter().filter(move |(name, _)| name.starts_with(prefix))
}

/// A boolean setting: unset, empty, `false` or `0` is off; `true` or `1` is on.
fn flag(env: &Env, name: &str) -> Result<bool, BlobError> {
    match env.get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => {
            Err(BlobError::Config(format!("{name}: expected true or false, got {other:?}")))
        }
    }
}

/// `https://host:port` → `https://BUCKET.host:port`.
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{bucket}.{}", host.trim_end_matches('/')),
        None => format!("{bucket}.{}", endpoint.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn s3_settings_come_from_the_conventional_variables() {
        let vars = env(&[
            ("AWS_ACCESS_KEY_ID", "key"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "auto"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ]);
        let builder = s3_builder("b", &vars).unwrap();
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Region).as_deref(), Some("auto"));
        assert_eq!(
            builder.get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("false")
        );

        let mut hosted = vars.clone();
        hosted.insert("SLUICE_S3_VIRTUAL_HOSTED".into(), "true".into());
        let builder = s3_builder("b", &hosted).unwrap();
        assert_eq!(
            builder.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://b.127.0.0.1:9000")
        );
        hosted.insert("SLUICE_S3_VIRTUAL_HOSTED".into(), "maybe".into());
        assert!(s3_builder("b", &hosted).is_err());
    }

    #[test]
    fn gcs_emulator_host_sets_the_base_url() {
        let (_, base) = gcs_builder("b", &env(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")]));
        assert_eq!(base, "http://127.0.0.1:4443");
        let (_, base) = gcs_builder("b", &env(&[]));
        assert_eq!(base, GCS_DEFAULT_BASE_URL);
    }

    #[test]
    fn azure_connection_strings_are_read() {
        let vars = env(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5==;\
             BlobEndpoint=http://127.0.0.1:10000/acct/;",
        )]);
        let builder = azure_builder("c", &vars).unwrap();
        assert_eq!(builder.get_config_value(&AzureConfigKey::AccountName).as_deref(), Some("acct"));
        assert_eq!(builder.get_config_value(&AzureConfigKey::AccessKey).as_deref(), Some("a2V5=="));
        assert_eq!(
            builder.get_config_value(&AzureConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:10000/acct")
        );

        let vars = env(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )]);
        let builder = azure_builder("c", &vars).unwrap();
        assert_eq!(
            builder.get_config_value(&AzureConfigKey::Endpoint).as_deref(),
            Some("https://acct.blob.core.windows.net")
        );
        assert!(azure_builder("c", &env(&[("AZURE_STORAGE_CONNECTION_STRING", "junk")])).is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert!(matches!(open("ftp://x/y", env(&[])), Err(BlobError::Unsupported(_))));
        assert!(matches!(open("s3:///prefix", env(&[])), Err(BlobError::Config(_))));
        assert!(matches!(open("s3://b/../x", env(&[])), Err(BlobError::Config(_))));
        assert!(matches!(open("bucket", env(&[])), Err(BlobError::Unsupported(_))));
    }
}
