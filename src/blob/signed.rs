//! sluice's own signed URLs, for stores that clients cannot reach directly (local files, or a
//! store behind a private network).
//!
//! A URL names the blob key and carries the method, an expiry, the content type and a size
//! limit, all covered by an HMAC-SHA256 signature under a key derived from the master key. The
//! server that receives it recomputes the signature; a changed parameter, a late use or a
//! second use of a one-time URL is refused.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The route prefix signed URLs are served under.
pub const ROUTE_PREFIX: &str = "/v1/files/";

/// Why a signed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL's signature does not match")]
    BadSignature,
    #[error("the URL has expired")]
    Expired,
    #[error("the URL is for {expected}, not {actual}")]
    WrongMethod { expected: String, actual: String },
}

/// The query parameters of a signed URL.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedQuery {
    pub method: String,
    pub expires: i64,
    #[serde(default)]
    pub ct: String,
    #[serde(default)]
    pub max: u64,
    #[serde(default)]
    pub nonce: String,
    pub sig: String,
}

/// Signs and checks URLs for one sluice deployment.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
    base: String,
}

impl UrlSigner {
    /// A signer with a key derived from `master_key` that builds URLs under `base`
    /// (e.g. `http://127.0.0.1:8000`).
    pub fn new(master_key: &[u8; 32], base: &str) -> Self {
        let mut mac = mac(master_key);
        mac.update(b"sluice signed urls v1");
        let key = mac.finalize().into_bytes().into();
        Self { key, base: base.trim_end_matches('/').to_string() }
    }

    /// A URL that reads the blob under `key` until `ttl` from now.
    pub fn get_url(&self, key: &str, content_type: Option<&str>, ttl: Duration) -> String {
        self.url("GET", key, content_type.unwrap_or(""), 0, "", ttl)
    }

    /// A one-time URL that writes at most `max_size` bytes of `content_type` under `key`.
    pub fn put_url(
        &self,
        key: &str,
        content_type: &str,
        max_size: u64,
        nonce: &str,
        ttl: Duration,
    ) -> String {
        self.url("PUT", key, content_type, max_size, nonce, ttl)
    }

    fn url(
        &self,
        method: &str,
        key: &str,
        ct: &str,
        max: u64,
        nonce: &str,
        ttl: Duration,
    ) -> String {
        let expires = unix_now() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let sig = self.signature(method, key, expires, ct, max, nonce);
        let path: Vec<String> = key
            .split('/')
            .map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect())
            .collect();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("method", method)
            .append_pair("expires", &expires.to_string())
            .append_pair("ct", ct)
            .append_pair("max", &max.to_string())
            .append_pair("nonce", nonce)
            .append_pair("sig", &sig)
            .finish();
        format!("{}{ROUTE_PREFIX}{}?{query}", self.base, path.join("/"))
    }

    /// Checks a URL received for `key` with the request's method.
    ///
    /// # Errors
    ///
    /// Why the URL is refused.
    pub fn verify(&self, method: &str, key: &str, q: &SignedQuery) -> Result<(), SignatureError> {
        let given = decode_hex(&q.sig).ok_or(SignatureError::BadSignature)?;
        let mut check = mac(&self.key);
        check.update(canonical(&q.method, key, q.expires, &q.ct, q.max, &q.nonce).as_bytes());
        check.verify_slice(&given).map_err(|_| SignatureError::BadSignature)?;
        if !q.method.eq_ignore_ascii_case(method) {
            return Err(SignatureError::WrongMethod {
                expected: q.method.clone(),
                actual: method.into(),
            });
        }
        if q.expires < unix_now() {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn signature(
        &self,
        method: &str,
        key: &str,
        expires: i64,
        ct: &str,
        max: u64,
        nonce: &str,
    ) -> String {
        let mut m = mac(&self.key);
        m.update(canonical(method, key, expires, ct, max, nonce).as_bytes());
        m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn canonical(method: &str, key: &str, expires: i64, ct: &str, max: u64, nonce: &str) -> String {
    format!("{}\n{key}\n{expires}\n{ct}\n{max}\n{nonce}", method.to_ascii_uppercase())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(url: &str) -> SignedQuery {
        let query = url.split_once('?').unwrap().1;
        serde_urlencoded::from_str(query).unwrap()
    }

    #[test]
    fn signed_urls_verify_and_tampering_is_caught() {
        let signer = UrlSigner::new(&[7; 32], "http://h:1/");
        let url = signer.get_url("a/b c/file.txt", Some("text/plain"), Duration::from_secs(60));
        assert!(url.starts_with("http://h:1/v1/files/a/b+c/file.txt?"), "{url}");
        let q = query_of(&url);
        assert_eq!(signer.verify("GET", "a/b c/file.txt", &q), Ok(()));

        assert_eq!(signer.verify("GET", "a/other", &q), Err(SignatureError::BadSignature));
        let mut changed = q.clone();
        changed.ct = "text/html".into();
        assert_eq!(
            signer.verify("GET", "a/b c/file.txt", &changed),
            Err(SignatureError::BadSignature)
        );
        let mut later = q.clone();
        later.expires += 10;
        assert_eq!(
            signer.verify("GET", "a/b c/file.txt", &later),
            Err(SignatureError::BadSignature)
        );
        assert!(matches!(
            signer.verify("PUT", "a/b c/file.txt", &q),
            Err(SignatureError::WrongMethod { .. })
        ));

        let other = UrlSigner::new(&[8; 32], "http://h:1");
        assert_eq!(other.verify("GET", "a/b c/file.txt", &q), Err(SignatureError::BadSignature));
    }

    #[test]
    fn expired_urls_are_refused() {
        let signer = UrlSigner::new(&[1; 32], "http://h");
        let url = signer.put_url("k", "image/png", 10, "n1", Duration::from_secs(0));
        let mut q = query_of(&url);
        q.expires -= 5;
        // Re-sign the earlier expiry as the server would have issued it.
        q.sig = signer.signature("PUT", "k", q.expires, "image/png", 10, "n1");
        assert_eq!(signer.verify("PUT", "k", &q), Err(SignatureError::Expired));
    }
}
