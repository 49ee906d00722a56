//! Setting up the storage emulators for a test: buckets and containers that sluice itself never
//! creates. Each test crate that includes this file uses only some of it.
#![allow(dead_code)]

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

/// Writes an object into fake-gcs-server through its JSON upload API (it does not take the
/// XML API's writes that `object_store` sends).
pub async fn put_gcs_object(endpoint: &str, bucket: &str, name: &str, body: &str) {
    let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let url = format!("{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}");
    let response = reqwest::Client::new().post(url).body(body.to_string()).send().await.unwrap();
    assert!(response.status().is_success(), "writing to GCS: {}", response.status());
}
