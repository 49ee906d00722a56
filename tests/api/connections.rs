//! Storage connections: CRUD, validation, tenancy, sealed credentials that never come back,
//! and connection tests against the storage emulators (s3s-fs checks every SigV4 signature).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestServer, assert_error, start, start_allowing};
use crate::emulators::{create_azure_container, create_gcs_bucket};

const CONNECTIONS: &str = "/v1/organizations/connections";

/// A setting of the emulators that `scripts/services.sh up` exports; `None` only when the
/// emulators are skipped on purpose.
fn setting(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) if std::env::var("SLUICE_TEST_SKIP_EMULATORS").as_deref() == Ok("1") => None,
        Err(_) => panic!("{name} is not set: run `eval \"$(scripts/services.sh up)\"`"),
    }
}

fn s3_body(name: &str, endpoint: &str, key_id: &str, secret: &str) -> Value {
    json!({
        "name": name,
        "provider_type": "s3",
        "provider_config": {
            "credentials": {"type": "access_key", "access_key_id": key_id,
                            "secret_access_key": secret},
            "endpoint_url": endpoint,
            "region": "us-east-1",
        },
        "description": "raw footage",
        "metadata": {"team": "media"},
    })
}

/// Sends a request and checks that the answer does not contain any of `secrets`.
async fn call_clean(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    secrets: &[&str],
) -> (StatusCode, Value) {
    let (status, answer) = s.call(method, path, None, body).await;
    let text = answer.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "a credential came back from {path}: {text}");
    }
    (status, answer)
}

async fn s3_lifecycle(backend: Backend) {
    let Some(endpoint) = setting("SLUICE_TEST_S3S_ENDPOINT") else { return };
    let key_id = setting("SLUICE_TEST_S3S_ACCESS_KEY_ID").unwrap();
    let secret = setting("SLUICE_TEST_S3S_SECRET_ACCESS_KEY").unwrap();
    let Some(s) = start_allowing(backend, "127.0.0.0/8").await else { return };
    let hidden = [secret.as_str()];

    // A wrong secret fails the test that runs before saving; s3s-fs checks the signature.
    let wrong = s3_body("footage", &endpoint, &key_id, "not-the-secret");
    let (status, body) = call_clean(&s, Method::POST, CONNECTIONS, Some(wrong), &[]).await;
    let error = assert_error(status, &body, 400);
    assert!(error["message"].as_str().unwrap().contains("SignatureDoesNotMatch"), "{error}");

    // The right one is tested, saved, and never shown again.
    let good = s3_body("footage", &endpoint, &key_id, &secret);
    let (status, created) = call_clean(&s, Method::POST, CONNECTIONS, Some(good), &hidden).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["connection_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("conn_") && id.len() == 20, "{id}");
    assert!(id[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(created["provider_config"]["credentials"], json!({"type": "access_key"}));
    assert_eq!(created["provider_config"]["endpoint_url"], json!(endpoint));
    assert_eq!(created["provider_config"]["use_ssl"], true, "defaults are filled in");
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["consecutive_failures"], 0);
    assert_eq!(created["metadata"], json!({"team": "media"}));
    assert!(created["internal_id"].as_str().unwrap().starts_with("int_"));
    let user = created["created_by_user_id"].as_str().unwrap();
    assert!(user.starts_with("usr_") && user.len() == 19, "{user}");

    // By id and by name; the name is the organization's.
    for ident in [id.as_str(), "footage"] {
        let (status, got) =
            call_clean(&s, Method::GET, &format!("{CONNECTIONS}/{ident}"), None, &hidden).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["connection_id"], json!(id));
    }
    let again = s3_body("footage", &endpoint, &key_id, &secret);
    let (status, body) = s.post(CONNECTIONS, None, json!(again)).await;
    assert_error(status, &body, 409);

    // The test endpoint opens the sealed credentials and lists the buckets.
    let test = format!("{CONNECTIONS}/{id}/test");
    let (status, outcome) = call_clean(&s, Method::POST, &test, None, &hidden).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome["success"], true, "{outcome}");
    assert!(outcome["message"].is_string());

    // A new secret alone replaces the stored one; the key id is kept. A wrong one now fails the
    // test, which records the failure on the connection.
    let one = format!("{CONNECTIONS}/{id}");
    let patch = json!({"provider_config": {"endpoint_url": endpoint,
        "credentials": {"type": "access_key", "secret_access_key": "wrong-again"}}});
    let (status, patched) = call_clean(&s, Method::PATCH, &one, Some(patch), &hidden).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (_, outcome) = call_clean(&s, Method::POST, &test, None, &hidden).await;
    assert_eq!(outcome["success"], false, "{outcome}");
    let (_, got) = s.get(&one, None).await;
    assert_eq!(got["consecutive_failures"], 1);
    assert!(got["last_error"].as_str().unwrap().contains("SignatureDoesNotMatch"), "{got}");

    // Settings without credentials keep the stored ones; the right secret makes it pass again.
    let patch = json!({"provider_config": {"endpoint_url": endpoint, "region": "us-east-1",
        "credentials": {"type": "access_key", "secret_access_key": secret}}});
    call_clean(&s, Method::PATCH, &one, Some(patch), &hidden).await;
    let patch = json!({"description": "", "provider_config": {"endpoint_url": endpoint}});
    let (_, patched) = call_clean(&s, Method::PATCH, &one, Some(patch), &hidden).await;
    assert!(patched["description"].is_null(), "an empty description clears it");
    assert_eq!(patched["provider_config"]["credentials"], json!({"type": "access_key"}));
    let (_, outcome) = call_clean(&s, Method::POST, &test, None, &hidden).await;
    assert_eq!(outcome["success"], true, "{outcome}");
    let (_, got) = s.get(&one, None).await;
    assert_eq!(got["consecutive_failures"], 0);
    assert!(got["last_error"].is_null());

    // Saved untested, a bad connection is reported by its test, not refused.
    let mut untested = s3_body("untested", &endpoint, &key_id, "nope");
    untested["test_before_save"] = json!(false);
    let (status, created) = s.post(CONNECTIONS, None, untested).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let path = format!("{CONNECTIONS}/{}/test", created["connection_id"].as_str().unwrap());
    let (_, outcome) = s.post(&path, None, json!({})).await;
    assert_eq!(outcome["success"], false);

    // Nothing in the database holds the secret in the clear.
    let store = s.store().await;
    for table in [sluice::store::Table::Connections] {
        for (_, doc) in store.all_docs(table).await.unwrap() {
            assert!(!doc.to_string().contains(&secret), "stored in the clear: {doc}");
        }
    }
    store.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lifecycle_sqlite() {
    s3_lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lifecycle_postgres() {
    s3_lifecycle(Backend::Postgres).await;
}

async fn validation_archive_and_tenancy(backend: Backend) {
    let Some(s) = start(backend).await else { return };

    let rejected = [
        (json!({"name": "d", "provider_type": "google_drive", "provider_config": {}}), 422),
        (json!({"name": "d", "provider_type": "ftp", "provider_config": {}}), 422),
        (json!({"name": "d", "provider_type": "s3", "provider_config": {}}), 422),
        (json!({"name": "", "provider_type": "rss", "provider_config": {}}), 422),
        (json!({"name": "x".repeat(101), "provider_type": "rss", "provider_config": {}}), 422),
        (
            json!({"name": "d", "provider_type": "gcs", "provider_config": {
            "credentials": {"type": "service_account", "service_account_json": "{}"}}}),
            422,
        ),
        (
            json!({"name": "d", "provider_type": "s3", "provider_config": {
            "credentials": {"type": "iam_role", "role_arn": "arn:aws:iam::1:role/r",
                            "external_id": "e"}}}),
            422,
        ),
        (
            json!({"name": "d", "provider_type": "s3", "provider_config": {
            "credentials": {"type": "access_key", "access_key_id": "a"}}}),
            422,
        ),
        (
            json!({"name": "d", "provider_type": "s3", "provider_config": {
            "endpoint_url": "http://10.1.2.3:9000",
            "credentials": {"type": "access_key", "access_key_id": "a",
                            "secret_access_key": "b"}}}),
            422,
        ),
        (
            json!({"name": "d", "provider_type": "rss", "provider_config": {
            "request_timeout": 500}}),
            422,
        ),
    ];
    for (body, expected) in rejected {
        let (status, answer) = s.post(CONNECTIONS, None, body.clone()).await;
        assert_error(status, &answer, expected);
        assert!(!answer.to_string().contains("\"b\""), "{answer}");
    }
    let (status, answer) = s
        .post(
            CONNECTIONS,
            None,
            json!({"name": "d", "provider_type": "box", "provider_config": {}}),
        )
        .await;
    let error = assert_error(status, &answer, 422);
    assert!(error["message"].as_str().unwrap().contains("supported providers: s3"), "{error}");
    let (_, answer) = s
        .post(
            CONNECTIONS,
            None,
            json!({"name": "d", "provider_type": "s3", "provider_config": {
            "endpoint_url": "http://10.1.2.3:9000",
            "credentials": {"type": "access_key", "access_key_id": "a",
                            "secret_access_key": "b"}}}),
        )
        .await;
    assert!(answer.to_string().contains("SLUICE_ALLOW_PRIVATE_NETWORKS"), "{answer}");

    // Feeds carry no URL of their own (each sync names its feed), so their test checks settings.
    let headers = json!({"type": "http_headers", "headers": {"Authorization": "Bearer tok-123"}});
    let feed = json!({"name": "news", "provider_type": "rss",
                      "provider_config": {"credentials": headers}});
    let (status, created) =
        call_clean(&s, Method::POST, CONNECTIONS, Some(feed), &["tok-123"]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["provider_config"]["credentials"], json!({"type": "http_headers"}));
    assert_eq!(created["provider_config"]["request_timeout"], 30);
    let id = created["connection_id"].as_str().unwrap().to_string();
    let api = json!({"name": "api", "provider_type": "http_api",
                     "provider_config": {"items_path": "data.items", "http_method": "POST"}});
    let (status, created) = s.post(CONNECTIONS, None, api).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["provider_config"]["item_id_field"], "id");

    // Lists: newest first, filtered.
    let (_, page) = s.post(&format!("{CONNECTIONS}/list"), None, json!({})).await;
    let names: Vec<&str> =
        page["results"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "news"]);
    assert_eq!(page["total"], 2);
    let (_, page) =
        s.post(&format!("{CONNECTIONS}/list"), None, json!({"provider_type": "rss"})).await;
    assert_eq!(page["total"], 1);
    let (status, page) =
        s.post(&format!("{CONNECTIONS}/list"), None, json!({"provider_type": "nope"})).await;
    assert_error(status, &page, 422);

    // Suspended through is_active, then archived: readable by id, its name free again.
    let one = format!("{CONNECTIONS}/{id}");
    let (_, patched) = s.call(Method::PATCH, &one, None, Some(json!({"is_active": false}))).await;
    assert_eq!(patched["status"], "SUSPENDED");
    let (_, page) = s.post(&format!("{CONNECTIONS}/list"), None, json!({"is_active": true})).await;
    assert_eq!(page["total"], 1);
    let (status, deleted) = s.call(Method::DELETE, &one, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["connection_id"], json!(id));
    let (_, got) = s.get(&one, None).await;
    assert_eq!(got["status"], "ARCHIVED");
    assert_eq!(got["is_active"], false);
    let (status, body) = s.get(&format!("{CONNECTIONS}/news"), None).await;
    assert_error(status, &body, 404);
    let (_, page) = s.post(&format!("{CONNECTIONS}/list"), None, json!({})).await;
    assert_eq!(page["total"], 1);
    let (_, page) =
        s.post(&format!("{CONNECTIONS}/list"), None, json!({"status": "ARCHIVED"})).await;
    assert_eq!(page["total"], 1);
    let feed = json!({"name": "news", "provider_type": "rss", "provider_config": {}});
    let (status, _) = s.post(CONNECTIONS, None, feed).await;
    assert_eq!(status, StatusCode::OK, "an archived connection's name is free");

    // Another organization sees none of it.
    let other = s.other_org_key().await;
    let (status, body) = s.call_as(&other, Method::GET, &one, None, None).await;
    assert_error(status, &body, 404);
    let list = format!("{CONNECTIONS}/list");
    let (_, page) = s.call_as(&other, Method::POST, &list, None, Some(json!({}))).await;
    assert_eq!(page["results"], json!([]));
    let (status, body) =
        s.call_as(&other, Method::POST, &format!("{one}/test"), None, Some(json!({}))).await;
    assert_error(status, &body, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_archive_and_tenancy_sqlite() {
    validation_archive_and_tenancy(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_archive_and_tenancy_postgres() {
    validation_archive_and_tenancy(Backend::Postgres).await;
}

/// GCS and Azure connections are tested by listing their bucket or container in the emulators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_and_azure_connections_list_their_storage() {
    let Some(gcs) = setting("SLUICE_TEST_GCS_ENDPOINT") else { return };
    let key_file = setting("SLUICE_TEST_GCS_SERVICE_ACCOUNT").unwrap();
    let azure = setting("SLUICE_TEST_AZURE_ENDPOINT").unwrap();
    let account = setting("SLUICE_TEST_AZURE_ACCOUNT").unwrap();
    let account_key = setting("SLUICE_TEST_AZURE_ACCOUNT_KEY").unwrap();
    let s = start_allowing(Backend::Sqlite, "127.0.0.0/8").await.unwrap();
    let bucket = format!("conn-{}", std::process::id());
    create_gcs_bucket(&gcs, &bucket).await;
    create_azure_container(&azure, &account, &account_key, &bucket).await;

    let service_account = std::fs::read_to_string(&key_file).unwrap();
    let private_key = serde_json::from_str::<Value>(&service_account).unwrap()["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let body = json!({"name": "gcs", "provider_type": "gcs", "provider_config": {
        "bucket": bucket, "prefix": "in/", "endpoint_url": gcs,
        "credentials": {"type": "service_account", "service_account_json": service_account}}});
    let (status, created) =
        call_clean(&s, Method::POST, CONNECTIONS, Some(body), &[&private_key]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["provider_config"]["credentials"], json!({"type": "service_account"}));

    let body = |container: &str| {
        json!({"name": format!("az-{container}"), "provider_type": "azure_blob",
            "provider_config": {"container": container, "endpoint_url": azure,
            "credentials": {"type": "account_key", "account_name": account,
                            "account_key": account_key}}})
    };
    let (status, created) =
        call_clean(&s, Method::POST, CONNECTIONS, Some(body(&bucket)), &[&account_key]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let test = format!("{CONNECTIONS}/{}/test", created["connection_id"].as_str().unwrap());
    let (_, outcome) = call_clean(&s, Method::POST, &test, None, &[&account_key]).await;
    assert_eq!(outcome["success"], true, "{outcome}");

    // A container that does not exist fails the test before saving.
    let (status, answer) = s.post(CONNECTIONS, None, body("no-such-container")).await;
    let error = assert_error(status, &answer, 400);
    assert!(error["message"].as_str().unwrap().contains("no-such-container"), "{error}");
    s.stop().await;
}
