//! Storage classes of local files. A file has no class, so the class that a write or a
//! re-tiering asked for is recorded beside the blobs, in a tree of small files under the
//! reserved first segment `.sluice/storage-class/`, which no key can name. Standard, the
//! default, is recorded by having no record, so the common write costs one missing-file check.

use std::io::ErrorKind;
use std::path::PathBuf;

use object_store::path::Path;

use super::BlobError;
use crate::model::StorageClass;

/// The records of one blob directory.
#[derive(Clone)]
pub(super) struct ClassRecords {
    dir: PathBuf,
}

impl ClassRecords {
    /// Records for the blobs under `root`.
    pub(super) fn new(root: PathBuf) -> Self {
        Self { dir: root.join(super::RESERVED_SEGMENT).join("storage-class") }
    }

    /// Records `class` for the blob at `location`.
    pub(super) async fn record(
        &self,
        location: &Path,
        class: StorageClass,
    ) -> Result<(), BlobError> {
        if class == StorageClass::Standard {
            return self.forget(location).await;
        }
        let path = self.path(location);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Written aside and renamed, so a reader never sees half a record.
        let mut staging = path.clone().into_os_string();
        staging.push(format!(".{}.tmp", crate::model::new_id("", 8)));
        tokio::fs::write(&staging, class.as_str()).await?;
        if let Err(e) = tokio::fs::rename(&staging, &path).await {
            tokio::fs::remove_file(&staging).await.ok();
            return Err(e.into());
        }
        Ok(())
    }

    /// The class recorded for the blob at `location`; standard when none is.
    pub(super) async fn read(&self, location: &Path) -> Result<StorageClass, BlobError> {
        match tokio::fs::read_to_string(self.path(location)).await {
            Ok(text) => StorageClass::parse(text.trim()).ok_or_else(|| {
                let message = format!("unknown storage class record {:?}", text.trim());
                BlobError::Io(std::io::Error::new(ErrorKind::InvalidData, message))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(StorageClass::Standard),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the record of the blob at `location`, if there is one.
    pub(super) async fn forget(&self, location: &Path) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(location)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A location's parts are percent-encoded by `object_store` and never `.` or `..`, so the
    /// record stays inside the records directory.
    fn path(&self, location: &Path) -> PathBuf {
        let mut path = self.dir.clone();
        path.extend(location.parts().map(|part| part.as_ref().to_string()));
        path
    }
}
