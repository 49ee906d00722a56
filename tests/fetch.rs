//! The fetcher against real HTTP servers on loopback, and its address and media-type tables.
//!
//! Only loopback servers started here are ever contacted. Other addresses appear solely as
//! URLs that must be refused before any connection is made.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use sluice::fetch::{FetchError, FetchPolicy, Fetched, Fetcher, is_public_address, sniff_mime};
use tokio::net::TcpListener;

const LIMIT: u64 = 1000;

/// A test server: its base URL and how many requests reached `/hit`.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn serve(ip: &str) -> Server {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/ok", get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello") }))
        .route("/hit", get(hit))
        .route("/exact", get(|| async { vec![b'x'; LIMIT as usize] }))
        .route("/big", get(|| async { vec![b'x'; 2 * LIMIT as usize] }))
        .route("/big-chunked", get(|| async { chunked(vec![vec![b'x'; 600]; 3], false) }))
        .route("/stall-head", get(std::future::pending::<&'static str>))
        .route("/stall-body", get(|| async { chunked(vec![b"first".to_vec()], true) }))
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no such thing") }))
        .route("/hops/{n}", get(hops))
        .route("/to", get(redirect_to))
        .with_state(hits.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { base: format!("http://{address}"), hits }
}

async fn hit(State(hits): State<Arc<AtomicUsize>>) -> &'static str {
    hits.fetch_add(1, Ordering::SeqCst);
    "hit"
}

/// `/hops/3` redirects three times (to `/hops/2`, `/hops/1`, then `/ok`), with relative
/// locations.
async fn hops(Path(n): Path<u32>) -> Response {
    let location = if n <= 1 { "/ok".to_owned() } else { format!("/hops/{}", n - 1) };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

#[derive(serde::Deserialize)]
struct Target {
    url: String,
}

async fn redirect_to(Query(target): Query<Target>) -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target.url)]).into_response()
}

/// A body without `Content-Length`; with `stall`, it never ends after the given chunks.
fn chunked(chunks: Vec<Vec<u8>>, stall: bool) -> Body {
    let chunks =
        futures::stream::iter(chunks.into_iter().map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
    if stall {
        Body::from_stream(chunks.chain(futures::stream::pending()))
    } else {
        Body::from_stream(chunks)
    }
}

fn policy(allow: &str) -> FetchPolicy {
    FetchPolicy {
        allow: FetchPolicy::parse_allow_list(allow).unwrap(),
        max_bytes: LIMIT,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_redirects: 3,
    }
}

fn fetcher(allow: &str) -> Fetcher {
    Fetcher::new(policy(allow)).unwrap()
}

async fn read_all(fetched: Fetched) -> Result<Vec<u8>, FetchError> {
    let mut stream = fetched.stream;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(|e| FetchError::from_body_error(&e))?);
    }
    Ok(body)
}

fn is_forbidden<T: std::fmt::Debug>(result: &Result<T, FetchError>) -> bool {
    matches!(result, Err(FetchError::Forbidden(_)))
}

#[tokio::test]
async fn loopback_is_forbidden_by_default_and_fetched_when_allowed() {
    let server = serve("127.0.0.1").await;
    let url = format!("{}/hit", server.base);

    let refused = fetcher("").get(&url).await;
    assert!(is_forbidden(&refused), "{refused:?}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);

    let fetched = fetcher("127.0.0.0/8").get(&url).await.unwrap();
    assert_eq!(fetched.final_url, url);
    assert_eq!(read_all(fetched).await.unwrap(), b"hit");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn head_and_body_are_reported() {
    let server = serve("127.0.0.1").await;
    let fetched = fetcher("127.0.0.1").get(&format!("{}/ok", server.base)).await.unwrap();
    assert_eq!(fetched.content_type.as_deref(), Some("text/plain"));
    assert_eq!(fetched.content_length, Some(5));
    assert_eq!(read_all(fetched).await.unwrap(), b"hello");
}

#[tokio::test]
async fn names_are_checked_on_their_resolved_addresses() {
    let server = serve("127.0.0.1").await;
    let port = server.base.rsplit(':').next().unwrap();

    // `localhost` is a name, so this refusal comes from the resolver, before any connection.
    let refused = fetcher("").get(&format!("http://localhost:{port}/hit")).await;
    let Err(FetchError::Forbidden(message)) = refused else { panic!("{refused:?}") };
    assert!(message.contains("non-public"), "{message}");
    assert!(!message.contains("127.0.0.1") && !message.contains("::1"), "{message}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);

    let fetched = fetcher("127.0.0.0/8, ::1").get(&format!("http://localhost:{port}/hit")).await;
    assert_eq!(read_all(fetched.unwrap()).await.unwrap(), b"hit");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let server = serve("127.0.0.1").await;
    let fetcher = fetcher("127.0.0.1/32");

    let fetched = fetcher.get(&format!("{}/hops/3", server.base)).await.unwrap();
    assert_eq!(fetched.final_url, format!("{}/ok", server.base));
    assert_eq!(read_all(fetched).await.unwrap(), b"hello");

    let too_many = fetcher.get(&format!("{}/hops/4", server.base)).await;
    assert_eq!(too_many.unwrap_err(), FetchError::TooManyRedirects);
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    let server = serve("127.0.0.1").await;
    let fetcher = fetcher("127.0.0.0/8");
    let targets = [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]:9/".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://[::ffff:169.254.169.254]/".to_owned(),
        "http://0xa9fea9fe/".to_owned(),
    ];
    for target in targets {
        let url = format!("{}/to?url={}", server.base, encode(&target));
        let result = fetcher.get(&url).await;
        assert!(is_forbidden(&result), "{target}: {result:?}");
    }
}

#[tokio::test]
async fn a_refused_redirect_target_is_never_contacted() {
    let allowed = serve("127.0.0.1").await;
    // 127.0.0.2 is loopback too on Linux, so it can stand for an address the operator did not
    // allow while still being safe to listen on.
    let Ok(probe) = TcpListener::bind(("127.0.0.2", 0)).await else {
        eprintln!("127.0.0.2 is not available here; skipping");
        return;
    };
    drop(probe);
    let refused = serve("127.0.0.2").await;
    let url = format!("{}/to?url={}", allowed.base, encode(&format!("{}/hit", refused.base)));

    let result = fetcher("127.0.0.1/32").get(&url).await;
    assert!(is_forbidden(&result), "{result:?}");
    assert_eq!(refused.hits.load(Ordering::SeqCst), 0);

    // The same redirect is followed once the target's network is allowed, which shows that the
    // counter would have seen a connection.
    let fetched = fetcher("127.0.0.1/32, 127.0.0.2").get(&url).await.unwrap();
    assert_eq!(read_all(fetched).await.unwrap(), b"hit");
    assert_eq!(refused.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodies_past_the_limit_are_refused() {
    let server = serve("127.0.0.1").await;
    let fetcher = fetcher("127.0.0.1");

    let exact = fetcher.get(&format!("{}/exact", server.base)).await.unwrap();
    assert_eq!(read_all(exact).await.unwrap().len(), LIMIT as usize);

    // Content-Length says too much: refused before the body is read.
    let declared = fetcher.get(&format!("{}/big", server.base)).await;
    assert_eq!(declared.unwrap_err(), FetchError::TooLarge(LIMIT));

    // No Content-Length: the stream fails once the limit is passed.
    let chunked = fetcher.get(&format!("{}/big-chunked", server.base)).await.unwrap();
    assert_eq!(chunked.content_length, None);
    assert_eq!(read_all(chunked).await.unwrap_err(), FetchError::TooLarge(LIMIT));
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let server = serve("127.0.0.1").await;
    let fetcher =
        Fetcher::new(FetchPolicy { timeout: Duration::from_millis(300), ..policy("127.0.0.1") })
            .unwrap();

    let head = fetcher.get(&format!("{}/stall-head", server.base)).await;
    assert_eq!(head.unwrap_err(), FetchError::Timeout);

    let fetched = fetcher.get(&format!("{}/stall-body", server.base)).await.unwrap();
    let mut stream = fetched.stream;
    assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"first"));
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(FetchError::from_body_error(&error), FetchError::Timeout);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_non_2xx_status_is_an_error() {
    let server = serve("127.0.0.1").await;
    let result = fetcher("127.0.0.1").get(&format!("{}/missing", server.base)).await;
    assert_eq!(result.unwrap_err(), FetchError::Status(404));
}

#[tokio::test]
async fn credentials_and_other_schemes_are_rejected() {
    let server = serve("127.0.0.1").await;
    let fetcher = fetcher("127.0.0.1");
    let with_credentials = server.base.replace("http://", "http://user:secret@") + "/hit";
    let urls = [
        with_credentials.as_str(),
        "http://user@example.com/",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://example.com/",
        "data:text/plain,hello",
        "not a url",
    ];
    for url in urls {
        let result = fetcher.get(url).await;
        assert!(matches!(result, Err(FetchError::BadUrl(_))), "{url}: {result:?}");
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);

    // A redirect to another scheme is refused too.
    let redirect = format!("{}/to?url={}", server.base, encode("file:///etc/passwd"));
    assert!(matches!(fetcher.get(&redirect).await, Err(FetchError::BadUrl(_))));
}

#[test]
fn literal_hosts_in_every_spelling_are_checked() {
    let policy = policy("");
    let refused = [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fe80::1]/",
        "http://10.1.2.3:8080/",
        "https://192.168.0.1/",
    ];
    for url in refused {
        let result = policy.check_url(url);
        let Err(FetchError::Forbidden(message)) = &result else { panic!("{url}: {result:?}") };
        assert!(message.contains("not public"), "{message}");
    }

    for url in ["http://93.184.215.14/", "https://[2606:4700::1111]/x", "https://example.com/a"] {
        assert!(policy.check_url(url).is_ok(), "{url}");
    }
}

#[test]
fn the_allow_list_admits_its_networks_only() {
    let policy = policy("10.1.0.0/16, 127.0.0.1 ,fd00::/8,");
    assert_eq!(policy.allow.len(), 3);
    assert!(policy.permits(ip("10.1.200.3")));
    assert!(!policy.permits(ip("10.2.0.1")));
    assert!(policy.permits(ip("127.0.0.1")));
    assert!(policy.permits(ip("::ffff:127.0.0.1")));
    assert!(!policy.permits(ip("127.0.0.2")));
    assert!(policy.permits(ip("fd00:ec2::254")));
    assert!(!policy.permits(ip("169.254.169.254")));
    assert!(policy.permits(ip("8.8.8.8")));

    assert_eq!(FetchPolicy::parse_allow_list("").unwrap(), vec![]);
    assert_eq!(FetchPolicy::parse_allow_list("10.0.0.9/8").unwrap()[0].to_string(), "10.0.0.0/8");
    assert!(FetchPolicy::parse_allow_list("10.0.0.0/8,banana").unwrap_err().contains("banana"));
    assert!(FetchPolicy::parse_allow_list("10.0.0.0/33").is_err());
}

#[test]
fn address_classification() {
    let refused = [
        // IPv4
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        // IPv6
        "::",
        "::1",
        "::127.0.0.1",
        "::8.8.8.8",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::8.8.8.8",
        "100::1",
        "2001::1",
        "2001:db8::1",
        "2002:7f00:1::",
        "2002:a00:1::1",
        "3fff::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "5f00::1",
    ];
    for address in refused {
        assert!(!is_public_address(ip(address)), "{address} should be refused");
    }

    let public = [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.215.14",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.1",
        "192.169.0.1",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ];
    for address in public {
        assert!(is_public_address(ip(address)), "{address} should be public");
    }
}

#[test]
fn sniffing_media_types() {
    let cases: &[(&[u8], Option<&str>)] = &[
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("image/png")),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", Some("image/jpeg")),
        (b"GIF89a\x01\0\x01\0", Some("image/gif")),
        (b"RIFF\x24\0\0\0WEBPVP8 ", Some("image/webp")),
        (b"RIFF\x24\0\0\0WAVEfmt ", Some("audio/wav")),
        (b"%PDF-1.7\n%\xe2\xe3", Some("application/pdf")),
        (b"\0\0\0\x20ftypisom\0\0\x02\0", Some("video/mp4")),
        (b"\0\0\0\x18ftypmp42\0\0\0\0", Some("video/mp4")),
        (b"\0\0\0\x14ftypqt  \0\0\0\0", Some("video/quicktime")),
        (b"\0\0\0\x1cftypM4A \0\0\0\0", Some("audio/mp4")),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", Some("video/webm")),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", Some("video/x-matroska")),
        (b"ID3\x04\0\0\0\0\0\x23", Some("audio/mpeg")),
        (b"\xff\xfb\x90\x64\0\0\0\0", Some("audio/mpeg")),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", Some("audio/aac")),
        (b"fLaC\0\0\0\x22", Some("audio/flac")),
        (b"\x1f\x8b\x08\0", Some("application/gzip")),
        (b"name,size\nalpha,3\n", Some("text/plain")),
        ("caf\u{e9} \u{2615}\r\n\tline".as_bytes(), Some("text/plain")),
        // A multi-byte character cut off by the end of the sample is still text.
        (&"\u{2615}\u{2615}".as_bytes()[..5], Some("text/plain")),
        (b"\xef\xbb\xbfhello", Some("text/plain")),
        (b"", None),
        (b"\0\x01\x02\x03\x04binary", None),
        // UTF-16 text whose byte order mark also looks like an MPEG frame header.
        (b"\xff\xfeh\0i\0", Some("text/plain")),
        (b"\xc3\x28 broken utf-8", None),
    ];
    for (bytes, expected) in cases {
        assert_eq!(sniff_mime(bytes), *expected, "{bytes:?}");
    }

    let ogg = [b"OggS\0\x02".as_slice(), &[0; 20], b"\x01\x1e\x01vorbis"].concat();
    assert_eq!(sniff_mime(&ogg), Some("audio/ogg"));

    let xlsx = [zip_entry("[Content_Types].xml", b"<Types/>"), zip_entry("xl/workbook.xml", b"")];
    assert_eq!(
        sniff_mime(&xlsx.concat()),
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    assert_eq!(sniff_mime(&zip_entry("data.csv", b"a,b\n")), Some("application/zip"));
    let epub = zip_entry("mimetype", b"application/epub+zip");
    assert_eq!(sniff_mime(&epub), Some("application/epub+zip"));
}

/// A ZIP local file header for a stored entry, followed by its content.
fn zip_entry(name: &str, content: &[u8]) -> Vec<u8> {
    let mut entry = b"PK\x03\x04\x0a\0\0\0\0\0".to_vec();
    entry.extend_from_slice(&[0; 16]); // time, date, checksum and sizes: unused here
    entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
    entry.extend_from_slice(&[0, 0]);
    entry.extend_from_slice(name.as_bytes());
    entry.extend_from_slice(content);
    entry
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Percent-encodes a URL for use as a query value.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
