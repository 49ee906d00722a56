//! Setting up the storage emulators for a test: buckets and containers that sluice itself never
//! creates.

use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::signer::Method;

/// Creates an Azure container with a request signed by object_store's shared-key authorizer.
pub async fn create_azure_container(endpoint: &str, account: &str, key: &str, container: &str) {
    let mut request = HttpRequest::new(HttpRequestBody::empty());
    *request.method_mut() = Method::PUT;
    *request.uri_mut() = format!("{endpoint}/{container}?restype=container").parse().unwrap();
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(key).unwrap());
    AzureAuthorizer::new(&credential, account).try_authorize(&mut request).unwrap();

    let mut send = reqwest::Client::new()
        .put(request.uri().to_string())
        .header("content-length", "0")
        .body("");
    for (name, value) in request.headers() {
        send = send.header(name.as_str(), value.as_bytes());
    }
    let response = send.send().await.unwrap();
    let status = response.status();
    assert!(status.is_success(), "creating container: {status} {}", response.text().await.unwrap());
}

/// Creates a bucket in fake-gcs-server, which takes unauthenticated requests.
pub async fn create_gcs_bucket(endpoint: &str, bucket: &str) {
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=sluice-test"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "creating a GCS bucket: {}", response.status());
}
