//! The change feed: events recorded by object changes, filters, cursors and tenancy.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{TestServer, assert_error};

/// Reads the whole feed behind `query` (without a cursor), page by page.
async fn whole_feed(s: &TestServer, query: &str, ns: Option<&str>) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?{query}&cursor={c}"),
            None => format!("/v1/events?{query}"),
        };
        let (status, page) = s.get(&path, ns).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        events.extend(page["results"].as_array().unwrap().iter().cloned());
        cursor = page["next_cursor"].as_str().map(String::from);
        if page["has_more"] == false {
            return events;
        }
    }
}

/// Waits until the feed shows `count` events (PostgreSQL shows an event after a second).
async fn settled_feed(s: &TestServer, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let events = whole_feed(s, "limit=1000", None).await;
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the feed never showed {count} events");
}

async fn feed_filters_and_cursors(s: &TestServer) {
    let a = s.namespace("feed-a").await;
    let b = s.namespace("feed-b").await;
    let schema = json!({"properties": {"t": {"type": "string"}}});
    let bucket_a = s.bucket(&a, "b", schema.clone()).await;
    let bucket_b = s.bucket(&b, "b", schema).await;

    let objects_a = format!("/v1/buckets/{bucket_a}/objects");
    let (_, object) = s.post(&objects_a, Some(&a), json!({"t": "one"})).await;
    let id = object["object_id"].as_str().unwrap().to_string();
    let one = format!("{objects_a}/{id}");
    let (status, _) = s.call(Method::PUT, &one, Some(&a), Some(json!({"t": "two"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.call(Method::DELETE, &one, Some(&a), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let batch = json!({"objects": [{"t": "x"}, {"t": "y"}]});
    let (status, _) = s.post(&format!("{objects_a}/batch"), Some(&a), batch).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        s.post(&format!("/v1/buckets/{bucket_b}/objects"), Some(&b), json!({"t": "b"})).await;
    assert_eq!(status, StatusCode::OK);

    // The whole organization, in order.
    let events = settled_feed(s, 5).await;
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "object.created",
            "object.updated",
            "object.deleted",
            "objects.created.batch",
            "object.created"
        ]
    );
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let created = &events[0];
    assert_eq!(created["resource_type"], "object");
    assert_eq!(created["operation"], "insert");
    assert_eq!(created["namespace_id"], json!(a));
    assert_eq!(created["payload"]["object_id"], json!(id));
    assert!(created["cursor"].is_string() && created["created_at"].is_string());
    assert!(created.get("trace_id").is_some());
    assert_eq!(events[1]["operation"], "update");
    assert_eq!(events[2]["operation"], "delete");
    assert_eq!(events[3]["resource_type"], "objects");
    assert_eq!(events[3]["payload"]["object_ids"].as_array().unwrap().len(), 2);

    // Narrowed by namespace (name or id, header or parameter) and by type.
    assert_eq!(whole_feed(s, "namespace_id=feed-a", None).await.len(), 4);
    assert_eq!(whole_feed(s, &format!("namespace_id={b}"), None).await.len(), 1);
    assert_eq!(whole_feed(s, "limit=10", Some("feed-b")).await.len(), 1);
    assert_eq!(whole_feed(s, "namespace_id=feed-b", Some(&b)).await.len(), 1);
    let (status, body) = s.get("/v1/events?namespace_id=feed-a", Some("feed-b")).await;
    assert_error(status, &body, 400);
    let (status, body) = s.get("/v1/events?namespace_id=nope", None).await;
    assert_error(status, &body, 404);
    let created = whole_feed(s, "event_type=object.created", None).await;
    assert_eq!(created.len(), 2);

    // Pages of one, then the cursor of the last page waits for more.
    let paged = whole_feed(s, "limit=1", None).await;
    assert_eq!(paged.len(), 5);
    let last = paged.last().unwrap()["cursor"].as_str().unwrap().to_string();
    let (_, tail) = s.get(&format!("/v1/events?after={last}"), None).await;
    assert_eq!(tail["results"], json!([]));
    assert_eq!(tail["has_more"], false);
    assert_eq!(tail["next_cursor"], json!(last), "an empty page keeps the cursor");

    // A cursor belongs to its filters.
    let (_, page) = s.get("/v1/events?page_size=1&namespace_id=feed-a", None).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, body) = s.get(&format!("/v1/events?cursor={cursor}"), None).await;
    assert_error(status, &body, 400);
    let (status, _) =
        s.get(&format!("/v1/events?next_cursor={cursor}&namespace_id=feed-a"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.get("/v1/events?cursor=garbage", None).await;
    assert_error(status, &body, 400);
    let (status, body) = s.get("/v1/events?limit=0", None).await;
    assert_error(status, &body, 422);

    // Another organization sees nothing.
    let other = s.other_org_key().await;
    let (status, page) = s.call_as(&other, Method::GET, "/v1/events", None, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["results"], json!([]));
    assert!(page["next_cursor"].is_null());
}
both_backends!(feed_filters_and_cursors);

/// The sweeper deletes events past their retention and schedules its next run.
async fn sweeper_forgets_old_events(s: &TestServer) {
    let ns = s.namespace("swept").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), json!({"t": "old"})).await;
    settled_feed(s, 1).await;

    let mut config = s.config.clone();
    config.webhooks.retention = Duration::ZERO;
    let state = sluice::AppState::open(&config, &s.base).await.unwrap();
    let job = sluice::store::ClaimedJob {
        id: "job_sweep".into(),
        kind: "events.sweep".into(),
        org_id: String::new(),
        payload: json!({}),
        attempts: 1,
        max_attempts: 5,
    };
    sluice::service::events::run_sweep(&state, &job).await.unwrap();
    state.store.close().await;

    let (_, feed) = s.get("/v1/events", None).await;
    assert_eq!(feed["results"], json!([]), "{feed}");
}
both_backends!(sweeper_forgets_old_events);

/// A create answered by an earlier object (a taken idempotency key) records no second event;
/// the one event carries the stored record.
async fn replayed_create_records_one_event(s: &TestServer) {
    let ns = s.namespace("replayed").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let body = json!({"t": "once", "idempotency_key": "k-1"});
    let (_, first) = s.post(&path, Some(&ns), body.clone()).await;
    let (_, again) = s.post(&path, Some(&ns), body).await;
    assert_eq!(first["object_id"], again["object_id"]);
    // A later change: once its event shows, any event of the replay would show too.
    s.post(&path, Some(&ns), json!({"t": "later"})).await;

    let events = settled_feed(s, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["payload"]["t"], "later");
    assert_eq!(events[0]["event_type"], "object.created");
    assert_eq!(events[0]["payload"]["object_id"], first["object_id"]);
    assert_eq!(events[0]["payload"]["t"], "once");
    assert_eq!(events[0]["payload"]["bucket_id"], json!(bucket));
}
both_backends!(replayed_create_records_one_event);
