//! Organization webhooks: CRUD, validation, tenancy, secret redaction, and deliveries to a
//! local receiver that checks signatures and fails on purpose.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::WebhookSettings;

use crate::both_backends;
use crate::common::{Backend, TestServer, assert_error, start_hooks};

const SECRET: &str = "whsec_test_secret";

fn hook_body(name: &str, url: &str) -> Value {
    json!({
        "webhook_name": name,
        "event_types": ["object.created", "object.updated", "object.deleted"],
        "channels": [{"channel": "webhook", "configs": {
            "url": url, "headers": {"X-Team": "ingest"}, "timeout": 10.0,
            "signing_secret": SECRET, "payload_template": null,
        }}],
        "is_active": true,
    })
}

fn is_webhook_id(id: &Value) -> bool {
    let id = id.as_str().unwrap_or_default();
    id.len() == 19
        && id.starts_with("wh_")
        && id[3..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

async fn crud_and_redaction(s: &TestServer) {
    let (status, hook) =
        s.post("/v1/organizations/webhooks", None, hook_body("crm", "https://example.com/h")).await;
    assert_eq!(status, StatusCode::OK, "{hook}");
    assert!(is_webhook_id(&hook["webhook_id"]), "{hook}");
    let id = hook["webhook_id"].as_str().unwrap().to_string();
    let configs = &hook["channels"][0]["configs"];
    assert_eq!(configs["signing_secret"], "redacted");
    assert_eq!(configs["headers"]["X-Team"], "ingest");
    assert_eq!(hook["is_active"], true);
    assert_eq!(hook["delivery_health"]["consecutive_failures"], 0);
    assert!(hook["created_at"].is_string() && hook["updated_at"].is_string());
    assert!(!hook.to_string().contains(SECRET));

    // The trailing-slash path creates too; sluice's own event types are accepted.
    let mut second = hook_body("batches", "https://example.com/b");
    second["event_types"] = json!(["batch.completed", "object.created"]);
    second["channels"][0]["configs"]["signing_secret"] = Value::Null;
    let (status, other) = s.post("/v1/organizations/webhooks/", None, second).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert!(other["channels"][0]["configs"]["signing_secret"].is_null());

    for ident in [id.as_str(), "crm"] {
        let (status, got) = s.get(&format!("/v1/organizations/webhooks/{ident}"), None).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["webhook_id"], json!(id));
        assert_eq!(got["channels"][0]["configs"]["signing_secret"], "redacted");
    }

    let (status, list) = s.post("/v1/organizations/webhooks/list", None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2);
    assert!(list["pagination"].is_object());
    let (_, list) = s
        .post("/v1/organizations/webhooks/list", None, json!({"event_type": "batch.completed"}))
        .await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["results"][0]["webhook_name"], "batches");
    let (_, list) =
        s.post("/v1/organizations/webhooks/list?limit=1", None, json!({"is_active": true})).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["total"], 2);
    let (_, list) =
        s.post("/v1/organizations/webhooks/list", None, json!({"is_active": false})).await;
    assert_eq!(list["total"], 0);

    // "redacted" keeps the sealed secret, "" removes it; the record never holds it in clear.
    let path = format!("/v1/organizations/webhooks/{id}");
    let sealed_before = stored_secret(s, &id).await;
    assert!(sealed_before.is_some());
    let mut update = hook_body("crm-renamed", "https://example.com/h2");
    update["channels"][0]["configs"]["signing_secret"] = json!("redacted");
    let (status, updated) = s.call(Method::PUT, &path, None, Some(update.clone())).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["webhook_name"], "crm-renamed");
    assert_eq!(updated["channels"][0]["configs"]["url"], "https://example.com/h2");
    assert_eq!(updated["channels"][0]["configs"]["signing_secret"], "redacted");
    assert_eq!(stored_secret(s, &id).await, sealed_before);

    update["channels"][0]["configs"]["signing_secret"] = json!("");
    let (status, updated) = s.call(Method::PUT, &path, None, Some(update)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert!(updated["channels"][0]["configs"]["signing_secret"].is_null());
    assert_eq!(stored_secret(s, &id).await, None);

    // A taken name conflicts.
    let (status, body) = s
        .post("/v1/organizations/webhooks", None, hook_body("batches", "https://example.com/x"))
        .await;
    assert_error(status, &body, 409);

    // Delete is idempotent.
    let (status, _) = s.call(Method::DELETE, &path, None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.call(Method::DELETE, &path, None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&path, None).await;
    assert_error(status, &body, 404);
}
both_backends!(crud_and_redaction);

/// The sealed secret of the first channel, read from the store.
async fn stored_secret(s: &TestServer, id: &str) -> Option<String> {
    let store = s.store().await;
    let orgs = store.list_organizations().await.unwrap();
    let mut found = None;
    for org in orgs {
        for doc in store.webhooks_of(&org.id).await.unwrap() {
            if doc["webhook_id"] == id {
                assert!(!doc.to_string().contains(SECRET), "the secret is stored in clear");
                found = doc["channels"][0]["sealed_signing_secret"].as_str().map(String::from);
            }
        }
    }
    store.close().await;
    found
}

async fn validation_and_tenancy(s: &TestServer) {
    let cases = [
        (json!({"webhook_name": "", "event_types": ["object.created"]}), "webhook_name"),
        (json!({"event_types": []}), "event_types"),
        (json!({"event_types": ["object.exploded"]}), "event_types.0"),
        (json!({"channels": []}), "channels"),
        (
            json!({"channels": [{"channel": "slack", "configs": {"webhook_url": "https://x"}}]}),
            "channels.0.channel",
        ),
        (
            json!({"channels": [{"channel": "webhook", "configs": {"url": "http://127.0.0.1:9/h"}}]}),
            "channels.0.configs.url",
        ),
        (
            json!({"channels": [{"channel": "webhook", "configs": {"url": "http://10.1.2.3/h"}}]}),
            "channels.0.configs.url",
        ),
        (
            json!({"channels": [{"channel": "webhook", "configs": {"url": "ftp://example.com/h"}}]}),
            "channels.0.configs.url",
        ),
        (
            json!({"channels": [{"channel": "webhook", "configs": {"url": "https://example.com",
            "headers": {"Content-Type": "text/plain"}}}]}),
            "channels.0.configs.headers.Content-Type",
        ),
        (
            json!({"channels": [{"channel": "webhook", "configs": {"url": "https://example.com",
            "timeout": 0}}]}),
            "channels.0.configs.timeout",
        ),
    ];
    for (change, field) in cases {
        let mut body = hook_body("v", "https://example.com/h");
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, answer) = s.post("/v1/organizations/webhooks", None, body).await;
        let error = assert_error(status, &answer, 422);
        assert_eq!(error["details"]["field"], field, "{answer}");
    }

    let (_, hook) = s
        .post("/v1/organizations/webhooks", None, hook_body("mine", "https://example.com/m"))
        .await;
    let id = hook["webhook_id"].as_str().unwrap().to_string();
    let other = s.other_org_key().await;
    let path = format!("/v1/organizations/webhooks/{id}");
    let (status, body) = s.call_as(&other, Method::GET, &path, None, None).await;
    assert_error(status, &body, 404);
    let (status, body) = s
        .call_as(&other, Method::PUT, &path, None, Some(hook_body("x", "https://example.com/x")))
        .await;
    assert_error(status, &body, 404);
    let (status, _) = s.call_as(&other, Method::DELETE, &path, None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = s
        .call_as(&other, Method::POST, "/v1/organizations/webhooks/list", None, Some(json!({})))
        .await;
    assert_eq!(list["total"], 0, "{list}");
    let (status, _) = s.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "another organization cannot delete it");
}
both_backends!(validation_and_tenancy);

// Deliveries to a local receiver.

/// What the receiver saw: every request, and how many requests it still fails on purpose.
#[derive(Default)]
struct Inbox {
    requests: Vec<Received>,
    fail_next: usize,
}

#[derive(Clone, Debug)]
struct Received {
    path: String,
    event_id: String,
    event_type_header: String,
    delivery_header: String,
    body: Value,
    signed: bool,
    answered: u16,
}

type Shared = Arc<Mutex<Inbox>>;

/// Starts a receiver on 127.0.0.1: `/ok` answers 500 to the first `fail_next` requests and
/// 200 after; `/down` always answers 500. Every request's signature is checked.
async fn receiver(fail_first: usize) -> (String, Shared) {
    let inbox: Shared = Arc::new(Mutex::new(Inbox { fail_next: fail_first, ..Default::default() }));
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{address}"), inbox)
}

async fn receive(
    State(inbox): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxumStatus {
    let header = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    let signed = verify(&header("x-mixpeek-signature"), &body);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inbox = inbox.lock().unwrap();
    let fail = path == "down" || inbox.fail_next > 0;
    if path != "down" && inbox.fail_next > 0 {
        inbox.fail_next -= 1;
    }
    let answered = if fail { 500 } else { 200 };
    inbox.requests.push(Received {
        path,
        event_id: parsed["event_id"].as_str().unwrap_or_default().to_string(),
        event_type_header: header("x-mixpeek-event"),
        delivery_header: header("x-mixpeek-delivery"),
        body: parsed,
        signed,
        answered,
    });
    AxumStatus::from_u16(answered).unwrap()
}

/// Checks `t=<secs>,v1=<hex>` against the body the way a receiver would, with a fresh `t`.
fn verify(signature: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Some((t, v1)) = signature.split_once(',') else { return false };
    let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else {
        return false;
    };
    let Ok(t) = t.parse::<i64>() else { return false };
    if (time::OffsetDateTime::now_utc().unix_timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == v1
}

fn fast_retries(max_attempts: i32, pause_after: i64) -> WebhookSettings {
    WebhookSettings {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_attempts,
        pause_after,
        ..WebhookSettings::default()
    }
}

/// Polls `check` every 50 ms for up to 30 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn retried_signed_and_deduplicated(backend: Backend) {
    let Some(s) = start_hooks(backend, "127.0.0.1/32", fast_retries(8, 50)).await else { return };
    let (base, inbox) = receiver(3).await;
    let (status, hook) =
        s.post("/v1/organizations/webhooks", None, hook_body("local", &format!("{base}/ok"))).await;
    assert_eq!(status, StatusCode::OK, "{hook}");
    let hook_id = hook["webhook_id"].as_str().unwrap().to_string();

    let ns = s.namespace("hooked").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    let objects = format!("/v1/buckets/{bucket}/objects");
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, object) = s.post(&objects, Some(&ns), json!({"t": format!("{i}")})).await;
        assert_eq!(status, StatusCode::OK, "{object}");
        ids.push(object["object_id"].as_str().unwrap().to_string());
    }
    let first = format!("{objects}/{}", ids[0]);
    let (status, _) = s.call(Method::PATCH, &first, Some(&ns), Some(json!({"t": "x"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.call(Method::DELETE, &first, Some(&ns), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Every event arrives, signed, despite the receiver's first three failures.
    let received = eventually("five accepted events", async || {
        let inbox = inbox.lock().unwrap();
        let accepted: HashSet<&str> = inbox
            .requests
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.event_id.as_str())
            .collect();
        (accepted.len() == 5).then(|| inbox.requests.clone())
    })
    .await;
    assert!(received.len() >= 8, "three failures were retried: {}", received.len());
    assert!(received.iter().all(|r| r.signed), "every request carries a valid signature");
    let mut by_event: HashMap<&str, Vec<&Received>> = HashMap::new();
    for r in &received {
        assert_eq!(r.body["event_type"], json!(r.event_type_header));
        assert!(r.delivery_header.starts_with("dlv_"));
        assert!(r.event_id.starts_with("evt_"));
        by_event.entry(r.event_id.as_str()).or_default().push(r);
    }
    let types: Vec<&str> =
        by_event.values().map(|rs| rs[0].body["event_type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "object.created").count(), 3);
    assert_eq!(types.iter().filter(|t| **t == "object.updated").count(), 1);
    assert_eq!(types.iter().filter(|t| **t == "object.deleted").count(), 1);
    for rs in by_event.values() {
        // A retry repeats the same delivery, so the same event id and delivery id.
        assert!(rs.iter().all(|r| r.delivery_header == rs[0].delivery_header));
        assert_eq!(rs[0].body["namespace_id"], json!(ns));
        assert_eq!(rs[0].body["subject"]["type"], "object");
    }

    // The delivery log: newest first, all succeeded, failures recorded per attempt.
    let path = format!("/v1/organizations/webhooks/{hook_id}/deliveries");
    let log = eventually("every delivery settled", async || {
        let (_, log) = s.get(&path, None).await;
        let all = log["results"].as_array()?.clone();
        (all.len() == 5 && all.iter().all(|d| d["status"] == "succeeded")).then_some(log)
    })
    .await;
    let results = log["results"].as_array().unwrap();
    assert_eq!(log["has_more"], false);
    let retried: Vec<&Value> =
        results.iter().filter(|d| d["attempts"].as_i64() > Some(1)).collect();
    assert!(!retried.is_empty(), "{log}");
    let attempts = retried[0]["attempt_log"].as_array().unwrap();
    assert_eq!(attempts[0]["status_code"], 500);
    assert!(attempts[0]["duration_ms"].is_u64());
    assert_eq!(attempts.last().unwrap()["status_code"], 200);
    assert!(!log.to_string().contains(SECRET));
    let (_, page) = s.get(&format!("{path}?limit=2"), None).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let (_, next) = s
        .get(&format!("{path}?limit=2&cursor={}", page["next_cursor"].as_str().unwrap()), None)
        .await;
    assert_eq!(next["results"][0]["delivery_id"], results[2]["delivery_id"], "{next}");

    // A redelivery sends the same event again, under a new delivery id.
    let original = &results[0];
    let redeliver = format!("{path}/{}/redeliver", original["delivery_id"].as_str().unwrap());
    let (status, fresh) = s.post(&redeliver, None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    assert_eq!(fresh["event_id"], original["event_id"]);
    assert_ne!(fresh["delivery_id"], original["delivery_id"]);
    assert_eq!(fresh["redelivery"], true);
    let event_id = original["event_id"].as_str().unwrap().to_string();
    eventually("the redelivery", async || {
        let inbox = inbox.lock().unwrap();
        let again = inbox
            .requests
            .iter()
            .filter(|r| r.event_id == event_id && r.delivery_header == fresh["delivery_id"])
            .count();
        (again == 1).then_some(())
    })
    .await;
    let (status, body) = s.post(&format!("{path}/dlv_unknown/redeliver"), None, json!({})).await;
    assert_error(status, &body, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_signed_and_deduplicated_sqlite() {
    retried_signed_and_deduplicated(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_signed_and_deduplicated_postgres() {
    retried_signed_and_deduplicated(Backend::Postgres).await;
}

async fn persistent_failure_pauses(backend: Backend) {
    let Some(s) = start_hooks(backend, "127.0.0.1/32", fast_retries(10, 3)).await else { return };
    let (base, inbox) = receiver(0).await;
    let (_, hook) = s
        .post("/v1/organizations/webhooks", None, hook_body("down", &format!("{base}/down")))
        .await;
    let path = format!("/v1/organizations/webhooks/{}", hook["webhook_id"].as_str().unwrap());

    let ns = s.namespace("failing").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    let objects = format!("/v1/buckets/{bucket}/objects");
    s.post(&objects, Some(&ns), json!({"t": "a"})).await;

    let paused = eventually("the webhook paused", async || {
        let (_, got) = s.get(&path, None).await;
        (got["is_active"] == false).then_some(got)
    })
    .await;
    let health = &paused["delivery_health"];
    assert_eq!(health["consecutive_failures"], 3, "{paused}");
    assert!(health["paused_at"].is_string());
    assert!(health["first_failure_at"].is_string() && health["last_failure_at"].is_string());
    assert_eq!(health["last_failure_cause"], "the receiver answered HTTP 500");
    assert!(health["paused_reason"].as_str().unwrap().contains("3 delivery attempts failed"));

    // A paused webhook gets no further events; its pending retry is skipped.
    let (_, log) = eventually("the pending retry skipped", async || {
        let (_, log) = s.get(&format!("{path}/deliveries"), None).await;
        (log["results"][0]["status"] == "skipped").then_some(((), log))
    })
    .await;
    assert_eq!(log["results"].as_array().unwrap().len(), 1);
    s.post(&objects, Some(&ns), json!({"t": "b"})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, log) = s.get(&format!("{path}/deliveries"), None).await;
    assert_eq!(log["results"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(inbox.lock().unwrap().requests.len(), 3);

    // Resuming clears the health record.
    let mut resume = hook_body("down", &format!("{base}/down"));
    resume["channels"][0]["configs"]["signing_secret"] = json!("redacted");
    let (status, resumed) = s.call(Method::PUT, &path, None, Some(resume)).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["is_active"], true);
    assert_eq!(resumed["delivery_health"]["consecutive_failures"], 0);
    assert!(resumed["delivery_health"]["paused_reason"].is_null());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failure_pauses_sqlite() {
    persistent_failure_pauses(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failure_pauses_postgres() {
    persistent_failure_pauses(Backend::Postgres).await;
}

/// A delivery that uses up its attempts pauses the webhook too; a per-batch callback is
/// delivered, unsigned, through the same queue.
async fn exhausted_delivery_and_callback(backend: Backend) {
    let Some(s) = start_hooks(backend, "127.0.0.1/32", fast_retries(2, 50)).await else { return };
    let (base, inbox) = receiver(0).await;
    let (_, hook) = s
        .post("/v1/organizations/webhooks", None, hook_body("gives-up", &format!("{base}/down")))
        .await;
    let path = format!("/v1/organizations/webhooks/{}", hook["webhook_id"].as_str().unwrap());
    let ns = s.namespace("exhaust").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), json!({"t": "a"})).await;
    let paused = eventually("the webhook paused", async || {
        let (_, got) = s.get(&path, None).await;
        (got["is_active"] == false).then_some(got)
    })
    .await;
    let reason = paused["delivery_health"]["paused_reason"].as_str().unwrap();
    assert!(reason.contains("every attempt"), "{paused}");
    let (_, log) = s.get(&format!("{path}/deliveries"), None).await;
    assert_eq!(log["results"][0]["status"], "failed", "{log}");
    assert_eq!(log["results"][0]["attempts"], 2);

    // A callback is queued through a second state over the same store, as another process of
    // the deployment would; the server's workers send it.
    let state = sluice::AppState::open(&s.config, &s.base).await.unwrap();
    let org = state.store.list_organizations().await.unwrap().remove(0);
    let payload = json!({"batch_id": "btch_1", "status": "COMPLETED"});
    sluice::service::webhooks::callback(&state, &org.id, &format!("{base}/ok"), payload)
        .await
        .unwrap();
    let refused =
        sluice::service::webhooks::callback(&state, &org.id, "http://10.0.0.1/x", json!({})).await;
    assert!(refused.is_err(), "a literal private address is refused at once");
    eventually("the callback", async || {
        let inbox = inbox.lock().unwrap();
        inbox.requests.iter().find(|r| r.path == "ok").map(|r| {
            assert_eq!(r.body["batch_id"], "btch_1");
            assert!(!r.signed);
        })
    })
    .await;
    state.store.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_delivery_and_callback_sqlite() {
    exhausted_delivery_and_callback(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_delivery_and_callback_postgres() {
    exhausted_delivery_and_callback(Backend::Postgres).await;
}
