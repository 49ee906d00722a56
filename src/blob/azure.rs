//! What Azure Blob Storage needs beyond `object_store`: the access tier read back (Get Blob
//! Properties, `x-ms-access-tier`) and changed in place (Set Blob Tier). Both requests are
//! authorized by `object_store`'s own Azure authorizer with the store's own credential (shared
//! key, bearer token or SAS), exactly as its reads and writes are.

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::{AzureAuthorizer, MicrosoftAzure};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, Signer, Url};

use super::{BlobError, BlobMeta, wire};
use crate::model::StorageClass;

/// What a client must send, besides `Content-Type`, to upload through a SAS: Put Blob refuses
/// a request that does not say which kind of blob it creates.
pub(super) const UPLOAD_HEADERS: &[(&str, &str)] = &[("x-ms-blob-type", "BlockBlob")];

/// An Azure container, with the client for sluice's own requests to it.
#[derive(Clone)]
pub(super) struct AzureTarget {
    store: Arc<MicrosoftAzure>,
    http: reqwest::Client,
    account: String,
    /// The container's URL, to which blob paths are appended as `object_store` appends them.
    container_url: Url,
}

impl AzureTarget {
    pub(super) fn new(
        store: Arc<MicrosoftAzure>,
        http: reqwest::Client,
        account: &str,
        container_url: Url,
    ) -> Self {
        Self { store, http, account: account.to_string(), container_url }
    }

    /// Get Blob Properties, with the tier; an account without tiers (premium) reports none.
    pub(super) async fn head(&self, location: &Path) -> Result<Option<BlobMeta>, BlobError> {
        let request = self.authorized(Method::HEAD, location, None, None).await?;
        let response = wire::send(request.timeout(wire::METADATA_TIMEOUT)).await?;
        if wire::is_missing(response.status()) {
            return Ok(None);
        }
        let response = wire::check(response, "Azure Get Blob Properties").await?;
        Ok(Some(wire::meta_from_headers(
            response.headers(),
            "x-ms-access-tier",
            StorageClass::from_azure_tier,
            None,
        )))
    }

    /// Set Blob Tier. Leaving `Archive` starts a rehydration that takes hours; until it ends
    /// the blob still reads back as archived.
    pub(super) async fn set_storage_class(
        &self,
        location: &Path,
        class: StorageClass,
    ) -> Result<(), BlobError> {
        let tier = ("x-ms-access-tier", class.azure_tier());
        let request =
            self.authorized(Method::PUT, location, Some(("comp", "tier")), Some(tier)).await?;
        // Azure refuses a PUT without a length, even an empty one (411).
        let request =
            request.timeout(wire::METADATA_TIMEOUT).header("content-length", "0").body("");
        wire::check(wire::send(request).await?, "Azure Set Blob Tier").await?;
        Ok(())
    }

    /// A SAS URL for one method on the blob; `None` when the blob's name must be
    /// percent-encoded in a URL. A SAS can bind neither a content type nor a tier.
    ///
    /// Limitation: `object_store` signs a SAS over the percent-encoded path, while Azure (and
    /// Azurite) check it against the decoded blob name, so the SAS of a name with a space or
    /// another encoded character would be refused. For those names this answers `None`, and
    /// sluice serves the transfer through its own signed URLs instead.
    pub(super) async fn presign(
        &self,
        method: Method,
        location: &Path,
        ttl: Duration,
    ) -> Result<Option<String>, BlobError> {
        let url = self.store.signed_url(method, location, ttl).await?;
        if url.path().contains('%') {
            tracing::debug!("the blob name needs encoding; no SAS is issued for it");
            return Ok(None);
        }
        Ok(Some(url.to_string()))
    }

    /// Whether a failed read failed because the blob is in the archive tier: Azure answers 409
    /// `BlobArchived`. Should the code be missing from the error, the tier read back decides.
    pub(super) async fn is_archived(&self, error: &object_store::Error, location: &Path) -> bool {
        if wire::error_text(error).contains("BlobArchived") {
            return true;
        }
        matches!(
            self.head(location).await,
            Ok(Some(BlobMeta { storage_class: Some(StorageClass::Archive), .. }))
        )
    }

    /// A request for the blob at `location`, authorized like `object_store`'s own.
    async fn authorized(
        &self,
        method: Method,
        location: &Path,
        query: Option<(&str, &str)>,
        header: Option<(&'static str, &str)>,
    ) -> Result<reqwest::RequestBuilder, BlobError> {
        let mut url = self.container_url.clone();
        url.path_segments_mut()
            .map_err(|()| BlobError::Config("the Azure endpoint cannot hold a path".into()))?
            .extend(location.parts());
        if let Some((name, value)) = query {
            url.query_pairs_mut().append_pair(name, value);
        }

        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = method.clone();
        *request.uri_mut() =
            url.as_str().parse().map_err(|e| BlobError::Request(format!("bad blob URL: {e}")))?;
        if let Some((name, value)) = header {
            let value = HeaderValue::from_str(value)
                .map_err(|_| BlobError::Request(format!("not a header value: {value:?}")))?;
            request.headers_mut().insert(HeaderName::from_static(name), value);
        }
        let credential = self.store.credentials().get_credential().await?;
        AzureAuthorizer::new(&credential, &self.account).try_authorize(&mut request)?;

        let mut builder = self.http.request(method, request.uri().to_string());
        for (name, value) in request.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        Ok(builder)
    }
}
