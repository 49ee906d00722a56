//! sluice: a self-hosted, multi-tenant server for the Mixpeek ingestion API.
//!
//! The crate is layered as the module list reads:
//! - [`api`] knows HTTP: routes, extractors, the error envelope and pagination.
//! - [`service`] holds the operations: validation, state changes, task records.
//! - [`jobs`] runs background work as durable, leased jobs.
//! - [`extract`] turns an object's downloaded blobs into documents (text chunks, image facts,
//!   media facts, embeddings).
//! - [`model`] holds pure types: ids, schema, blobs, filters, storage classes.
//! - [`store`] is the only place with SQL (PostgreSQL or SQLite); [`blob`] the only place that
//!   moves bytes.
//!
//! [`run`] serves the API on a listener until a shutdown signal, so tests bind port 0 and stop
//! the server cleanly.

pub mod api;
pub mod blob;
pub mod config;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod jobs;
pub mod model;
pub mod secrets;
pub mod service;
pub mod source;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::auth::Caller;
use crate::blob::BlobStore;
use crate::blob::signed::UrlSigner;
use crate::config::{Config, Limits, Role};
use crate::jobs::JobSignal;
use crate::service::cache::TtlCache;
use crate::store::Store;

/// How long an authenticated key, a resolved namespace or a resolved bucket is trusted before it
/// is looked up again. Changes made by this process clear its caches at once; a change made by
/// another process (a revoked key, a renamed bucket, a new schema) reaches this one within
/// this time.
pub const LOOKUP_CACHE_TTL: Duration = Duration::from_secs(2);

/// Everything a request handler needs, shared by all requests.
pub struct AppState {
    pub store: Store,
    pub blobs: BlobStore,
    pub limits: Limits,
    pub job_signal: JobSignal,
    pub signer: UrlSigner,
    /// Whether sluice signs and serves every presigned URL itself, even where the blob store
    /// could presign; for stores that clients cannot reach.
    pub sluice_signs_urls: bool,
    pub fetcher: fetch::Fetcher,
    /// sluice's own AWS identity, with which it assumes the IAM roles of connections.
    pub aws_identity: source::sts::Identity,
    pub object_writer: service::writer::ObjectWriter,
    pub event_writer: service::writer::EventWriter,
    /// Seals and opens storage connection credentials.
    pub connection_secrets: secrets::SecretBox,
    pub auth_cache: TtlCache<String, Caller>,
    /// Namespaces by (organization, name or id).
    pub namespace_cache: TtlCache<(String, String), Arc<serde_json::Value>>,
    /// Buckets by (namespace, name or id).
    pub bucket_cache: TtlCache<(String, String), Arc<serde_json::Value>>,
    /// Parsed bucket schemas by bucket and version.
    pub schema_cache: TtlCache<String, Arc<model::schema::BucketSchema>>,
    /// Webhook settings, sealed secrets and the webhooks of each organization.
    pub hooks: service::webhooks::Hooks,
    /// How batches are processed.
    pub processing: config::ProcessingSettings,
    /// What feature extractors may use: tools found on this machine, an embedding service.
    pub extract: extract::Context,
}

/// An error that stops the server from starting.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

impl AppState {
    /// Opens the store (bringing its schema up to date) and the blob backend, and builds the
    /// shared state of a process whose signed URLs start with `public_url`. No job runs until
    /// workers are started over it.
    ///
    /// # Errors
    ///
    /// Fails when the store or blob backend cannot be opened.
    pub async fn open(config: &Config, public_url: &str) -> Result<Arc<AppState>, StartError> {
        let store = Store::open(&config.store).await?;
        tracing::info!(
            store = store.backend_name(),
            database = %config::redact_url(&config.store.database_url),
            "metadata store ready"
        );
        let env = std::env::vars().chain(config.storage_env.iter().cloned());
        let blobs = BlobStore::open_with_env(&config.storage_url, env)?;
        let signer = UrlSigner::new(&config.master_key, public_url);
        let object_writer = service::writer::ObjectWriter::start(store.clone());
        let event_writer = service::writer::EventWriter::start(store.clone());
        Ok(Arc::new(AppState {
            store,
            blobs,
            limits: config.limits.clone(),
            job_signal: JobSignal::default(),
            signer,
            sluice_signs_urls: config.sluice_signs_urls,
            fetcher: fetch::Fetcher::new(config.fetch.clone())?,
            aws_identity: source::sts::Identity::from_vars(
                std::env::vars().chain(config.storage_env.iter().cloned()),
            ),
            object_writer,
            event_writer,
            connection_secrets: service::connections::secret_box(&config.master_key),
            auth_cache: TtlCache::new(LOOKUP_CACHE_TTL, 10_000),
            namespace_cache: TtlCache::new(LOOKUP_CACHE_TTL, 10_000),
            bucket_cache: TtlCache::new(LOOKUP_CACHE_TTL, 10_000),
            schema_cache: TtlCache::new(LOOKUP_CACHE_TTL, 10_000),
            hooks: service::webhooks::Hooks::new(config.webhooks.clone(), &config.master_key),
            processing: config.processing.clone(),
            extract: extract::Context::detect(embedder(config)?),
        }))
    }
}

/// The embeddings client the configuration asks for, if any.
fn embedder(config: &Config) -> Result<Option<extract::embed::Embedder>, StartError> {
    let Some(e) = &config.processing.embeddings else { return Ok(None) };
    let embedder = extract::embed::Embedder::new(&e.url, &e.model, e.api_key.clone(), e.images)?;
    tracing::info!(model = %e.model, "embeddings service configured");
    Ok(Some(embedder))
}

/// Opens the store and blob backend, creates the first key on a first start, serves the API
/// on `listener` until `shutdown` completes, then lets in-flight requests finish.
///
/// # Errors
///
/// Fails when the store or blob backend cannot be opened or the listener fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let address = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    let state = AppState::open(&config, &public_url).await?;
    announce_bootstrap(&state.store, config.bootstrap_api_key.as_deref()).await?;
    // The first sweep waits a few minutes, so that it never goes ahead of work queued before
    // this start.
    if let Err(e) = service::events::schedule_sweep(&state, Duration::from_secs(300)).await {
        tracing::warn!(error = %e, "could not schedule the event sweeper; it is tried at the next start");
    }
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let workers = match config.role {
        Role::Api => 0,
        Role::All | Role::Worker => config.workers,
    };
    let worker_pool = tokio::spawn(jobs::run_workers(state.clone(), workers, workers_stopped));

    tracing::info!(%address, role = config.role.as_str(), workers, "sluice listening");
    let app = match config.role {
        Role::Worker => api::health_router(state.clone()),
        Role::All | Role::Api => api::router(state.clone()),
    };
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;

    tracing::info!("shutting down");
    stop_workers.send(true).ok();
    worker_pool.await.ok();
    state.store.close().await;
    Ok(())
}

/// On a first start, creates the default organization and its admin key, and prints the key
/// once on standard output (never to the log).
async fn announce_bootstrap(store: &Store, bootstrap_key: Option<&str>) -> Result<(), StartError> {
    let Some((org, key)) = service::keys::bootstrap(store, bootstrap_key).await? else {
        return Ok(());
    };
    tracing::info!(org.id = %org.id, key.id = %key.record.id, "created the first organization and key");
    if bootstrap_key.is_none() {
        println!("sluice: first start; created organization {} and its admin API key:", org.id);
        println!();
        println!("    {}", key.secret);
        println!();
        println!("This key is shown once. Create another with:");
        println!("    sluice admin key create --org {}", org.id);
    }
    Ok(())
}
