//! Syncs from feeds served by the test: an RSS feed behind a header credential, whose entries
//! and enclosures become objects with mapped fields and follow the feed's changes, and a JSON
//! API answering items to a POST.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::{get, post};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestServer, start_allowing};
use crate::syncs::{finished_run, objects};

const TOKEN: &str = "Bearer feed-t0ken-kept-secret";
const EPISODE: &[u8] = b"ID3 not really an mp3, but bytes all the same";

/// What the feed server serves and saw.
#[derive(Default)]
struct Served {
    feed: String,
    api: String,
    /// Authorization headers the enclosure route received.
    enclosure_auth: Vec<String>,
    api_bodies: Vec<Value>,
}

type Shared = Arc<Mutex<Served>>;

/// Serves `/feed.xml` (only with the token), `/media/episode-2.mp3` and `/api/items` (POST).
async fn feed_server(served: Shared) -> String {
    let feed = {
        let served = served.clone();
        move |headers: HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            if auth != Some(TOKEN) {
                return (AxumStatus::UNAUTHORIZED, String::new());
            }
            (AxumStatus::OK, served.lock().unwrap().feed.clone())
        }
    };
    let episode = {
        let served = served.clone();
        move |headers: HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            served.lock().unwrap().enclosure_auth.push(auth.unwrap_or_default().to_string());
            EPISODE
        }
    };
    let api = {
        let served = served.clone();
        move |body: axum::Json<Value>| async move {
            let mut served = served.lock().unwrap();
            served.api_bodies.push(body.0);
            served.api.clone()
        }
    };
    let app = axum::Router::new()
        .route("/feed.xml", get(feed))
        .route("/media/episode-2.mp3", get(episode))
        .route("/api/items", post(api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{address}")
}

fn rss(base: &str, entries: &[(&str, &str, &str)], with_episode: bool) -> String {
    let mut items: String = entries
        .iter()
        .map(|(guid, title, author)| {
            format!(
                "<item><guid>{guid}</guid><title>{title}</title><dc:creator>{author}</dc:creator>\
                 <link>https://news.example/{guid}</link>\
                 <pubDate>Wed, 02 Dec 2026 09:00:00 GMT</pubDate></item>"
            )
        })
        .collect();
    if with_episode {
        items.push_str(&format!(
            "<item><guid>ep-2</guid><title>Episode two</title>\
             <enclosure url=\"{base}/media/episode-2.mp3\" type=\"audio/mpeg\" length=\"{}\"/>\
             </item>",
            EPISODE.len()
        ));
    }
    format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><channel><title>News</title>{items}\
         </channel></rss>"
    )
}

/// The bucket's objects by the id of the item they came from.
async fn by_item(s: &TestServer, ns: &str, bucket: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = objects(s, ns, bucket)
        .await
        .into_iter()
        .map(|o| (o["blobs"][0]["properties"]["source_key"].as_str().unwrap().to_string(), o))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The bytes of an object's first blob, through its presigned URL.
async fn blob_bytes(s: &TestServer, ns: &str, bucket: &str, object: &Value) -> Vec<u8> {
    let id = object["object_id"].as_str().unwrap();
    let path = format!("/v1/buckets/{bucket}/objects/{id}?return_presigned_urls=true");
    let (status, object) = s.get(&path, Some(ns)).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    let url = object["blobs"][0]["presigned_url"].as_str().unwrap();
    let response = reqwest::get(url).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.bytes().await.unwrap().to_vec()
}

async fn rss_sync_follows_the_feed(backend: Backend) {
    let Some(s) = start_allowing(backend, "127.0.0.0/8").await else { return };
    let served: Shared = Arc::default();
    let base = feed_server(served.clone()).await;
    served.lock().unwrap().feed =
        rss(&base, &[("a-1", "Fish &amp; chips", "Ann"), ("b-2", "Tea", "Bo")], true);

    let connection = json!({"name": "news", "provider_type": "rss", "provider_config": {
        "credentials": {"type": "http_headers", "headers": {"Authorization": TOKEN}}}});
    let (status, connection) = s.post("/v1/organizations/connections", None, connection).await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    assert!(!connection.to_string().contains("t0ken"), "{connection}");

    let ns = s.namespace("feeds").await;
    let schema = json!({"properties": {"body": {"type": "text"}, "title": {"type": "string"},
                                       "author": {"type": "string"}}});
    let bucket = s.bucket(&ns, "news", schema).await;
    let body = json!({
        "connection_id": connection["connection_id"],
        "source_path": format!("{base}/feed.xml"),
        "polling_interval_seconds": 3600,
        "schema_mapping": {"mappings": {
            "body": {"target_type": "blob", "source": {"type": "file"}, "blob_type": "auto"},
            "title": {"target_type": "field", "source": {"type": "rss_field", "field": "title"}},
            "author": {"target_type": "field", "source": {"type": "rss_field", "field": "author"},
                       "transform": "uppercase"},
        }},
    });
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    let (status, created) = s.post(&syncs, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["source_type"], "rss");
    let sync = format!("{syncs}/{}", created["sync_config_id"].as_str().unwrap());

    let run = finished_run(&s, &ns, &sync, 1).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["files_synced"], 3, "{run}");
    let objects = by_item(&s, &ns, &bucket).await;
    let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a-1", "b-2", "ep-2"]);
    let (_, first) = &objects[0];
    assert_eq!(first["title"], "Fish & chips");
    assert_eq!(first["author"], "ANN");
    assert_eq!(first["blobs"][0]["details"]["mime_type"], "application/json");
    let document: Value =
        serde_json::from_slice(&blob_bytes(&s, &ns, &bucket, first).await).unwrap();
    assert_eq!(document["link"], "https://news.example/a-1");
    assert_eq!(document["published"], "2026-12-02T09:00:00.000000Z");
    // The enclosure's bytes are the episode's file, fetched without the feed's credential.
    let (_, episode) = &objects[2];
    assert_eq!(episode["title"], "Episode two");
    assert_eq!(episode["blobs"][0]["details"]["mime_type"], "audio/mpeg");
    assert_eq!(episode["blobs"][0]["details"]["filename"], "episode-2.mp3");
    assert_eq!(blob_bytes(&s, &ns, &bucket, episode).await, EPISODE);
    assert_eq!(served.lock().unwrap().enclosure_auth, [""], "the token stays on the feed");

    // The feed changes: one title is edited, one entry is new, the episode is gone.
    served.lock().unwrap().feed = rss(
        &base,
        &[("a-1", "Fish, chips and peas", "Ann"), ("b-2", "Tea", "Bo"), ("c-3", "Scones", "Cy")],
        false,
    );
    let (status, _) = s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let run = finished_run(&s, &ns, &sync, 2).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["files_synced"], 2, "the edited and the new entry: {run}");
    let objects = by_item(&s, &ns, &bucket).await;
    let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a-1", "b-2", "c-3"]);
    assert_eq!(objects[0].1["title"], "Fish, chips and peas");
    assert_eq!(objects[2].1["author"], "CY");
    assert_eq!(served.lock().unwrap().enclosure_auth.len(), 1, "the episode is not fetched again");

    // Nothing changed: nothing is written.
    let (status, _) = s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let run = finished_run(&s, &ns, &sync, 3).await;
    assert_eq!(run["files_synced"], 0, "{run}");

    // Without the credential the feed refuses: the run fails and says why.
    let id = connection["connection_id"].as_str().unwrap();
    let cleared =
        json!({"provider_config": {"credentials": {"type": "http_headers", "headers": {}}}});
    let path = format!("/v1/organizations/connections/{id}");
    let (status, _) = s.call(Method::PATCH, &path, None, Some(cleared)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let run = finished_run(&s, &ns, &sync, 4).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("401"), "{run}");
    assert_eq!(by_item(&s, &ns, &bucket).await.len(), 3, "a failed read deletes nothing");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_sync_follows_the_feed_sqlite() {
    rss_sync_follows_the_feed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_sync_follows_the_feed_postgres() {
    rss_sync_follows_the_feed(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_sync_takes_the_items_of_a_post() {
    let s = start_allowing(Backend::Sqlite, "127.0.0.0/8").await.unwrap();
    let served: Shared = Arc::default();
    let base = feed_server(served.clone()).await;
    served.lock().unwrap().api = json!({"data": {"items": [
        {"uuid": "u1", "name": "First", "updated_at": 1764806400, "meta": {"kind": "note"}},
        {"uuid": "u2", "name": "Second", "updated_at": "2026-12-04T10:00:00Z"},
    ]}})
    .to_string();

    let connection = json!({"name": "api", "provider_type": "http_api", "provider_config": {
        "http_method": "POST", "request_body": {"query": "everything"},
        "items_path": "data.items", "item_id_field": "uuid", "item_modified_field": "updated_at"}});
    let (status, connection) = s.post("/v1/organizations/connections", None, connection).await;
    assert_eq!(status, StatusCode::OK, "{connection}");

    let ns = s.namespace("apis").await;
    let schema = json!({"properties": {"body": {"type": "text"}, "name": {"type": "string"},
                                       "kind": {"type": "string"}}});
    let bucket = s.bucket(&ns, "items", schema).await;
    let body = json!({
        "connection_id": connection["connection_id"],
        "source_path": format!("{base}/api/items"),
        "sync_mode": "initial_only",
        "schema_mapping": {"mappings": {
            "name": {"target_type": "field", "source": {"type": "column", "name": "name"}},
            "kind": {"target_type": "field", "source": {"type": "column", "name": "meta.kind"}},
        }},
    });
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    let (status, created) = s.post(&syncs, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let sync = format!("{syncs}/{}", created["sync_config_id"].as_str().unwrap());
    let run = finished_run(&s, &ns, &sync, 1).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["files_synced"], 2, "{run}");
    assert_eq!(served.lock().unwrap().api_bodies, [json!({"query": "everything"})]);
    // The run's end is an event of the feed (and of webhooks that want it).
    let (status, events) = s.get("/v1/events?event_type=sync.completed", None).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let events = events["results"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["files_synced"], 2, "{events:?}");
    assert_eq!(events[0]["payload"]["sync_config_id"], created["sync_config_id"]);

    let objects = by_item(&s, &ns, &bucket).await;
    assert_eq!(objects.len(), 2);
    let (key, first) = &objects[0];
    assert_eq!(key, "u1");
    assert_eq!(first["name"], "First");
    assert_eq!(first["kind"], "note");
    assert!(first.get("kind").is_some());
    assert!(objects[1].1.get("kind").is_none(), "an item without the field leaves it out");
    assert_eq!(first["blobs"][0]["details"]["filename"], "u1.json");
    let document: Value =
        serde_json::from_slice(&blob_bytes(&s, &ns, &bucket, first).await).unwrap();
    assert_eq!(document["meta"]["kind"], "note");
    s.stop().await;
}
