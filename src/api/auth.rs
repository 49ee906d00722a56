//! Who is calling: the bearer key and `X-Namespace` are resolved once, before the handler, into
//! a [`Caller`] or a [`NamespacedCaller`]. Handlers never read these headers themselves.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;

use crate::AppState;
use crate::error::Error;
use crate::service::keys;
use crate::store::Scope;

/// The authenticated organization and the key it called with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org_id: String,
    pub org_name: String,
    pub internal_id: String,
    pub key_id: String,
    pub key_name: String,
}

impl Caller {
    /// The scope of the organization's own rows.
    pub fn scope(&self) -> Scope<'_> {
        Scope::org(&self.org_id)
    }
}

/// A caller on a namespaced route, with the namespace its `X-Namespace` header names.
#[derive(Debug, Clone)]
pub struct NamespacedCaller {
    pub caller: Caller,
    pub namespace_id: String,
    pub namespace: Arc<Value>,
}

impl NamespacedCaller {
    /// The scope of the namespace's rows.
    pub fn scope(&self) -> Scope<'_> {
        Scope::namespace(&self.caller.org_id, &self.namespace_id)
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Unauthorized("missing Authorization: Bearer <api key>".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("expected Authorization: Bearer <api key>".into())
            })?;

        let caller = keys::authenticate(state, token)
            .await?
            .ok_or_else(|| Error::Unauthorized("invalid or revoked API key".into()))?;
        tracing::Span::current().record("org", caller.org_id.as_str());
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

impl FromRequestParts<Arc<AppState>> for NamespacedCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let ident = parts
            .headers
            .get("x-namespace")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::bad_request(
                    "namespace_required",
                    "this route needs the X-Namespace header (a namespace name or id)",
                )
            })?
            .to_string();

        let namespace = crate::service::namespaces::resolve_shared(state, &caller, &ident).await?;
        let namespace_id = namespace["namespace_id"].as_str().unwrap_or_default().to_string();
        tracing::Span::current().record("namespace", namespace_id.as_str());
        Ok(NamespacedCaller { caller, namespace_id, namespace })
    }
}

/// A caller on a route where `X-Namespace` is optional and narrows what the route answers.
#[derive(Debug, Clone)]
pub struct FilteringCaller {
    pub caller: Caller,
    /// The id of the namespace `X-Namespace` names, when the header is present.
    pub namespace_id: Option<String>,
}

impl FromRequestParts<Arc<AppState>> for FilteringCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let ident = parts
            .headers
            .get("x-namespace")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from);
        let Some(ident) = ident else {
            return Ok(FilteringCaller { caller, namespace_id: None });
        };
        let namespace = crate::service::namespaces::resolve_shared(state, &caller, &ident).await?;
        let namespace_id = namespace["namespace_id"].as_str().unwrap_or_default().to_string();
        tracing::Span::current().record("namespace", namespace_id.as_str());
        Ok(FilteringCaller { caller, namespace_id: Some(namespace_id) })
    }
}
