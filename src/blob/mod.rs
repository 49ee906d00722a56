//! The blob layer: the only module that moves bytes.
//!
//! Blobs live in an `object_store` backend chosen from `SLUICE_STORAGE_URL`. The embedded
//! default is local files under the data directory. Keys are laid out by tenant:
//! `{internal_id}/{namespace_id}/{bucket_id}/{object_id}/{blob_id}/{filename}`, so one
//! organization's bytes never share a prefix with another's.

pub mod signed;

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

/// What can go wrong moving bytes.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob storage URL is not supported: {0}")]
    Unsupported(String),
    #[error("blob storage failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("could not prepare the blob directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The bytes of a blob, chunk by chunk.
pub type BlobStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Where a blob was written and what it holds.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub key: String,
    pub url: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// The configured blob backend.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    scheme: &'static str,
}

impl BlobStore {
    /// Opens the backend that `url` names (`file:PATH`).
    ///
    /// # Errors
    ///
    /// Fails on an unsupported scheme or a directory that cannot be created.
    pub fn open(url: &str) -> Result<Self, BlobError> {
        let Some(path) = url.strip_prefix("file:") else {
            return Err(BlobError::Unsupported(url.to_string()));
        };
        let path = path.strip_prefix("//").unwrap_or(path);
        std::fs::create_dir_all(path)?;
        let store = LocalFileSystem::new_with_prefix(path)?;
        Ok(Self { inner: Arc::new(store), scheme: "file" })
    }

    /// Writes `bytes` under `key` with its content type.
    ///
    /// # Errors
    ///
    /// Fails when the backend refuses the write.
    pub async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<StoredBlob, BlobError> {
        let size = bytes.len() as u64;
        let mut attributes = Attributes::new();
        if let Some(content_type) = content_type {
            attributes.insert(Attribute::ContentType, content_type.to_string().into());
        }
        // Local files cannot keep attributes; the content type is recorded on the blob record.
        if self.scheme == "file" {
            attributes = Attributes::new();
        }
        let options = PutOptions { attributes, ..Default::default() };
        let result =
            self.inner.put_opts(&Path::from(key), PutPayload::from_bytes(bytes), options).await?;
        Ok(StoredBlob { key: key.to_string(), url: self.url_of(key), size, etag: result.e_tag })
    }

    /// Deletes the blob under `key`; a missing blob is not an error.
    ///
    /// # Errors
    ///
    /// Fails when the backend refuses the delete.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob for reading as a stream of chunks, with its size.
    ///
    /// # Errors
    ///
    /// [`BlobError::Store`] with `object_store::Error::NotFound` when it is missing.
    pub async fn open_read(&self, key: &str) -> Result<(u64, BlobStream), BlobError> {
        let result = self.inner.get(&Path::from(key)).await?;
        let size = result.meta.size;
        let stream = futures::StreamExt::map(result.into_stream(), |chunk| {
            chunk.map_err(|e| std::io::Error::other(e.to_string()))
        });
        Ok((size, Box::pin(stream)))
    }

    /// Reads a whole blob. Only for small blobs and tests; large reads stream.
    ///
    /// # Errors
    ///
    /// Fails when the blob is missing or the backend fails.
    pub async fn read(&self, key: &str) -> Result<Bytes, BlobError> {
        Ok(self.inner.get(&Path::from(key)).await?.bytes().await?)
    }

    /// The URL by which sluice names a stored blob, e.g. `file:///…` is not exposed; blobs
    /// are named by scheme and key.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}://{key}", self.scheme_name())
    }

    fn scheme_name(&self) -> &'static str {
        match self.scheme {
            "file" => "sluice",
            other => other,
        }
    }
}
