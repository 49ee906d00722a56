//! AWS Signature Version 4 for the few AWS API calls that `object_store` does not make: listing
//! the buckets a key can see, and assuming a role with STS. Only requests without a body are
//! signed.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::model::hex;

/// The SHA-256 of an empty body, which every request signed here has.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key, as S3 and its compatible stores take it.
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// The `Host` header a request to `url` carries, and that its signature covers: the host, with
/// the port when the URL names one; `None` for a URL without a host.
pub fn host_header(url: &url::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The headers that sign a bodiless request to `service` (`s3`, `sts`) in `region`:
/// `(name, value)` pairs to send as they are.
///
/// `host` is the `Host` header (with the port when it is not the scheme's default), `path` the
/// request path as sent (already percent-encoded), `query` the canonical query string (sorted
/// and encoded, empty for none).
pub fn sign(
    credentials: &Credentials<'_>,
    (service, region): (&str, &str),
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    at: OffsetDateTime,
) -> Vec<(String, String)> {
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let day = &stamp[..8];

    let mut headers = vec![
        ("host".to_string(), host.to_string()),
        ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
        ("x-amz-date".to_string(), stamp.clone()),
    ];
    if let Some(token) = credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), token.to_string()));
    }
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    let canonical_request =
        format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{EMPTY_SHA256}");

    let scope = format!("{day}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), day);
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex(&hmac(&key, &string_to_sign));

    headers.retain(|(name, _)| name != "host");
    headers.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            credentials.access_key_id
        ),
    ));
    headers
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key"));
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET Object example of Amazon's SigV4 documentation for S3, with its published
    /// signature.
    #[test]
    fn matches_the_published_example() {
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            session_token: None,
        };
        let at = OffsetDateTime::from_unix_timestamp(1_369_353_600).unwrap();
        let headers = sign(
            &credentials,
            ("s3", "us-east-1"),
            "GET",
            "examplebucket.s3.amazonaws.com",
            "/",
            "max-keys=2&prefix=J",
            at,
        );
        let authorization = &headers.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
        assert!(headers.iter().all(|(n, _)| n != "host"));
    }
}
