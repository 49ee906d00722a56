//! Group insert of objects: concurrent requests that each create a few objects have their rows
//! written by one multi-row `INSERT` instead of one statement (and one commit) each.
//!
//! A request hands its rows to the writer and waits for its own answer. A writer task takes
//! every request waiting at that moment, up to [`MAX_ROWS`] rows, and inserts them together; at
//! low load a request is written alone and waits for nothing. Each row is still answered on its
//! own (inserted, or refused for a taken key), so sharing a statement changes no outcome. When
//! a shared statement fails, each request's rows are written again on their own, so that one
//! request's failure never becomes another's.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{NewObject, Store, StoreError, StoreResult};

/// The most rows one shared statement carries.
const MAX_ROWS: usize = 500;
/// How many statements may be in flight at once.
const WRITERS: usize = 4;

type Reply = oneshot::Sender<StoreResult<Vec<bool>>>;
type Request = (Vec<Arc<NewObject>>, Reply);

/// The handle requests write through.
#[derive(Clone)]
pub struct ObjectWriter {
    sender: mpsc::UnboundedSender<Request>,
}

impl ObjectWriter {
    /// Starts the writer tasks over `store`; they stop when every handle is dropped.
    pub fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(write_loop(store.clone(), receiver.clone()));
        }
        Self { sender }
    }

    /// Inserts `rows` (which need no transaction of their own: no blob hashes to record),
    /// perhaps together with other requests' rows; answers per row whether it was inserted.
    ///
    /// # Errors
    ///
    /// The store's error for these rows.
    pub async fn insert(&self, rows: Vec<Arc<NewObject>>) -> StoreResult<Vec<bool>> {
        let stopped = || StoreError::Database(sqlx::Error::PoolClosed);
        let (reply, answer) = oneshot::channel();
        self.sender.send((rows, reply)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Request>>>;

async fn write_loop(store: Store, queue: Queue) {
    loop {
        let group = {
            let mut receiver = queue.lock().await;
            let Some(first) = receiver.recv().await else { return };
            let mut group = vec![first];
            let mut rows = group[0].0.len();
            while rows < MAX_ROWS {
                match receiver.try_recv() {
                    Ok(next) => {
                        rows += next.0.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&store, group).await;
    }
}

async fn write_group(store: &Store, group: Vec<Request>) {
    let refs: Vec<&NewObject> =
        group.iter().flat_map(|(rows, _)| rows.iter().map(|r| &**r)).collect();
    match store.insert_objects(&refs).await {
        Ok(inserted) => {
            let mut flags = inserted.into_iter();
            for (rows, reply) in group {
                let mine: Vec<bool> = flags.by_ref().take(rows.len()).collect();
                reply.send(Ok(mine)).ok();
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some((_, reply)) = group.into_iter().next() {
                reply.send(Err(e)).ok();
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, requests = group.len(), "a shared insert failed; writing each request alone");
            for (rows, reply) in group {
                let refs: Vec<&NewObject> = rows.iter().map(|r| &**r).collect();
                reply.send(store.insert_objects(&refs).await).ok();
            }
        }
    }
}
