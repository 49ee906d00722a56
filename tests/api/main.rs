#![allow(clippy::unwrap_used)]

//! End-to-end tests of the HTTP API: each test boots sluice on port 0 and drives it over HTTP,
//! on SQLite and on PostgreSQL alike.

mod common;
#[path = "../support/emulators.rs"]
mod emulators;

mod batches;
mod buckets;
mod connections;
mod errors;
mod events;
mod feeds;
mod mirror;
mod namespaces;
mod objects;
mod openapi;
mod storage_classes;
mod syncs;
mod tasks;
mod tenancy;
mod uploads;
mod webhooks;
