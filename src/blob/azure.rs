//! What Azure Blob Storage needs beyond `object_store`: the access tier read back (Get Blob
//! Properties, `x-ms-access-tier`) and changed in place (Set Blob Tier). Both go through a
//! SAS from `object_store`'s own signer, so every credential it supports works here too.

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::MicrosoftAzure;
use object_store::path::Path;
use object_store::signer::{Method, Signer};

use super::{BlobError, BlobMeta, wire};
use crate::model::StorageClass;

/// How long the SAS that sluice signs for its own requests stays valid.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

/// What a client must send, besides `Content-Type`, to upload through a SAS: Put Blob refuses
/// a request that does not say which kind of blob it creates.
pub(super) const UPLOAD_HEADERS: &[(&str, &str)] = &[("x-ms-blob-type", "BlockBlob")];

/// An Azure container, with the client for sluice's own requests to it.
#[derive(Clone)]
pub(super) struct AzureTarget {
    store: Arc<MicrosoftAzure>,
    http: reqwest::Client,
}

impl AzureTarget {
    pub(super) fn new(store: Arc<MicrosoftAzure>, http: reqwest::Client) -> Self {
        Self { store, http }
    }

    pub(super) fn store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.store.clone()
    }

    /// Get Blob Properties, with the tier; an account without tiers (premium) reports none.
    pub(super) async fn head(&self, location: &Path) -> Result<Option<BlobMeta>, BlobError> {
        // A read SAS authorizes Get Blob Properties; object_store signs no HEAD permission.
        let url = self.store.signed_url(Method::GET, location, OWN_REQUEST_TTL).await?;
        let request = self.http.head(url.as_str()).timeout(wire::METADATA_TIMEOUT);
        let response = wire::send(request).await?;
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
        let mut url = self.store.signed_url(Method::PUT, location, OWN_REQUEST_TTL).await?;
        url.query_pairs_mut().append_pair("comp", "tier");
        let request = self
            .http
            .put(url.as_str())
            .timeout(wire::METADATA_TIMEOUT)
            .header("x-ms-access-tier", class.azure_tier())
            .body("");
        wire::check(wire::send(request).await?, "Azure Set Blob Tier").await?;
        Ok(())
    }

    /// A SAS URL for one method on the blob. A SAS cannot bind a content type or a tier.
    pub(super) async fn presign(
        &self,
        method: Method,
        location: &Path,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        Ok(self.store.signed_url(method, location, ttl).await?.to_string())
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
}
