//! The `sluice` binary as an operator uses it: first start, restarts, bad settings, admin.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command.env("SLUICE_LOG", "warn");
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `sluice serve` and waits until it answers its health check.
fn serve(dir: &std::path::Path, port: u16, extra: &[(&str, &str)]) -> Child {
    let mut command = sluice();
    command
        .env("SLUICE_DATA_DIR", dir)
        .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("sluice did not start");
}

fn stop(mut child: Child) -> String {
    // SIGTERM, as a service manager would send it; the server shuts down gracefully.
    Command::new("kill").arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        out.push_str(&line.unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn first_start_prints_one_key_and_restarts_print_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = stop(serve(dir.path(), port, &[]));
    let key = out.lines().map(str::trim).find(|l| l.starts_with("sk_")).expect("a key is printed");
    assert!(out.contains("sluice admin key create --org org_"), "{out}");

    let server = serve(dir.path(), port, &[]);
    let answer = Command::new("curl")
        .args(["-fsS", "-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("http://127.0.0.1:{port}/v1/me"))
        .output()
        .unwrap();
    assert!(answer.status.success(), "the printed key works after a restart");
    assert!(String::from_utf8_lossy(&answer.stdout).contains("org_"));
    let out = stop(server);
    assert!(!out.contains("sk_"), "a restart prints no key: {out}");
}

#[test]
fn bootstrap_key_is_created_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = "sk_from_the_environment_0123";
    let server = serve(dir.path(), port, &[("SLUICE_BOOTSTRAP_API_KEY", key)]);
    let ok = Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("http://127.0.0.1:{port}/v1/me"))
        .status()
        .unwrap();
    assert!(ok.success());
    let mut child = server;
    Command::new("kill").arg(child.id().to_string()).status().unwrap();
    child.wait().unwrap();
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(!logs.contains(key) && !out.contains(key), "the key is never echoed");
}

#[test]
fn bad_settings_stop_the_start_with_one_line_naming_the_variable() {
    let cases = [
        ("SLUICE_LISTEN", "not-an-address"),
        ("SLUICE_LOG_FORMAT", "yaml"),
        ("SLUICE_MAX_BODY_BYTES", "-5"),
        ("DATABASE_URL", "mysql://x"),
        ("SLUICE_BOOTSTRAP_API_KEY", "short"),
        ("SLUICE_STORAGE_URL", "ftp://x"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (variable, value) in cases {
        let output = sluice()
            .arg("serve")
            .env("SLUICE_DATA_DIR", dir.path())
            .env(variable, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} must stop the start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{variable}: {stderr}");
        assert!(lines[0].contains(variable), "{variable}: {stderr}");
        if variable == "SLUICE_BOOTSTRAP_API_KEY" {
            assert!(!stderr.contains(value), "the key itself is not echoed");
        }
    }
}

#[test]
fn admin_manages_organizations_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output =
            sluice().arg("admin").args(args).env("SLUICE_DATA_DIR", dir.path()).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let org = run(&["org", "create", "Acme"]);
    assert!(org.starts_with("org_"), "{org}");
    assert!(run(&["org", "list"]).contains("Acme"));
    let key = run(&["key", "create", "--org", &org, "--name", "ci"]);
    assert!(key.starts_with("sk_"));
    let listed = run(&["key", "list", "--org", &org]);
    assert!(listed.contains("ci") && listed.contains("active"), "{listed}");
    assert!(!listed.contains(&key), "secrets are never listed");
    let key_id = listed.split('\t').next().unwrap().to_string();
    assert!(run(&["key", "revoke", &key_id]).contains("revoked"));
    assert!(run(&["key", "list"]).contains("revoked"));

    let output = sluice()
        .args(["admin", "key", "create", "--org", "org_missing"])
        .env("SLUICE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// Sends a JSON request with curl and returns the HTTP status and the body.
fn curl_json(port: u16, key: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    curl_in(port, key, "", method, path, body)
}

#[test]
fn rotating_the_master_key_keeps_sealed_secrets_usable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = "sk_rotation_test_key_0123456";
    let server = serve(dir.path(), port, &[("SLUICE_BOOTSTRAP_API_KEY", key)]);
    let connection = r#"{"name": "feed", "provider_type": "rss", "provider_config": {
        "credentials": {"type": "http_headers", "headers": {"Authorization": "Bearer t0ken"}}}}"#;
    let (status, body) = curl_json(port, key, "POST", "/v1/organizations/connections", connection);
    assert_eq!(status, 200, "{body}");
    let webhook = r#"{"webhook_name": "w", "event_types": ["object.created"], "channels": [
        {"channel": "webhook", "configs": {"url": "https://example.com/h",
         "signing_secret": "whsec_1"}}]}"#;
    let (status, body) = curl_json(port, key, "POST", "/v1/organizations/webhooks", webhook);
    assert_eq!(status, 200, "{body}");
    stop(server);

    let rotate = |new: &str, current: Option<&str>| {
        let mut command = sluice();
        command.args(["admin", "rotate-master-key", "--new-key", new]);
        command.env("SLUICE_DATA_DIR", dir.path());
        if let Some(current) = current {
            command.env("SLUICE_MASTER_KEY", current);
        }
        command.output().unwrap()
    };
    let new = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    let output = rotate(new, None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(said.contains("credentials of 1 connections"), "{said}");
    assert!(said.contains("signing secrets of 1 webhooks"), "{said}");
    let file = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_eq!(file.trim(), new);
    // Run again with the same new key (as after an interruption): nothing breaks.
    assert!(rotate(new, Some(new)).status.success());
    // A key that sealed nothing here cannot take over: the secrets open under neither.
    let stranger = "ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICA=";
    let output = rotate(stranger, Some(stranger));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("neither key"));
    assert!(rotate("short", None).status.code() != Some(0));

    // Restarted on the new key file, the connection's credentials open for its test.
    let server = serve(dir.path(), port, &[]);
    let (status, body) =
        curl_json(port, key, "POST", "/v1/organizations/connections/feed/test", "{}");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""success":true"#), "{body}");
    stop(server);
}

/// Sends a JSON request with curl, in namespace `ns` unless it is empty, and returns the HTTP
/// status and the body.
fn curl_in(port: u16, key: &str, ns: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-X", method, "-w", "\n%{http_code}", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {key}"), "-d", body]);
    if !ns.is_empty() {
        command.args(["-H", &format!("X-Namespace: {ns}")]);
    }
    let output = command.arg(format!("http://127.0.0.1:{port}{path}")).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

/// Serves an RSS feed of one entry on a local port, to requests that carry `token` as their
/// `Authorization` header; answers 401 to others.
fn serve_feed(token: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                authorized |= line.to_ascii_lowercase().trim()
                    == format!("authorization: {token}").to_ascii_lowercase();
                line.clear();
            }
            let feed = "<rss version=\"2.0\"><channel><title>t</title><item><guid>one</guid>\
                        <title>One</title></item></channel></rss>";
            let answer = if authorized {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{feed}",
                    feed.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
            };
            std::io::Write::write_all(&mut stream, answer.as_bytes()).ok();
        }
    });
    port
}

/// Every connection and sync endpoint's answers, and the server's debug log, are read for the
/// credentials of a feed connection (which a sync really uses) and of an S3 connection: none
/// of them appears.
#[test]
fn credentials_never_reach_answers_or_the_log() {
    const FEED_TOKEN: &str = "Bearer feed-t0ken-never-shown";
    const S3_SECRET: &str = "s3-secret-never-shown";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = "sk_secrets_test_key_0123456789";
    let log_path = dir.path().join("sluice.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = sluice()
        .env("SLUICE_LOG", "debug")
        .env("SLUICE_DATA_DIR", dir.path())
        .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE_BOOTSTRAP_API_KEY", key)
        .env("SLUICE_ALLOW_PRIVATE_NETWORKS", "127.0.0.0/8")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sluice did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let feed_port = serve_feed(FEED_TOKEN);

    let mut answers = Vec::new();
    let mut call = |ns: &str, method: &str, path: &str, body: &str| {
        let (status, text) = curl_in(port, key, ns, method, path, body);
        answers.push(format!("{method} {path} → {status} {text}"));
        assert!(status < 500, "{method} {path}: {status} {text}");
        (status, serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default())
    };
    let feed = format!(
        r#"{{"name": "feed", "provider_type": "rss", "provider_config": {{"credentials":
            {{"type": "http_headers", "headers": {{"Authorization": "{FEED_TOKEN}"}}}}}}}}"#
    );
    let (status, feed) = call("", "POST", "/v1/organizations/connections", &feed);
    assert_eq!(status, 200, "{feed}");
    let s3 = format!(
        r#"{{"name": "store", "provider_type": "s3", "test_before_save": false,
            "provider_config": {{"endpoint_url": "http://127.0.0.1:1", "credentials":
            {{"type": "access_key", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "{S3_SECRET}"}}}}}}"#
    );
    let (status, s3) = call("", "POST", "/v1/organizations/connections", &s3);
    assert_eq!(status, 200, "{s3}");
    let (_, ns) = call("", "POST", "/v1/namespaces", r#"{"namespace_name": "secrets"}"#);
    let ns = ns["namespace_id"].as_str().unwrap().to_string();
    let bucket =
        r#"{"bucket_name": "b", "bucket_schema": {"properties": {"body": {"type": "text"}}}}"#;
    let (_, bucket) = call(&ns, "POST", "/v1/buckets", bucket);
    let bucket = bucket["bucket_id"].as_str().unwrap().to_string();
    let body = format!(
        r#"{{"connection_id": "{}", "source_path": "http://127.0.0.1:{feed_port}/feed.xml"}}"#,
        feed["connection_id"].as_str().unwrap()
    );
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    let (status, sync) = call(&ns, "POST", &syncs, &body);
    assert_eq!(status, 200, "{sync}");
    let sync = format!("{syncs}/{}", sync["sync_config_id"].as_str().unwrap());

    // The sync reads the feed with the token: the feed answers 401 without it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, runs) = call(&ns, "POST", &format!("{sync}/jobs"), "{}");
        let run = &runs["results"][0];
        if run["status"] == "completed" {
            assert_eq!(run["files_synced"], 1, "{run}");
            break;
        }
        assert!(run["status"] != "failed", "{run}");
        assert!(Instant::now() < deadline, "the sync did not run: {runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let run_id = call(&ns, "POST", &format!("{sync}/jobs"), "{}").1["results"][0]["sync_job_id"]
        .as_str()
        .unwrap()
        .to_string();
    for id in [feed["connection_id"].as_str().unwrap(), s3["connection_id"].as_str().unwrap()] {
        let path = format!("/v1/organizations/connections/{id}");
        call("", "GET", &path, "");
        call("", "PATCH", &path, r#"{"description": "read back"}"#);
        call("", "POST", &format!("{path}/test"), "{}");
    }
    call("", "GET", "/v1/organizations/connections/feed", "");
    call("", "POST", "/v1/organizations/connections/list", "{}");
    for (method, path) in [
        ("GET", sync.clone()),
        ("POST", format!("{syncs}/list")),
        ("POST", format!("{sync}/jobs")),
        ("GET", format!("{sync}/jobs/{run_id}")),
        ("GET", format!("{sync}/metrics")),
        ("POST", format!("{sync}/dlq")),
        ("PATCH", sync.clone()),
    ] {
        let body = if method == "PATCH" { r#"{"description": "d"}"# } else { "{}" };
        call(&ns, method, &path, if method == "GET" { "" } else { body });
    }
    let objects = call(&ns, "POST", &format!("/v1/buckets/{bucket}/objects/list"), "{}").1;
    assert_eq!(objects["results"].as_array().unwrap().len(), 1, "{objects}");
    Command::new("kill").arg(server.id().to_string()).status().unwrap();
    server.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("sync"), "the debug log records the sync: {log}");
    let answers = answers.join("\n");
    assert!(answers.contains(r#""type":"http_headers""#), "{answers}");
    for secret in ["feed-t0ken-never-shown", S3_SECRET] {
        assert!(!answers.contains(secret), "a credential in an answer:\n{answers}");
        assert!(!log.contains(secret), "a credential in the log:\n{log}");
    }
}
