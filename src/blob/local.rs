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
    root: PathBuf,
    dir: PathBuf,
}

impl ClassRecords {
    /// Records for the blobs under `root`.
    pub(super) fn new(root: PathBuf) -> Self {
        let dir = root.join(super::RESERVED_SEGMENT).join("storage-class");
        Self { root, dir }
    }

    /// The blob directory these records belong to.
    pub(super) fn root(&self) -> &std::path::Path {
        self.root.as_path()
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

/// A thread that flushes a file being written, when asked, while the writer goes on.
struct Flusher {
    requests: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Flusher {
    fn start(file: std::fs::File) -> Self {
        // One pending request is enough: a flush covers every byte written before it starts.
        let (requests, pending) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("sluice-flush".into())
            .spawn(move || {
                while pending.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok();
        Self { requests: Some(requests), thread }
    }

    /// Asks for a flush of what has been written so far, unless one is already waiting.
    fn request(&self) {
        if let Some(requests) = &self.requests {
            requests.try_send(()).ok();
        }
    }

    /// Waits for the flushes asked for; fails when one of them failed.
    fn finish(mut self) -> std::io::Result<()> {
        self.requests.take();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(std::io::Error::other("the flushing thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// What the receiving side of a streamed local write is told.
pub(super) enum Piece {
    Bytes(bytes::Bytes),
    /// Every byte has arrived: make the file visible under its name.
    Finish,
}

/// How many bytes a streamed write lets pile up unflushed before it asks for them to be flushed.
const FLUSH_EVERY: u64 = 16 << 20;

/// Writes pieces into a hidden file beside `target` on a blocking thread, and renames it to
/// `target` on [`Piece::Finish`] once the bytes and the rename are on disk, so that a write
/// that returns has been made durable. When the sender goes away without finishing (a refused
/// or broken upload), the hidden file is removed and nothing is left under `target`.
///
/// The flushing overlaps the writing: every [`FLUSH_EVERY`] bytes, a second thread flushes what
/// has been written so far while this one goes on writing, so the disk works while the bytes
/// arrive and the flush at the end only has the tail left.
pub(super) fn spawn_file_writer(
    target: PathBuf,
) -> (tokio::sync::mpsc::Sender<Piece>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Piece>(4);
    let handle = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let Some(dir) = target.parent() else {
            return Err(std::io::Error::new(ErrorKind::InvalidInput, "blob path has no parent"));
        };
        std::fs::create_dir_all(dir)?;
        let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let staging = dir.join(format!(".{name}.{}.partial", crate::model::new_id("", 8)));
        let mut file = std::fs::File::create(&staging)?;
        let flusher = Flusher::start(file.try_clone()?);
        let outcome = (|| {
            let mut unflushed = 0u64;
            while let Some(piece) = receiver.blocking_recv() {
                match piece {
                    Piece::Bytes(bytes) => {
                        file.write_all(&bytes)?;
                        unflushed += bytes.len() as u64;
                        if unflushed >= FLUSH_EVERY {
                            flusher.request();
                            unflushed = 0;
                        }
                    }
                    Piece::Finish => {
                        flusher.finish()?;
                        file.sync_data()?;
                        std::fs::rename(&staging, &target)?;
                        return std::fs::File::open(dir)?.sync_all();
                    }
                }
            }
            Err(std::io::Error::new(ErrorKind::Interrupted, "the write was abandoned"))
        })();
        if outcome.is_err() {
            std::fs::remove_file(&staging).ok();
        }
        outcome
    });
    (sender, handle)
}
