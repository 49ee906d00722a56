//! Group insert: concurrent requests that each write a few rows (objects, change events) have
//! them written by one multi-row `INSERT` instead of one statement (and one commit) each.
//!
//! A request hands its rows to the writer and waits for its own answer. A writer task takes
//! every request waiting at that moment, up to [`MAX_ROWS`] rows, and inserts them together; at
//! low load a request is written alone and waits for nothing. Each row is still answered on its
//! own (for objects: inserted, or refused for a taken key), so sharing a statement changes no
//! outcome. When a shared statement fails, each request's rows are written again on their own,
//! so that one request's failure never becomes another's.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{NewEvent, NewObject, Store, StoreError, StoreResult};

/// The most rows one shared statement carries.
const MAX_ROWS: usize = 500;
/// How many statements may be in flight at once.
const WRITERS: usize = 4;

type Reply<A> = oneshot::Sender<StoreResult<Vec<A>>>;
type Request<R, A> = (Vec<Arc<R>>, Reply<A>);
/// Writes rows with one statement and answers each row.
type Insert<R, A> = fn(Store, Vec<Arc<R>>) -> BoxFuture<'static, StoreResult<Vec<A>>>;

/// The handle requests write rows of type `R` through, each answered with an `A`.
pub struct GroupWriter<R, A> {
    sender: mpsc::UnboundedSender<Request<R, A>>,
}

impl<R, A> Clone for GroupWriter<R, A> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

/// Objects without blob hashes to record, answered with whether each was inserted.
pub type ObjectWriter = GroupWriter<NewObject, bool>;
/// Change events without webhook deliveries to queue.
pub type EventWriter = GroupWriter<NewEvent, ()>;

impl ObjectWriter {
    /// Starts the object writer tasks over `store`; they stop when every handle is dropped.
    pub fn start(store: Store) -> Self {
        GroupWriter::start_with(store, |store, rows| {
            Box::pin(async move {
                let refs: Vec<&NewObject> = rows.iter().map(|r| &**r).collect();
                store.insert_objects(&refs).await
            })
        })
    }
}

impl EventWriter {
    /// Starts the event writer tasks over `store`; they stop when every handle is dropped.
    pub fn start(store: Store) -> Self {
        GroupWriter::start_with(store, |store, rows| {
            Box::pin(async move {
                let refs: Vec<&NewEvent> = rows.iter().map(|r| &**r).collect();
                store.insert_events(&refs).await?;
                Ok(vec![(); rows.len()])
            })
        })
    }
}

impl<R: Send + Sync + 'static, A: Send + 'static> GroupWriter<R, A> {
    fn start_with(store: Store, insert: Insert<R, A>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(write_loop(store.clone(), receiver.clone(), insert));
        }
        Self { sender }
    }

    /// Inserts `rows`, perhaps together with other requests' rows; answers per row.
    ///
    /// # Errors
    ///
    /// The store's error for these rows.
    pub async fn insert(&self, rows: Vec<Arc<R>>) -> StoreResult<Vec<A>> {
        let stopped = || StoreError::Database(sqlx::Error::PoolClosed);
        let (reply, answer) = oneshot::channel();
        self.sender.send((rows, reply)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

type Queue<R, A> = Arc<Mutex<mpsc::UnboundedReceiver<Request<R, A>>>>;

async fn write_loop<R, A>(store: Store, queue: Queue<R, A>, insert: Insert<R, A>) {
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
        write_group(&store, group, insert).await;
    }
}

async fn write_group<R, A>(store: &Store, group: Vec<Request<R, A>>, insert: Insert<R, A>) {
    let all: Vec<Arc<R>> = group.iter().flat_map(|(rows, _)| rows.iter().cloned()).collect();
    match insert(store.clone(), all).await {
        Ok(answers) => {
            let mut answers = answers.into_iter();
            for (rows, reply) in group {
                let mine: Vec<A> = answers.by_ref().take(rows.len()).collect();
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
                reply.send(insert(store.clone(), rows).await).ok();
            }
        }
    }
}
