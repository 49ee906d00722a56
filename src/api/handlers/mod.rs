//! Route handlers, one module per resource.

pub mod batches;
pub mod buckets;
pub mod collections;
pub mod connections;
pub mod events;
pub mod files;
pub mod health;
pub mod namespaces;
pub mod objects;
pub mod syncs;
pub mod tasks;
pub mod uploads;
pub mod webhooks;

use std::sync::Arc;

use crate::AppState;

/// The shared state as handlers receive it.
pub type AppStateRef = axum::extract::State<Arc<AppState>>;
