//! Feeds as sync sources: an RSS or Atom feed (`rss`), or a JSON API that answers a list of
//! items (`http_api`). Each item becomes one file of the sync: the item itself as a JSON
//! document, or, for a feed entry with an enclosure (a podcast episode, an attached image), the
//! enclosure's bytes. The item's fields stay at hand for field mappings.
//!
//! A feed is one document, read whole under [`MAX_FEED_BYTES`] and cut at [`MAX_ITEMS`] items;
//! every request goes through the [`Fetcher`], so a feed or an enclosure on a private address
//! is refused unless the operator allows its network.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::blob::{BlobStream, ListedBlob};
use crate::fetch::{FetchError, Fetcher, Request};
use crate::model::{format_time, hex, parse_time};

/// The largest feed or API answer a run reads.
pub const MAX_FEED_BYTES: u64 = 32 * 1024 * 1024;
/// The most items a run takes from one feed; later ones are left out.
pub const MAX_ITEMS: usize = 10_000;

/// One item of a feed: its listing, its fields, and where its bytes are.
#[derive(Debug, Clone)]
pub struct Item {
    pub listed: ListedBlob,
    /// The item as a JSON object: the API's item as it came, or a feed entry's `title`,
    /// `link`, `author`, `categories`, `summary`, `published` and `id`.
    pub fields: Map<String, Value>,
    /// The item's JSON, which is the file unless the item has an enclosure.
    pub body: Bytes,
    /// The file's name, from the item's id or its enclosure's URL.
    pub filename: String,
    /// The enclosure to download instead of the item's JSON, with its announced type.
    pub enclosure: Option<(String, Option<String>)>,
}

/// A feed read at the start of a run.
#[derive(Debug, Default)]
pub struct Feed {
    /// The items in feed order, each id once (the first item of an id is kept).
    pub items: Vec<Item>,
    index: HashMap<String, usize>,
    /// Headers that every request of this feed sends (credentials, the user agent).
    headers: Vec<(String, String)>,
}

impl Feed {
    /// The item listed under `key`.
    pub fn item(&self, key: &str) -> Option<&Item> {
        self.index.get(key).map(|&i| &self.items[i])
    }

    /// The bytes of the item under `key`, and their length when known.
    ///
    /// # Errors
    ///
    /// A message fit for a run's errors: an unknown key, or an enclosure that could not be
    /// downloaded.
    pub async fn open_read(
        &self,
        fetcher: &Fetcher,
        key: &str,
    ) -> Result<(Option<u64>, BlobStream), String> {
        let item = self.item(key).ok_or_else(|| format!("the feed holds no item {key:?}"))?;
        let Some((url, _)) = &item.enclosure else {
            let body = item.body.clone();
            let size = body.len() as u64;
            let stream = futures::stream::once(async move { Ok(body) });
            return Ok((Some(size), Box::pin(stream)));
        };
        // Enclosures are only ever fetched with the feed's user agent, never its credentials:
        // they usually live on another host.
        let agent: Vec<(String, String)> =
            self.headers.iter().filter(|(n, _)| n == "user-agent").cloned().collect();
        let request = Request { headers: &agent, ..Request::get(url) };
        let fetched = fetcher.send(request).await.map_err(|e| enclosure_error(&e))?;
        Ok((fetched.content_length, fetched.stream))
    }
}

fn enclosure_error(error: &FetchError) -> String {
    format!("downloading the enclosure failed: {error}")
}

/// Reads the feed or API at `url` with the connection's settings and credentials.
///
/// # Errors
///
/// A message fit for the caller: an address that is refused, an answer that is not a 2xx, too
/// large, or not the feed or JSON the connection expects.
pub async fn read(
    fetcher: &Fetcher,
    provider: &str,
    config: &Map<String, Value>,
    credentials: &Map<String, Value>,
    url: &str,
) -> Result<Feed, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(given)) = credentials.get("headers") {
        for (name, value) in given {
            if let Some(value) = value.as_str() {
                headers.push((name.to_ascii_lowercase(), value.to_string()));
            }
        }
    }
    if let Some(agent) = config.get("user_agent").and_then(Value::as_str) {
        headers.retain(|(n, _)| n != "user-agent");
        headers.push(("user-agent".into(), agent.to_string()));
    }
    let seconds = config.get("request_timeout").and_then(Value::as_u64).unwrap_or(30);
    let timeout = Duration::from_secs(seconds.clamp(5, 120));

    let post = provider == "http_api" && config.get("http_method") == Some(&json!("POST"));
    let mut sent = headers.clone();
    let body = if post {
        sent.push(("content-type".into(), "application/json".into()));
        let body = config.get("request_body").cloned().unwrap_or_else(|| json!({}));
        Some(Bytes::from(body.to_string()))
    } else {
        None
    };
    let request = Request {
        url,
        method: if post { reqwest::Method::POST } else { reqwest::Method::GET },
        headers: &sent,
        body,
        timeout: Some(timeout),
        max_bytes: Some(MAX_FEED_BYTES),
    };
    // The query string may carry a token: messages, which reach run records and the log, show
    // the URL without it.
    let shown = url.split(['?', '#']).next().unwrap_or_default();
    let fetched =
        fetcher.send(request).await.map_err(|e| format!("reading {shown} failed: {e}"))?;
    let mut stream = fetched.stream;
    let mut document = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| format!("reading {shown} failed: {}", FetchError::from_body_error(&e)))?;
        document.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&document);
    let items = match provider {
        "rss" => parse_feed(&text)?,
        _ => parse_items(&text, config)?,
    };
    let mut index = HashMap::new();
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if !index.contains_key(&item.listed.key) {
            index.insert(item.listed.key.clone(), kept.len());
            kept.push(item);
        }
    }
    Ok(Feed { items: kept, index, headers })
}

/// Items of a JSON answer: the array at `items_path` (dot-separated; empty for a top-level
/// array), or each line of a JSON Lines answer.
fn parse_items(text: &str, config: &Map<String, Value>) -> Result<Vec<Item>, String> {
    let setting = |key: &str| config.get(key).and_then(Value::as_str).unwrap_or_default();
    let list: Vec<Value> = if setting("response_content_type") == "jsonl" {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line)
                    .map_err(|e| format!("line {} of the answer is not JSON: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?
    } else {
        let answer: Value =
            serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
        let path = setting("items_path");
        let found = lookup(&answer, path)
            .ok_or_else(|| format!("the answer has nothing at items_path {path:?}"))?;
        found
            .as_array()
            .cloned()
            .ok_or_else(|| format!("items_path {path:?} does not lead to a list"))?
    };
    let id_field = match setting("item_id_field") {
        "" => "id",
        field => field,
    };
    let modified_field = setting("item_modified_field");
    let mut items = Vec::new();
    for value in list.into_iter().take(MAX_ITEMS) {
        let Value::Object(fields) = value else { continue };
        let item = Value::Object(fields.clone());
        let id = match lookup(&item, id_field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            // Without an id the item is known by its content: a change reads as a new item.
            _ => format!("sha256-{}", &hex(&Sha256::digest(item.to_string().as_bytes()))[..32]),
        };
        let modified = lookup(&item, modified_field).and_then(timestamp).unwrap_or_default();
        items.push(json_item(id, fields, modified));
    }
    Ok(items)
}

/// The value at a dot-separated `path` of `value`; the whole value for an empty path.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |at, part| match at {
        Value::Object(map) => map.get(part),
        Value::Array(list) => part.parse::<usize>().ok().and_then(|i| list.get(i)),
        _ => None,
    })
}

/// An ISO 8601 string, or Unix seconds or milliseconds, as sluice writes times.
fn timestamp(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => time_text(text),
        Value::Number(n) => n.as_f64().and_then(from_unix),
        _ => None,
    }
}

/// A time written as RFC 3339, RFC 2822 (as RSS dates are) or Unix seconds or milliseconds.
fn time_text(text: &str) -> Option<String> {
    let parsed = parse_time(text).or_else(|| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822).ok()
    });
    parsed.map(format_time).or_else(|| text.parse::<f64>().ok().and_then(from_unix))
}

fn from_unix(number: f64) -> Option<String> {
    // Numbers past the year 33658 in seconds are taken as milliseconds.
    let seconds = if number > 1e12 { number / 1000.0 } else { number };
    let nanos = (seconds * 1e9) as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok().map(format_time)
}

fn json_item(id: String, fields: Map<String, Value>, modified: String) -> Item {
    let body = Bytes::from(serde_json::to_vec_pretty(&fields).unwrap_or_default());
    Item {
        listed: ListedBlob {
            etag: Some(hex(&Sha256::digest(&body))[..32].to_string()),
            size: body.len() as u64,
            last_modified: modified,
            key: id.clone(),
        },
        filename: format!("{}.json", file_stem(&id)),
        fields,
        body,
        enclosure: None,
    }
}

/// A name for a file from an id that may be a URL or a path.
fn file_stem(id: &str) -> String {
    let tail = id.trim_end_matches('/').rsplit('/').next().unwrap_or(id);
    let tail = tail.split(['?', '#']).next().unwrap_or(tail);
    if tail.is_empty() { "item".to_string() } else { tail.to_string() }
}

/// What a feed entry holds while it is being read.
#[derive(Debug, Default)]
struct Entry {
    id: Option<String>,
    title: Option<String>,
    link: Option<String>,
    author: Option<String>,
    summary: Option<String>,
    published: Option<String>,
    updated: Option<String>,
    categories: Vec<String>,
    enclosure: Option<(String, Option<String>, Option<u64>)>,
}

/// Entries of an RSS 2.0, RSS 1.0 or Atom feed, in feed order.
fn parse_feed(text: &str) -> Result<Vec<Item>, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut items = Vec::new();
    let mut entry: Option<Entry> = None;
    // The element whose text is being read inside an entry, and the text so far.
    let mut field: Option<String> = None;
    let mut buffer = String::new();
    let mut saw_feed = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            format!("the feed is not well-formed XML at byte {}: {e}", reader.buffer_position())
        })?;
        match event {
            Event::Start(start) => {
                let name = local(&start);
                saw_feed |= matches!(name.as_str(), "rss" | "feed" | "RDF" | "channel");
                match (&mut entry, name.as_str()) {
                    (None, "item" | "entry") => entry = Some(Entry::default()),
                    (Some(e), _) => {
                        attributes_of(e, &name, &start);
                        field = Some(name);
                        buffer.clear();
                    }
                    _ => {}
                }
            }
            Event::Empty(empty) => {
                if let Some(e) = &mut entry {
                    attributes_of(e, &local(&empty), &empty);
                }
            }
            Event::Text(t) if field.is_some() => {
                buffer.push_str(&t.xml10_content().map_err(|e| e.to_string())?);
            }
            Event::CData(t) if field.is_some() => {
                buffer.push_str(&t.decode().map_err(|e| e.to_string())?);
            }
            Event::GeneralRef(r) if field.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    buffer.push(c);
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    let resolved = quick_xml::escape::resolve_predefined_entity(&name);
                    buffer.push_str(resolved.unwrap_or_default());
                }
            }
            Event::End(end) => {
                let name = String::from_utf8_lossy(end.local_name().as_ref()).into_owned();
                if matches!(name.as_str(), "item" | "entry") && field.is_none() {
                    if let Some(done) = entry.take()
                        && items.len() < MAX_ITEMS
                    {
                        items.push(feed_item(done));
                    }
                } else if let (Some(e), Some(open)) = (&mut entry, &field)
                    && *open == name
                {
                    text_of(e, &name, buffer.trim());
                    field = None;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_feed {
        return Err("the document is not an RSS or Atom feed".into());
    }
    Ok(items)
}

fn local(start: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(start.local_name().as_ref()).into_owned()
}

fn attribute(start: &BytesStart<'_>, name: &str) -> Option<String> {
    let found = start.try_get_attribute(name).ok().flatten()?;
    let value = found.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok()?;
    Some(value.into_owned())
}

/// Reads what an entry's element carries in its attributes: Atom links and categories, RSS
/// enclosures.
fn attributes_of(entry: &mut Entry, name: &str, start: &BytesStart<'_>) {
    match name {
        "link" => {
            let href = attribute(start, "href");
            match attribute(start, "rel").as_deref() {
                Some("enclosure") => {
                    if let Some(url) = href {
                        let length = attribute(start, "length").and_then(|l| l.parse().ok());
                        entry.enclosure = Some((url, attribute(start, "type"), length));
                    }
                }
                None | Some("alternate") if entry.link.is_none() => entry.link = href,
                _ => {}
            }
        }
        "enclosure" => {
            if let Some(url) = attribute(start, "url") {
                let length = attribute(start, "length").and_then(|l| l.parse().ok());
                entry.enclosure = Some((url, attribute(start, "type"), length));
            }
        }
        "category" => {
            if let Some(term) = attribute(start, "term") {
                entry.categories.push(term);
            }
        }
        _ => {}
    }
}

/// Keeps the text of an entry's element.
fn text_of(entry: &mut Entry, name: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let text = text.to_string();
    match name {
        "guid" | "id" => entry.id = Some(text),
        "title" => entry.title = Some(text),
        "link" if entry.link.is_none() => entry.link = Some(text),
        "author" | "creator" | "name" if entry.author.is_none() => entry.author = Some(text),
        "description" | "summary" => entry.summary = Some(text),
        "encoded" | "content" if entry.summary.is_none() => entry.summary = Some(text),
        "pubDate" | "published" | "issued" | "date" => entry.published = Some(text),
        "updated" | "modified" => entry.updated = Some(text),
        "category" | "subject" => entry.categories.push(text),
        _ => {}
    }
}

fn feed_item(entry: Entry) -> Item {
    let published = entry.published.as_deref().and_then(time_text);
    let updated = entry.updated.as_deref().and_then(time_text);
    let id = entry
        .id
        .clone()
        .or_else(|| entry.link.clone())
        .or_else(|| entry.enclosure.as_ref().map(|(url, _, _)| url.clone()))
        .unwrap_or_else(|| {
            let seed = format!("{:?}{:?}", entry.title, entry.published);
            format!("sha256-{}", &hex(&Sha256::digest(seed.as_bytes()))[..32])
        });
    let mut fields = Map::new();
    fields.insert("id".into(), json!(id));
    fields.insert("title".into(), json!(entry.title));
    fields.insert("link".into(), json!(entry.link));
    fields.insert("author".into(), json!(entry.author));
    fields.insert("categories".into(), json!(entry.categories));
    fields.insert("summary".into(), json!(entry.summary));
    fields.insert("published".into(), json!(published.clone().or(entry.published)));
    if let Some((url, mime, _)) = &entry.enclosure {
        fields.insert("enclosure".into(), json!({"url": url, "type": mime}));
    }
    let modified = updated.or(published).unwrap_or_default();
    let mut item = json_item(id, fields, modified);
    if let Some((url, mime, length)) = entry.enclosure {
        item.filename = file_stem(&url);
        item.listed.size = length.unwrap_or(0);
        item.enclosure = Some((url, mime));
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_items_with_entities_and_enclosures() {
        let xml = r#"<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>T</title>
<item><title>Fish &amp; chips</title><link>https://example.com/a</link>
<guid>a-1</guid><pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate>
<dc:creator>Ann</dc:creator><category>food</category><category>uk</category>
<description><![CDATA[<p>crispy</p>]]></description></item>
<item><title>Episode</title><enclosure url="https://cdn.example.com/ep/2.mp3?x=1"
 type="audio/mpeg" length="1234"/></item>
</channel></rss>"#;
        let items = parse_feed(xml).unwrap();
        assert_eq!(items.len(), 2);
        let first = &items[0];
        assert_eq!(first.listed.key, "a-1");
        assert_eq!(first.fields["title"], "Fish & chips");
        assert_eq!(first.fields["author"], "Ann");
        assert_eq!(first.fields["categories"], json!(["food", "uk"]));
        assert_eq!(first.fields["summary"], "<p>crispy</p>");
        assert_eq!(first.listed.last_modified, "2026-12-01T10:00:00.000000Z");
        assert_eq!(first.filename, "a-1.json");
        assert!(first.enclosure.is_none());
        let second = &items[1];
        assert_eq!(second.listed.key, "https://cdn.example.com/ep/2.mp3?x=1");
        assert_eq!(second.filename, "2.mp3");
        assert_eq!(second.listed.size, 1234);
        assert_eq!(second.enclosure.as_ref().unwrap().1.as_deref(), Some("audio/mpeg"));
    }

    #[test]
    fn reads_atom_entries() {
        let xml = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>
<entry><id>urn:1</id><title type="text">One</title>
<link rel="alternate" href="https://example.com/1"/><updated>2026-11-30T08:00:00Z</updated>
<author><name>Bo</name></author><category term="news"/><summary>s</summary></entry></feed>"#;
        let items = parse_feed(xml).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].listed.key, "urn:1");
        assert_eq!(items[0].fields["link"], "https://example.com/1");
        assert_eq!(items[0].fields["author"], "Bo");
        assert_eq!(items[0].fields["categories"], json!(["news"]));
        assert_eq!(items[0].listed.last_modified, "2026-11-30T08:00:00.000000Z");
    }

    #[test]
    fn refuses_documents_that_are_not_feeds() {
        assert!(parse_feed("<html><body>hi</body></html>").is_err());
        assert!(parse_feed("{\"items\": []}").is_err());
    }

    #[test]
    fn reads_json_items_by_path_and_jsonl() {
        let config = json!({"items_path": "data.hits", "item_id_field": "objectID",
                            "item_modified_field": "updated"});
        let text = r#"{"data": {"hits": [
            {"objectID": 7, "updated": 1764806400, "name": "seven"},
            {"objectID": "eight", "updated": "2026-12-04T00:00:00Z"},
            "not an object"]}}"#;
        let items = parse_items(text, config.as_object().unwrap()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].listed.key, "7");
        assert_eq!(items[0].listed.last_modified, "2025-12-04T00:00:00.000000Z");
        assert_eq!(items[1].listed.key, "eight");
        assert_eq!(items[1].filename, "eight.json");

        let config = json!({"response_content_type": "jsonl"});
        let items =
            parse_items("{\"id\": \"a\"}\n\n{\"id\": \"b\"}\n", config.as_object().unwrap())
                .unwrap();
        assert_eq!(items.iter().map(|i| i.listed.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let err = parse_items("{\"x\": 1}", json!({"items_path": "x"}).as_object().unwrap());
        assert!(err.unwrap_err().contains("does not lead to a list"));
    }
}
