//! Downloading URLs that API callers give, without letting them reach the server's own network.
//!
//! A caller-supplied URL is untrusted: it may name `localhost`, a private address, the cloud
//! metadata service, or a host whose DNS answer points at one of those. [`Fetcher::get`]
//! therefore:
//!
//! - accepts only `http` and `https` URLs without credentials in them;
//! - checks literal IP hosts (after the `url` crate has normalised decimal, octal and hex forms)
//!   and, for names, every address the name resolves to, refusing the whole host when any of
//!   them is not public (see [`is_public_address`]) unless the operator allows it;
//! - connects only to the addresses it checked: the check runs inside the HTTP client's own
//!   resolver, so no second DNS answer can slip a private address in between;
//! - follows redirects itself, checking every hop the same way before connecting to it;
//! - bounds the whole transfer by one deadline, the connection by a connect timeout, and the
//!   body by a byte limit, refusing early when `Content-Length` already says too much.
//!
//! [`sniff_mime`] guesses a media type from the first bytes of a body.

mod address;
mod body;
mod sniff;

use std::error::Error as _;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use tokio::time::Instant;
use url::{Host, Url};

pub use address::is_public_address;
pub use sniff::sniff_mime;

/// What a fetch may reach and how much it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Networks the operator allows even though they are not public (from
    /// `SLUICE_ALLOW_PRIVATE_NETWORKS`), e.g. an on-premises MinIO at `10.1.2.3/32`.
    pub allow: Vec<IpNet>,
    /// The most body bytes one fetch may read.
    pub max_bytes: u64,
    /// The whole transfer, from the first connection through the last body byte and across
    /// redirects.
    pub timeout: Duration,
    /// Establishing one connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// The most redirects one fetch follows.
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    /// No private networks, 1 GiB, five minutes in all, ten seconds to connect, five redirects.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_bytes: 1 << 30,
            timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
        }
    }
}

impl FetchPolicy {
    /// Parses an allow list: comma-separated CIDRs (`10.0.0.0/8`, `fd00::/8`) or single
    /// addresses (`192.168.1.20`, `::1`). Blank entries are ignored, so an empty string is an
    /// empty list.
    ///
    /// # Errors
    ///
    /// Names the first entry that is neither a network nor an address.
    pub fn parse_allow_list(raw: &str) -> Result<Vec<IpNet>, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                if let Ok(net) = entry.parse::<IpNet>() {
                    Ok(net.trunc())
                } else if let Ok(ip) = entry.parse::<IpAddr>() {
                    Ok(IpNet::from(ip))
                } else {
                    Err(format!("`{entry}` is neither a CIDR network nor an IP address"))
                }
            })
            .collect()
    }

    /// Whether a fetch may connect to `ip`: it is public, or inside a network the operator
    /// allows. An IPv4-mapped IPv6 address counts as the IPv4 address it reaches.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        is_public_address(ip)
            || self.allow.iter().any(|net| net.contains(&canonical) || net.contains(&ip))
    }

    /// Checks `url` the way [`Fetcher::get`] does before connecting: the scheme, credentials and
    /// a literal IP host. A host name passes here; its addresses are checked when a fetch
    /// resolves it. Lets a handler reject a bad URL with 400 before queueing any work.
    ///
    /// # Errors
    ///
    /// [`FetchError::BadUrl`] or [`FetchError::Forbidden`], as `get` would return them.
    pub fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        let url = Url::parse(url).map_err(|error| FetchError::BadUrl(error.to_string()))?;
        self.check_target(&url)?;
        Ok(url)
    }

    /// Refuses what can be refused before any connection: the scheme, credentials, a missing
    /// host and literal IP hosts. Names are checked by the resolver, on the addresses that the
    /// connection will then use.
    fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl(format!(
                "the `{}` scheme is not supported; use http or https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::BadUrl("urls with credentials are not accepted".to_owned()));
        }

        let ip = match url.host() {
            None => return Err(FetchError::BadUrl("the url has no host".to_owned())),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        if self.permits(ip) {
            return Ok(());
        }
        tracing::warn!(
            address = %ip,
            reason = address::refusal_reason(ip).unwrap_or("not public"),
            "fetch refused a non-public address"
        );
        Err(FetchError::Forbidden(format!("the address {ip} is not public")))
    }
}

/// Why a fetch failed. Every message is safe to show to the API caller: a refusal says that a
/// host is not public, never which internal address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be fetched as written: unparsable, not http(s), or carrying credentials.
    #[error("invalid url: {0}")]
    BadUrl(String),
    /// The URL (or a redirect) leads to an address that is not public.
    #[error("{0}")]
    Forbidden(String),
    /// The body is larger than the limit, which the variant holds.
    #[error("the response body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// The transfer did not finish within the policy's time limits.
    #[error("the download did not finish in time")]
    Timeout,
    /// The server redirected more often than the policy allows.
    #[error("too many redirects")]
    TooManyRedirects,
    /// The final response had a status other than 2xx.
    #[error("the server answered with HTTP status {0}")]
    Status(u16),
    /// The connection or the exchange failed.
    #[error("{0}")]
    Network(String),
}

impl FetchError {
    /// Recovers the [`FetchError`] behind an error from [`Fetched::stream`] (`TooLarge`,
    /// `Timeout` or `Network`), for a caller that consumed the stream through an API that only
    /// passes [`std::io::Error`] along.
    pub fn from_body_error(error: &std::io::Error) -> Self {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<FetchError>())
            .cloned()
            .unwrap_or_else(|| Self::Network("the download failed".to_owned()))
    }
}

/// A response whose status was 2xx, with its body still to read.
pub struct Fetched {
    /// The URL that answered, after redirects. It may hold a signature in its query string, so
    /// it is not to be logged.
    pub final_url: String,
    /// The `Content-Type` header as sent, if any; see [`sniff_mime`] for a second opinion.
    pub content_type: Option<String>,
    /// The length the server announced; the stream enforces the limit whatever it says.
    pub content_length: Option<u64>,
    /// The body. It ends with an error carrying [`FetchError::TooLarge`] once more than the
    /// policy's `max_bytes` arrived, or [`FetchError::Timeout`] once the deadline passed; see
    /// [`FetchError::from_body_error`].
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// Downloads caller-supplied URLs under a [`FetchPolicy`]. Cheap to clone: clones share one
/// connection pool.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<FetchPolicy>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Builds the HTTP client for `policy`.
    ///
    /// # Errors
    ///
    /// Fails when the TLS configuration cannot be set up (no usable root certificates).
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver { policy: policy.clone() }))
            // Redirects are followed by hand so that every hop is checked before connecting.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, out of reach of the address check.
            .no_proxy()
            .connect_timeout(policy.connect_timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                tracing::error!(error = %error, "could not build the fetch client");
                FetchError::Network("the download client could not be set up".to_owned())
            })?;
        Ok(Self { client, policy })
    }

    /// The policy this fetcher enforces.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// The HTTP client, for requests the fetcher does not shape itself (such as signed API
    /// calls): it connects only to addresses the policy permits and follows no redirect.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Checks `url` as [`FetchPolicy::check_url`] does and, for a host name, that every address
    /// it resolves to now is permitted: for clients that resolve names themselves.
    // Limitation: the client that connects afterwards resolves the name again, so a name whose
    // answer changes between the two lookups is not caught here.
    ///
    /// # Errors
    ///
    /// [`FetchError::BadUrl`], [`FetchError::Forbidden`], or [`FetchError::Network`] when the
    /// name does not resolve.
    pub async fn check_resolved(&self, url: &str) -> Result<(), FetchError> {
        let url = self.policy.check_url(url)?;
        let Some(Host::Domain(host)) = url.host() else { return Ok(()) };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| FetchError::Network(format!("the host {host} could not be resolved")))?
            .collect();
        if addrs.is_empty() {
            return Err(FetchError::Network(format!("the host {host} could not be resolved")));
        }
        if addrs.iter().all(|a| self.policy.permits(a.ip())) {
            return Ok(());
        }
        Err(FetchError::Forbidden(format!("the host {host} resolves to a non-public address")))
    }

    /// Starts a GET of `url` and returns the final response's head and its body as a stream.
    /// Redirects are followed; the policy's timeout covers everything up to the last body byte.
    ///
    /// # Errors
    ///
    /// [`FetchError::BadUrl`] for a URL that is not plain `http(s)`, [`FetchError::Forbidden`]
    /// when any hop leads to a refused address (nothing is sent there), and the other variants
    /// for limits, non-2xx statuses and network failures.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        self.send(Request::get(url)).await
    }

    /// Sends `request` as [`get`](Self::get) sends a GET. A GET follows redirects; its headers
    /// go along only to hops on the same origin, so that credentials in them never reach
    /// another host. A POST follows none: a redirect answers [`FetchError::Status`].
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn send(&self, request: Request<'_>) -> Result<Fetched, FetchError> {
        let timeout = request.timeout.unwrap_or(self.policy.timeout).min(self.policy.timeout);
        let max_bytes =
            request.max_bytes.unwrap_or(self.policy.max_bytes).min(self.policy.max_bytes);
        let deadline = Instant::now() + timeout;
        let url = self.policy.check_url(request.url)?;

        let response = tokio::time::timeout_at(deadline, self.follow_redirects(url, &request))
            .await
            .map_err(|_| FetchError::Timeout)??;

        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_length = response.content_length();
        if content_length.is_some_and(|length| length > max_bytes) {
            return Err(FetchError::TooLarge(max_bytes));
        }

        Ok(Fetched {
            final_url: response.url().to_string(),
            content_type: header_text(&response, CONTENT_TYPE),
            content_length,
            stream: Box::pin(body::LimitedBody::new(response, max_bytes, deadline)),
        })
    }

    /// Sends one POST of `body` to `url` with `headers`, under the same address rules as
    /// [`get`](Self::get), and answers the response's status, whatever it is. Redirects are not
    /// followed: a 3xx answer is returned like any other status. The response body is not read.
    ///
    /// # Errors
    ///
    /// [`FetchError::BadUrl`] or [`FetchError::Forbidden`] before anything is sent,
    /// [`FetchError::Timeout`] when no answer came within `timeout`, and
    /// [`FetchError::Network`] when the connection or the exchange failed.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, FetchError> {
        let url = self.policy.check_url(url)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let mut request = self.client.post(url).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|error| send_error(error, &host))?;
        Ok(response.status().as_u16())
    }

    /// Sends the request, and again to each redirect target, until a response is not a
    /// redirect.
    async fn follow_redirects(
        &self,
        mut url: Url,
        request: &Request<'_>,
    ) -> Result<reqwest::Response, FetchError> {
        let origin = url.origin();
        let mut redirects = 0;
        loop {
            self.policy.check_target(&url)?;
            let mut outgoing = self.client.request(request.method.clone(), url.clone());
            if url.origin() == origin {
                for (name, value) in request.headers {
                    outgoing = outgoing.header(name.as_str(), value.as_str());
                }
            }
            if let Some(body) = &request.body {
                outgoing = outgoing.body(body.clone());
            }
            let response = outgoing
                .send()
                .await
                .map_err(|error| send_error(error, url.host_str().unwrap_or_default()))?;

            if request.method != reqwest::Method::GET {
                return Ok(response);
            }
            let Some(next) = redirect_target(&response)? else {
                return Ok(response);
            };
            if redirects == self.policy.max_redirects {
                return Err(FetchError::TooManyRedirects);
            }
            redirects += 1;
            tracing::debug!(
                from.host = url.host_str().unwrap_or_default(),
                to.host = next.host_str().unwrap_or_default(),
                status = response.status().as_u16(),
                "fetch following a redirect"
            );
            url = next;
        }
    }
}

/// A request for [`Fetcher::send`]: a GET of a URL unless told otherwise, under the policy's
/// limits unless tighter ones are given.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub url: &'a str,
    pub method: reqwest::Method,
    /// Headers to send; they may hold credentials, so they are never logged.
    pub headers: &'a [(String, String)],
    pub body: Option<Bytes>,
    /// A deadline shorter than the policy's.
    pub timeout: Option<Duration>,
    /// A byte limit lower than the policy's.
    pub max_bytes: Option<u64>,
}

impl<'a> Request<'a> {
    /// A GET of `url` with no headers of its own.
    pub fn get(url: &'a str) -> Self {
        Self {
            url,
            method: reqwest::Method::GET,
            headers: &[],
            body: None,
            timeout: None,
            max_bytes: None,
        }
    }
}

/// The absolute URL a redirect response points to, or `None` when the response is final. A
/// redirect status without a `Location` is final too, and ends as a status error.
fn redirect_target(response: &reqwest::Response) -> Result<Option<Url>, FetchError> {
    let status = response.status().as_u16();
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = header_text(response, LOCATION) else {
        return Ok(None);
    };
    let mut next = response
        .url()
        .join(&location)
        .map_err(|_| FetchError::BadUrl("a redirect pointed to an invalid url".to_owned()))?;
    next.set_fragment(None);
    Ok(Some(next))
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

/// Turns a failed send into a message fit for the caller. The full error goes to the log
/// (without the URL, whose query may hold a signature).
fn send_error(error: reqwest::Error, host: &str) -> FetchError {
    let error = error.without_url();
    let resolve_failure = std::iter::successors(error.source(), |source| (*source).source())
        .find_map(|source| source.downcast_ref::<ResolveError>());

    match resolve_failure {
        Some(ResolveError::Refused) => {
            FetchError::Forbidden(format!("the host {host} resolves to a non-public address"))
        }
        Some(ResolveError::Lookup) => {
            FetchError::Network(format!("the host {host} could not be resolved"))
        }
        None if error.is_timeout() => FetchError::Timeout,
        None => {
            tracing::info!(url.host = host, error = %error_chain(&error), "fetch failed");
            let message = if error.is_connect() {
                format!("could not connect to {host}")
            } else {
                format!("the request to {host} failed")
            };
            FetchError::Network(message)
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    for source in std::iter::successors(error.source(), |source| (*source).source()) {
        text.push_str(": ");
        text.push_str(&source.to_string());
    }
    text
}

/// Resolves names for the HTTP client and refuses the whole name when any of its addresses is
/// not permitted. Because the client connects to exactly the addresses returned here, the
/// address checked is the address used.
struct CheckedResolver {
    policy: Arc<FetchPolicy>,
}

/// Why [`CheckedResolver`] gave no addresses; found again in the client's error chain.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("the host resolves to a non-public address")]
    Refused,
    #[error("the host could not be resolved")]
    Lookup,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => addrs.collect(),
                Err(error) => {
                    tracing::info!(url.host = %host, error = %error, "fetch host lookup failed");
                    return Err(ResolveError::Lookup.into());
                }
            };
            if addrs.is_empty() {
                return Err(ResolveError::Lookup.into());
            }

            if let Some(refused) = addrs.iter().find(|addr| !policy.permits(addr.ip())) {
                tracing::warn!(
                    url.host = %host,
                    address = %refused.ip(),
                    reason = address::refusal_reason(refused.ip()).unwrap_or("not public"),
                    "fetch refused a host that resolves to a non-public address"
                );
                return Err(ResolveError::Refused.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
