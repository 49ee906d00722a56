//! Organizations and API keys: creation, the first-start bootstrap and authentication.
//!
//! A key is `sk_` and 40 random characters, shown once when created and stored only as its
//! SHA-256 hash. Keys carry enough entropy that a plain hash is safe against guessing.

use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::auth::Caller;
use crate::error::{Error, Result};
use crate::model::{new_id, now};
use crate::store::{ApiKey, Organization, Store};

/// A key just created: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: ApiKey,
    pub secret: String,
}

/// Creates an organization with a fresh id.
///
/// # Errors
///
/// Fails on a store error.
pub async fn create_organization(store: &Store, name: &str) -> Result<Organization> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(Error::invalid("name", "expected 1 to 200 characters"));
    }
    let org = Organization {
        id: new_id("org_", 16),
        name: name.to_string(),
        internal_id: new_id("int_", 24),
        created_at: now(),
    };
    store.insert_organization(&org).await?;
    Ok(org)
}

/// Creates a key for an organization; `secret` is used when given, else a random one.
///
/// # Errors
///
/// Fails when the organization does not exist or the key already exists.
pub async fn create_key(
    store: &Store,
    org_id: &str,
    name: &str,
    secret: Option<&str>,
) -> Result<NewKey> {
    if store.get_organization(org_id).await?.is_none() {
        return Err(Error::not_found("organization", org_id));
    }
    let secret = secret.map(str::to_string).unwrap_or_else(|| new_id("sk_", 40));
    let record = ApiKey {
        id: new_id("key_", 16),
        org_id: org_id.to_string(),
        name: name.to_string(),
        key_hash: hash_key(&secret),
        key_prefix: secret.chars().take(10).collect(),
        created_at: now(),
        revoked_at: None,
    };
    store.insert_api_key(&record).await.map_err(|e| match e {
        crate::store::StoreError::Duplicate => Error::conflict("key_exists", "that API key exists"),
        other => Error::Store(other),
    })?;
    Ok(NewKey { record, secret })
}

/// On a first start (no key was ever created) creates the default organization and its admin
/// key: `bootstrap_key` when given, else a random key. Returns the organization and the key
/// when it created them.
///
/// Several processes may make their first start on one database at once: the one that stores
/// the bootstrap key first wins, and the others find it taken and start as later starts do.
// Limitation: processes that start for the first time at the same moment may each create an
// organization named default; without a bootstrap key each also prints a key of its own, and
// with one the losers leave their organization empty. Deployments of several processes start
// one process first.
///
/// # Errors
///
/// Fails on a store error.
pub async fn bootstrap(
    store: &Store,
    bootstrap_key: Option<&str>,
) -> Result<Option<(Organization, NewKey)>> {
    if store.count_api_keys().await? > 0 {
        return Ok(None);
    }
    let org = match store.list_organizations().await?.into_iter().next() {
        Some(org) => org,
        None => create_organization(store, "default").await?,
    };
    match create_key(store, &org.id, "admin", bootstrap_key).await {
        Ok(key) => Ok(Some((org, key))),
        Err(Error::Conflict { code: "key_exists", .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resolves a bearer token to its organization, or `None` for an unknown or revoked key.
///
/// # Errors
///
/// Fails on a store error.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Option<Caller>> {
    let hash = hash_key(token);
    if let Some(caller) = state.auth_cache.get(&hash) {
        return Ok(Some(caller));
    }
    let Some(key) = state.store.find_api_key(&hash).await? else {
        return Ok(None);
    };
    let Some(org) = state.store.get_organization(&key.org_id).await? else {
        return Ok(None);
    };
    let caller = Caller {
        org_id: org.id,
        org_name: org.name,
        internal_id: org.internal_id,
        key_id: key.id,
        key_name: key.name,
    };
    state.auth_cache.insert(hash, caller.clone());
    Ok(Some(caller))
}

fn hash_key(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
