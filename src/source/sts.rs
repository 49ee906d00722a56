//! STS AssumeRole: temporary keys for a connection whose credentials name an IAM role in the
//! customer's account instead of an access key.
//!
//! sluice assumes the role with its own AWS [`Identity`], the deployment's `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`; the role's trust policy must allow
//! that identity, with the connection's external id as its condition. The STS endpoint is
//! `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the global `https://sts.amazonaws.com`.
// Limitation: sluice's own identity is read from those variables only, not from an instance
// profile or a web identity token; deployments that rely on those must set the variables.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::sigv4;

/// Characters SigV4 leaves unencoded in a query: letters, digits and `-_.~`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// How long assumed keys last; a run that takes longer fails its remaining copies and is
/// retried with fresh keys by the next run.
const SESSION_SECONDS: u32 = 3600;

/// sluice's own AWS settings: the `AWS_*` variables of its environment, with the blob store's
/// settings taking precedence; and the client that calls STS, built on first use.
#[derive(Clone, Default)]
pub struct Identity {
    vars: Vec<(String, String)>,
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Identity {
    /// Keeps the `AWS_*` pairs of `vars`; a later pair overrides an earlier one.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut kept: Vec<(String, String)> = Vec::new();
        for (name, value) in vars {
            if name.starts_with("AWS_") && !value.is_empty() {
                kept.retain(|(n, _)| *n != name);
                kept.push((name, value));
            }
        }
        Self { vars: kept, client: std::sync::OnceLock::new() }
    }

    fn var(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.vars.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Identity").field("vars", &names).finish()
    }
}

/// Keys that STS handed out for a role.
#[derive(Clone)]
pub struct TemporaryKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl std::fmt::Debug for TemporaryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryKeys").finish_non_exhaustive()
    }
}

/// Assumes `role_arn` with `external_id`, naming the session `session`.
///
/// # Errors
///
/// A message fit for the caller, without any key: sluice has no AWS identity of its own, STS
/// cannot be reached, or it refused (with its error code and message).
pub async fn assume_role(
    identity: &Identity,
    role_arn: &str,
    external_id: Option<&str>,
    session: &str,
) -> Result<TemporaryKeys, String> {
    let var = |name: &str| identity.var(name);
    let (Some(key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
    else {
        return Err("sluice has no AWS identity to assume roles with: the operator must set \
                    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            .into());
    };
    let token = var("AWS_SESSION_TOKEN");
    let endpoint = var("AWS_ENDPOINT_URL_STS")
        .or_else(|| var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| "https://sts.amazonaws.com".into());
    let region = var("AWS_REGION").unwrap_or_else(|| "us-east-1".into());
    let url = url::Url::parse(&endpoint).map_err(|e| format!("the STS endpoint: {e}"))?;
    let host = sigv4::host_header(&url).ok_or("the STS endpoint has no host")?;

    let duration = SESSION_SECONDS.to_string();
    let mut params = vec![
        ("Action", "AssumeRole"),
        ("DurationSeconds", duration.as_str()),
        ("RoleArn", role_arn),
        ("RoleSessionName", session),
        ("Version", "2011-06-15"),
    ];
    if let Some(external_id) = external_id {
        params.push(("ExternalId", external_id));
    }
    params.sort_unstable();
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
        .collect::<Vec<_>>()
        .join("&");
    let keys = sigv4::Credentials {
        access_key_id: &key_id,
        secret_access_key: &secret,
        session_token: token.as_deref(),
    };
    let path = if url.path().is_empty() { "/" } else { url.path() }.to_string();
    let at = time::OffsetDateTime::now_utc();
    let headers = sigv4::sign(&keys, ("sts", &region), "GET", &host, &path, &query, at);

    let client = match identity.client.get() {
        Some(client) => client,
        None => {
            let built = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|_| "the STS client could not be set up".to_string())?;
            identity.client.get_or_init(|| built)
        }
    };
    let mut target = url;
    target.set_query(Some(&query));
    let mut request = client.get(target);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|_| format!("could not reach STS at {host}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let code = super::xml_field(&body, "Code").unwrap_or_default();
        let message = super::xml_field(&body, "Message").unwrap_or_default();
        let refusal =
            format!("STS refused to assume {role_arn}: HTTP {} {code} {message}", status.as_u16());
        return Err(refusal.trim_end().to_string());
    }
    let field = |name: &str| {
        super::xml_field(&body, name).ok_or_else(|| format!("STS answered without {name}"))
    };
    Ok(TemporaryKeys {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: field("SessionToken")?,
    })
}
