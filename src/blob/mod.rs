//! The blob layer: the only module that moves bytes.
//!
//! Blobs live in an `object_store` backend chosen from the scheme of `SLUICE_STORAGE_URL`:
//! `file:` (the embedded default), `s3://`, `gs://` or `az://`. Keys are laid out by tenant:
//! `{internal_id}/{namespace_id}/{bucket_id}/{object_id}/{blob_id}/{filename}`, so one
//! organization's bytes never share a prefix with another's; the URL's own prefix is put in
//! front of every key, and no key can climb out of it.
//!
//! `object_store` does the reads and writes for every backend. What it lacks is done here, per
//! provider, with requests signed by `object_store`'s own signers: reading an object's storage
//! class back, changing it in place, and telling an archived object apart from a failure.
//! Storage classes are named by [`StorageClass`]'s per-provider functions and nowhere else.
//!
//! - [`open`] turns a URL and the environment into a configured store;
//! - `s3`, `gcs`, `azure` and `local` hold what each backend needs beyond `object_store`;
//! - [`signed`] signs sluice's own URLs, for backends that clients cannot reach.

mod azure;
mod gcs;
mod local;
pub mod open;
mod s3;
pub mod signed;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::{Path, PathPart};
use object_store::signer::Method;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};

use crate::model::StorageClass;

/// Streams larger than this are written in parts of this size, so no more than a few parts
/// are ever held in memory. S3 needs at least 5 MiB per part (but the last).
pub const PART_SIZE: usize = 8 << 20;

/// The part size of streamed writes to local files.
const LOCAL_PART_SIZE: usize = 1 << 20;

/// How many parts of one streamed write may be in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// The first key segment that the file backend keeps for its own records (storage classes);
/// no blob may be written under it.
const RESERVED_SEGMENT: &str = ".sluice";

/// What can go wrong moving bytes.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The storage URL names a scheme or shape sluice does not support.
    #[error("blob storage URL is not supported: {0}")]
    Unsupported(String),
    /// The backend could not be configured from the URL and the environment.
    #[error("blob storage is misconfigured: {0}")]
    Config(String),
    /// A key that is empty, has empty or `.`/`..` segments, control characters, or the reserved
    /// first segment.
    #[error("blob key is not allowed: {0}")]
    InvalidKey(String),
    /// No blob exists under the key.
    #[error("no blob under key {0}")]
    NotFound(String),
    /// The blob is in an archive tier and must be restored (rehydrated) before it can be read
    /// or re-tiered.
    #[error("blob {0} is archived and must be restored before it can be read")]
    Archived(String),
    /// A streamed write passed its size limit; nothing was kept.
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The backend refused or failed an `object_store` operation.
    #[error("blob storage failed: {0}")]
    Store(#[from] object_store::Error),
    /// A request that sluice makes itself (storage class reads and changes) failed.
    #[error("blob storage request failed: {0}")]
    Request(String),
    /// Local I/O failed, or a streamed body failed while being read.
    #[error("blob I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The bytes of a blob, chunk by chunk.
pub type BlobStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Which kind of store the blobs live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobBackend {
    /// Local files under a directory.
    File,
    /// Amazon S3 or an S3-compatible store.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

/// A blob as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    /// The key, relative to the store's prefix.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    /// RFC 3339, as [`crate::model::format_time`] writes it.
    pub last_modified: String,
}

/// Where a blob was written and what it holds.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// The key the caller gave, without the store's prefix.
    pub key: String,
    /// The blob's location, e.g. `s3://bucket/prefix/key` (`sluice://key` for local files).
    pub url: String,
    pub size: u64,
    pub etag: Option<String>,
    /// Lower-case hex SHA-256 of the bytes, when the write computed it (streamed writes do).
    pub sha256: Option<String>,
}

/// A stored blob's metadata, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    pub etag: Option<String>,
    /// Local files keep no content type (the blob record does); the clouds report theirs.
    pub content_type: Option<String>,
    /// The class read back from the store; `None` when it reports a class outside sluice's
    /// mapping (for example S3 `DEEP_ARCHIVE`) or none at all (Azure premium accounts).
    pub storage_class: Option<StorageClass>,
    /// RFC 3339, as [`crate::model::format_time`] writes it.
    pub last_modified: Option<String>,
}

/// The per-backend handles that the operations beyond `object_store` need.
#[derive(Clone)]
enum Backend {
    File(local::ClassRecords),
    S3(s3::S3Target),
    Gcs(gcs::GcsTarget),
    Azure(azure::AzureTarget),
}

/// The configured blob backend.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    backend: Backend,
    /// Put in front of every key; empty for local files.
    prefix: Path,
    /// `s3://bucket`, `gs://bucket`, `az://container` or `sluice:` for [`BlobStore::url_of`].
    location_base: String,
}

impl BlobStore {
    /// Opens the backend that `url` names, with credentials from the process environment.
    ///
    /// `file:PATH`, `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX`; the
    /// variables each backend reads are listed in [`open`].
    ///
    /// # Errors
    ///
    /// Fails on an unsupported scheme, missing credentials or a directory that cannot be
    /// created. Nothing is sent to a cloud store until the first operation.
    pub fn open(url: &str) -> Result<Self, BlobError> {
        open::open(url, std::env::vars())
    }

    /// Like [`BlobStore::open`], with the given variables instead of the process environment.
    ///
    /// # Errors
    ///
    /// As [`BlobStore::open`].
    pub fn open_with_env(
        url: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, BlobError> {
        open::open(url, env)
    }

    /// Which kind of store this is.
    pub fn backend(&self) -> BlobBackend {
        match self.backend {
            Backend::File(_) => BlobBackend::File,
            Backend::S3(_) => BlobBackend::S3,
            Backend::Gcs(_) => BlobBackend::Gcs,
            Backend::Azure(_) => BlobBackend::Azure,
        }
    }

    /// Writes `bytes` under `key` with its content type, in the standard class.
    ///
    /// # Errors
    ///
    /// Fails on a refused key or when the backend refuses the write.
    pub async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<StoredBlob, BlobError> {
        self.put_with_class(key, bytes, content_type, StorageClass::Standard).await
    }

    /// Writes `bytes` under `key` with its content type, in storage class `class`.
    ///
    /// # Errors
    ///
    /// Fails on a refused key or when the backend refuses the write (S3-compatible stores
    /// without storage classes refuse every class but standard).
    #[tracing::instrument(skip_all, fields(class = class.as_str(), size = bytes.len()))]
    pub async fn put_with_class(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: Option<&str>,
        class: StorageClass,
    ) -> Result<StoredBlob, BlobError> {
        let location = self.location(key)?;
        let size = bytes.len() as u64;
        let options =
            PutOptions { attributes: self.attributes(content_type, class), ..Default::default() };
        let result = self.inner.put_opts(&location, PutPayload::from_bytes(bytes), options).await?;
        self.record_class(&location, class).await?;
        Ok(self.stored(key, size, result.e_tag, None))
    }

    /// Writes a stream under `key` without holding it whole: up to one part ([`PART_SIZE`], or
    /// 1 MiB on local files) it is one write, above that a multipart upload of such parts. The SHA-256 of the bytes is
    /// computed on the way.
    ///
    /// # Errors
    ///
    /// [`BlobError::TooLarge`] once more than `max_size` bytes arrive; the partial upload is
    /// aborted and nothing is kept under `key`. A failing stream aborts the same way and
    /// returns its error as [`BlobError::Io`].
    #[tracing::instrument(skip_all, fields(class = class.as_str()))]
    pub async fn put_stream(
        &self,
        key: &str,
        stream: BlobStream,
        content_type: Option<&str>,
        class: StorageClass,
        max_size: Option<u64>,
    ) -> Result<StoredBlob, BlobError> {
        self.put_stream_hashed(key, stream, content_type, class, max_size, true).await
    }

    /// [`BlobStore::put_stream`], computing the SHA-256 only when `hash` is set: hashing is most
    /// of the CPU a large local write costs.
    ///
    /// # Errors
    ///
    /// As [`BlobStore::put_stream`].
    pub async fn put_stream_hashed(
        &self,
        key: &str,
        mut stream: BlobStream,
        content_type: Option<&str>,
        class: StorageClass,
        max_size: Option<u64>,
        hash: bool,
    ) -> Result<StoredBlob, BlobError> {
        let location = self.location(key)?;
        let hasher = hash.then(Sha256::new);
        let mut tally = Tally { size: 0, max_size, hasher };
        if let Some(path) = self.local_path(&location) {
            return self.put_stream_local(key, &location, path, stream, tally, class).await;
        }

        // Up to one part is gathered first, so that small blobs take a single request.
        let mut head = Vec::new();
        let mut buffered = 0;
        let part_size = self.part_size();
        while buffered < part_size {
            let Some(chunk) = stream.next().await else {
                let attributes = self.attributes(content_type, class);
                let options = PutOptions { attributes, ..Default::default() };
                let payload: PutPayload = head.into_iter().collect();
                let result = self.inner.put_opts(&location, payload, options).await?;
                self.record_class(&location, class).await?;
                return Ok(self.stored(key, tally.size, result.e_tag, tally.sha256()));
            };
            let chunk = chunk?;
            tally.add(&chunk)?;
            buffered += chunk.len();
            head.push(chunk);
        }

        let options = PutMultipartOptions {
            attributes: self.attributes(content_type, class),
            ..Default::default()
        };
        let upload = self.inner.put_multipart_opts(&location, options).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        head.into_iter().for_each(|chunk| writer.put(chunk));
        if let Err(e) = copy_parts(&mut stream, &mut writer, &mut tally).await {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "could not abort a refused multipart upload");
            }
            return Err(e);
        }
        // `finish` aborts the upload itself when completing it fails.
        let result = writer.finish().await?;
        self.record_class(&location, class).await?;
        Ok(self.stored(key, tally.size, result.e_tag, tally.sha256()))
    }

    /// The prefix every key of this store is under (`""` for none).
    pub fn prefix(&self) -> &str {
        self.prefix.as_ref()
    }

    /// Lists every blob under the store's prefix, as the store answers page by page: the
    /// listing is never held whole. Keys are relative to the prefix.
    pub fn list_all(&self) -> futures::stream::BoxStream<'_, Result<ListedBlob, BlobError>> {
        self.list_after(None)
    }

    /// Lists as [`list_all`](Self::list_all) does, but only the keys that sort after `after`
    /// (a key relative to the prefix), as the clouds list: in byte order of their keys.
    pub fn list_after(
        &self,
        after: Option<&str>,
    ) -> futures::stream::BoxStream<'_, Result<ListedBlob, BlobError>> {
        use futures::StreamExt;
        let prefix = self.prefix.clone();
        let offset = after.and_then(|key| {
            let full = if prefix.as_ref().is_empty() {
                key.to_string()
            } else {
                format!("{}/{key}", prefix.as_ref())
            };
            Path::parse(full).ok()
        });
        let listing = match &offset {
            Some(offset) => self.inner.list_with_offset(Some(&self.prefix), offset),
            None => self.inner.list(Some(&self.prefix)),
        };
        listing
            .map(move |entry| {
                let meta = entry?;
                let parts: Vec<String> = match meta.location.prefix_match(&prefix) {
                    Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
                    None => meta.location.parts().map(|p| p.as_ref().to_string()).collect(),
                };
                Ok(ListedBlob {
                    key: parts.join("/"),
                    size: meta.size,
                    etag: meta.e_tag,
                    last_modified: wire::format_timestamp_micros(
                        meta.last_modified.timestamp_micros(),
                    )
                    .unwrap_or_default(),
                })
            })
            .boxed()
    }

    /// Lists at most `limit` blobs under the store's prefix and answers how many there were:
    /// a check that the store can be reached and its credentials allow listing.
    ///
    /// # Errors
    ///
    /// The store's refusal or a network failure.
    pub async fn count_some(&self, limit: usize) -> Result<usize, BlobError> {
        use futures::StreamExt;
        let mut listing = self.inner.list(Some(&self.prefix)).take(limit);
        let mut seen = 0;
        while let Some(entry) = listing.next().await {
            entry?;
            seen += 1;
        }
        Ok(seen)
    }

    /// The metadata of the blob under `key`, with its storage class read back from the store;
    /// `None` when there is none.
    ///
    /// # Errors
    ///
    /// Fails on a refused key or when the store cannot be asked.
    pub async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        let location = self.location(key)?;
        match &self.backend {
            Backend::File(records) => {
                let meta = match self.inner.head(&location).await {
                    Ok(meta) => meta,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let class = records.read(&location).await?;
                Ok(Some(BlobMeta {
                    size: meta.size,
                    etag: meta.e_tag,
                    content_type: None,
                    storage_class: Some(class),
                    last_modified: wire::format_timestamp_micros(
                        meta.last_modified.timestamp_micros(),
                    ),
                }))
            }
            Backend::S3(target) => target.head(&location).await,
            Backend::Gcs(target) => target.head(&location).await,
            Backend::Azure(target) => target.head(&location).await,
        }
    }

    /// The part size of streamed writes: clouds need large parts (S3's minimum is 5 MiB); local
    /// files take small ones, which keeps the memory a large upload holds small.
    fn part_size(&self) -> usize {
        match self.backend {
            Backend::File(_) => LOCAL_PART_SIZE,
            Backend::S3(_) | Backend::Gcs(_) | Backend::Azure(_) => PART_SIZE,
        }
    }

    /// Opens a blob for reading as a stream of chunks, with its size.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`] when it is missing; [`BlobError::Archived`] when it sits in an
    /// archive tier that cannot be read directly (S3 `GLACIER`, Azure `Archive`).
    pub async fn open_read(&self, key: &str) -> Result<(u64, BlobStream), BlobError> {
        let location = self.location(key)?;
        let result = match self.inner.get(&location).await {
            Ok(result) => result,
            Err(e) => return Err(self.read_error(key, &location, e).await),
        };
        let size = result.meta.size;
        let stream = result.into_stream().map(|chunk| chunk.map_err(std::io::Error::other));
        Ok((size, Box::pin(stream)))
    }

    /// Reads a whole blob. Only for small blobs and tests; large reads stream.
    ///
    /// # Errors
    ///
    /// As [`BlobStore::open_read`].
    pub async fn read(&self, key: &str) -> Result<Bytes, BlobError> {
        let location = self.location(key)?;
        match self.inner.get(&location).await {
            Ok(result) => Ok(result.bytes().await?),
            Err(e) => Err(self.read_error(key, &location, e).await),
        }
    }

    /// Deletes the blob under `key`; a missing blob is not an error.
    ///
    /// # Errors
    ///
    /// Fails on a refused key or when the backend refuses the delete.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let location = self.location(key)?;
        match self.inner.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Backend::File(records) = &self.backend {
            records.forget(&location).await?;
        }
        Ok(())
    }

    /// Moves the blob under `key` to storage class `class` in place, keeping its bytes,
    /// content type and metadata. A blob already in that class is left alone.
    ///
    /// # Errors
    ///
    /// [`BlobError::NotFound`] when it is missing; [`BlobError::Archived`] when S3 refuses to
    /// copy an archived object that has not been restored.
    #[tracing::instrument(skip_all, fields(class = class.as_str()))]
    pub async fn set_storage_class(&self, key: &str, class: StorageClass) -> Result<(), BlobError> {
        let location = self.location(key)?;
        let Some(meta) = self.head(key).await? else {
            return Err(BlobError::NotFound(key.to_string()));
        };
        // S3 refuses a copy onto itself that changes nothing, and the other stores would do
        // needless work, so an object already in the class is left alone.
        if meta.storage_class == Some(class) {
            return Ok(());
        }
        match &self.backend {
            Backend::File(records) => records.record(&location, class).await,
            Backend::S3(target) => target.set_storage_class(key, &location, class).await,
            Backend::Gcs(target) => target.set_storage_class(&location, class).await,
            Backend::Azure(target) => target.set_storage_class(&location, class).await,
        }
    }

    /// A URL of the store itself that accepts one `PUT` of the blob under `key` until `ttl`
    /// from now; `None` where the caller must use sluice's own signed URLs instead: for local
    /// files, and on Azure for a name that must be percent-encoded.
    ///
    /// The S3 and GCS URLs bind `Content-Type`: an upload with another type is refused. The
    /// storage class is not bound, because binding it would make the uploader send one more
    /// header than Mixpeek's clients send; apply it on confirm with
    /// [`BlobStore::set_storage_class`]. Azure's URL is a SAS, which can bind neither, and
    /// Azure also requires the headers [`BlobStore::upload_headers`] names.
    ///
    /// # Errors
    ///
    /// Fails on a refused key, or when the credentials cannot sign (for example a TTL beyond
    /// seven days).
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        ttl: Duration,
        class: StorageClass,
    ) -> Result<Option<String>, BlobError> {
        let location = self.location(key)?;
        tracing::debug!(
            class = class.as_str(),
            "presigning an upload; the class applies on confirm"
        );
        let url = match &self.backend {
            Backend::File(_) => return Ok(None),
            Backend::S3(target) => target.presign_put(&location, content_type, ttl).await?,
            Backend::Gcs(target) => target.presign_put(&location, content_type, ttl).await?,
            // None for a name whose SAS Azure would refuse (see `azure::AzureTarget::presign`).
            Backend::Azure(target) => return target.presign(Method::PUT, &location, ttl).await,
        };
        Ok(Some(url))
    }

    /// The headers, besides `Content-Type`, that an upload to a [`BlobStore::presign_put`] URL
    /// must carry: `x-ms-blob-type: BlockBlob` on Azure, none elsewhere.
    pub fn upload_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self.backend {
            Backend::Azure(_) => azure::UPLOAD_HEADERS,
            Backend::File(_) | Backend::S3(_) | Backend::Gcs(_) => &[],
        }
    }

    /// A URL of the store itself that reads the blob under `key` until `ttl` from now; `None`
    /// where sluice's own signed URLs must serve it, as for [`BlobStore::presign_put`].
    ///
    /// # Errors
    ///
    /// As [`BlobStore::presign_put`].
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, BlobError> {
        let location = self.location(key)?;
        let url = match &self.backend {
            Backend::File(_) => return Ok(None),
            Backend::S3(target) => target.presign(Method::GET, &location, ttl).await?,
            Backend::Gcs(target) => target.presign_get(&location, ttl).await?,
            // None for a name whose SAS Azure would refuse (see `azure::AzureTarget::presign`).
            Backend::Azure(target) => return target.presign(Method::GET, &location, ttl).await,
        };
        Ok(Some(url))
    }

    /// The URL by which sluice names a stored blob: `sluice://KEY` for local files (their
    /// paths are not exposed), else the store's own location, e.g. `s3://bucket/prefix/KEY`.
    pub fn url_of(&self, key: &str) -> String {
        match self.location(key) {
            Ok(location) if !matches!(self.backend, Backend::File(_)) => {
                format!("{}/{location}", self.location_base)
            }
            _ => format!("sluice://{key}"),
        }
    }

    /// The full path of `key` under the store's prefix, once the key is checked.
    fn location(&self, key: &str) -> Result<Path, BlobError> {
        check_key(key)?;
        let parts = self.prefix.parts().chain(key.split('/').map(PathPart::from));
        Ok(Path::from_iter(parts))
    }

    fn attributes(&self, content_type: Option<&str>, class: StorageClass) -> Attributes {
        let mut attributes = Attributes::new();
        // Local files cannot keep attributes: the content type lives on the blob record and
        // the class in a record of its own.
        if matches!(self.backend, Backend::File(_)) {
            return attributes;
        }
        if let Some(content_type) = content_type {
            attributes.insert(Attribute::ContentType, content_type.to_string().into());
        }
        let class_name = match self.backend {
            // Standard is S3's default; leaving the header out keeps S3-compatible stores that
            // refuse every storage class header (s3s, some others) usable.
            Backend::S3(_) if class == StorageClass::Standard => None,
            Backend::S3(_) => Some(class.s3_name()),
            Backend::Gcs(_) => Some(class.gcs_name()),
            Backend::Azure(_) => Some(class.azure_tier()),
            Backend::File(_) => None,
        };
        if let Some(name) = class_name {
            attributes.insert(Attribute::StorageClass, name.into());
        }
        attributes
    }

    async fn record_class(&self, location: &Path, class: StorageClass) -> Result<(), BlobError> {
        match &self.backend {
            Backend::File(records) => records.record(location, class).await,
            _ => Ok(()),
        }
    }

    /// The file the local blob `key` lives in, for readers that need a file rather than a
    /// stream; `None` on the clouds.
    pub fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        self.location(key).ok().and_then(|location| self.local_path(&location))
    }

    /// The file a local blob lives in, when the key's parts need no encoding on disk (every key
    /// sluice makes); `None` on the clouds, or for a key whose file name `object_store` would
    /// encode.
    fn local_path(&self, location: &Path) -> Option<std::path::PathBuf> {
        let Backend::File(records) = &self.backend else { return None };
        let plain = |part: &str| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_string()).collect();
        if !parts.iter().all(|p| plain(p)) {
            return None;
        }
        let mut path = records.root().to_path_buf();
        path.extend(parts);
        Some(path)
    }

    /// Streams a local blob straight into its file, chunk by chunk as it arrives: no parts are
    /// gathered, so memory stays at a few chunks whatever the size.
    async fn put_stream_local(
        &self,
        key: &str,
        location: &Path,
        path: std::path::PathBuf,
        mut stream: BlobStream,
        mut tally: Tally,
        class: StorageClass,
    ) -> Result<StoredBlob, BlobError> {
        let (sender, writer) = local::spawn_file_writer(path);
        let received: Result<(), BlobError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                tally.add(&chunk)?;
                if sender.send(local::Piece::Bytes(chunk)).await.is_err() {
                    break;
                }
            }
            sender.send(local::Piece::Finish).await.ok();
            Ok(())
        }
        .await;
        if let Err(e) = received {
            drop(sender);
            writer.await.ok();
            return Err(e);
        }
        drop(sender);
        match writer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(BlobError::Io(std::io::Error::other(e.to_string()))),
        }
        self.record_class(location, class).await?;
        let etag = self.inner.head(location).await?.e_tag;
        Ok(self.stored(key, tally.size, etag, tally.sha256()))
    }

    fn stored(
        &self,
        key: &str,
        size: u64,
        etag: Option<String>,
        sha256: Option<String>,
    ) -> StoredBlob {
        StoredBlob { key: key.to_string(), url: self.url_of(key), size, etag, sha256 }
    }

    /// Turns a failed read into the error callers act on: missing, archived, or other.
    async fn read_error(
        &self,
        key: &str,
        location: &Path,
        error: object_store::Error,
    ) -> BlobError {
        if let object_store::Error::NotFound { .. } = error {
            return BlobError::NotFound(key.to_string());
        }
        let archived = match &self.backend {
            Backend::S3(target) => target.is_archived(&error, location).await,
            Backend::Azure(target) => target.is_archived(&error, location).await,
            Backend::File(_) | Backend::Gcs(_) => false,
        };
        if archived { BlobError::Archived(key.to_string()) } else { error.into() }
    }
}

/// The size and digest of a streamed write so far.
struct Tally {
    size: u64,
    max_size: Option<u64>,
    hasher: Option<Sha256>,
}

impl Tally {
    fn add(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if let Some(limit) = self.max_size
            && self.size > limit
        {
            return Err(BlobError::TooLarge { limit });
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(chunk);
        }
        Ok(())
    }

    fn sha256(self) -> Option<String> {
        let digest = self.hasher?.finalize();
        Some(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Feeds the rest of `stream` to a multipart upload, waiting for parts to finish so that at
/// most [`PARTS_IN_FLIGHT`] are held at once.
async fn copy_parts(
    stream: &mut BlobStream,
    writer: &mut WriteMultipart,
    tally: &mut Tally,
) -> Result<(), BlobError> {
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        tally.add(&chunk)?;
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.put(chunk);
    }
    Ok(())
}

/// Refuses keys that could name something outside the caller's own prefix, or that stores
/// treat differently from one another: empty keys and segments, `.` and `..`, control
/// characters, and the first segment the file backend keeps for itself.
fn check_key(key: &str) -> Result<(), BlobError> {
    let refuse = |why: &str| Err(BlobError::InvalidKey(format!("{why}: {key:?}")));
    if key.is_empty() {
        return refuse("empty key");
    }
    if key.len() > 1024 {
        return refuse("longer than 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return refuse("control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return refuse("empty segment"),
            "." | ".." => return refuse("relative segment"),
            _ => {}
        }
    }
    if key.split('/').next() == Some(RESERVED_SEGMENT) {
        return refuse("reserved first segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_are_refused() {
        for bad in
            ["", "..", "a/../b", "../a", "a/..", "./a", "a//b", "/a", "a/", "a\nb", ".sluice/x"]
        {
            assert!(matches!(check_key(bad), Err(BlobError::InvalidKey(_))), "{bad:?}");
        }
        for good in ["a", "a/b c/file.txt", "org/ns/bkt/obj/blob/..hidden", "x/.sluice", "ü/ß%#?"]
        {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_prefix_goes_in_front_of_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&format!("file:{}", dir.path().display())).unwrap();
        assert_eq!(store.location("a/b").unwrap().as_ref(), "a/b");
        assert_eq!(store.url_of("a/b"), "sluice://a/b");

        let env = [
            ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "s".to_string()),
        ];
        let s3 = BlobStore::open_with_env("s3://bkt/some/prefix", env).unwrap();
        assert_eq!(s3.backend(), BlobBackend::S3);
        assert_eq!(s3.location("a/b").unwrap().as_ref(), "some/prefix/a/b");
        assert_eq!(s3.url_of("a/b"), "s3://bkt/some/prefix/a/b");
        assert!(matches!(s3.location("../b"), Err(BlobError::InvalidKey(_))));
    }
}
