//! A client of an OpenAI-compatible embeddings endpoint (`POST {base_url}/embeddings`).
//!
//! Inputs go in batches of at most [`MAX_BATCH`], in order, and the answer's vectors are put
//! back in input order by their `index`. A server error (5xx, 429), a timeout or a connection
//! failure is transient; any other refusal (4xx) is permanent, since sending the same input
//! again gets the same answer. The API key is sent as a bearer token and never logged or
//! shown in errors.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::Failure;

/// The most inputs one request carries.
pub const MAX_BATCH: usize = 64;

/// How long one request may take, from connecting to the last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error body goes into a failure message.
const ERROR_BODY_CHARS: usize = 300;

/// An embeddings endpoint and the model to ask it for.
#[derive(Clone)]
pub struct Embedder {
    base_url: String,
    model: String,
    api_key: Option<String>,
    images: bool,
    client: reqwest::Client,
}

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("images", &self.images)
            .finish()
    }
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder {
    /// A client of the endpoint at `base_url` (e.g. `http://127.0.0.1:9300/v1`; requests go to
    /// `{base_url}/embeddings`). With `images`, image documents are embedded too, by sending
    /// each image as a base64 `data:` URL in the `input` list.
    ///
    /// Limitation: OpenAI's own embedding models and most text embedding servers do not accept
    /// images; data-URL inputs work only with endpoints that serve a multimodal model that way
    /// (some CLIP-style servers do). Leave `images` off for any other endpoint.
    ///
    /// # Errors
    ///
    /// When `base_url` is not an http or https URL, `model` is empty, or the HTTP client
    /// cannot be built.
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<String>,
        images: bool,
    ) -> Result<Self, String> {
        let parsed = url::Url::parse(base_url)
            .map_err(|e| format!("embeddings URL {base_url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("embeddings URL {base_url:?} must be http or https"));
        }
        if model.trim().is_empty() {
            return Err("the embeddings model name is empty".into());
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the embeddings HTTP client: {e}"))?;
        Ok(Embedder {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            images,
            client,
        })
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether image documents are embedded.
    pub fn embeds_images(&self) -> bool {
        self.images
    }

    /// One vector per input, in input order.
    ///
    /// # Errors
    ///
    /// See the module documentation for which failures are transient.
    pub async fn embed_texts(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(MAX_BATCH) {
            vectors.extend(self.request(batch).await?);
        }
        Ok(vectors)
    }

    /// One vector per image, each given as a `data:` URL, in input order.
    ///
    /// # Errors
    ///
    /// A permanent failure when this embedder was made without `images`; otherwise as
    /// [`Embedder::embed_texts`].
    pub async fn embed_images(&self, data_urls: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        if !self.images {
            return Err(Failure::Permanent(
                "this embeddings endpoint is not set up for images".into(),
            ));
        }
        self.embed_texts(data_urls).await
    }

    async fn request(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        let url = format!("{}/embeddings", self.base_url);
        let body = json!({"model": self.model, "input": batch, "encoding_format": "float"});
        let mut request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }

        let response = request.send().await.map_err(|e| {
            Failure::Transient(format!(
                "the embeddings endpoint {url} cannot be reached: {}",
                describe(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Failure::Transient(format!(
                "the embeddings answer from {url} broke off: {}",
                describe(&e)
            ))
        })?;
        if !status.is_success() {
            let detail: String =
                String::from_utf8_lossy(&body).chars().take(ERROR_BODY_CHARS).collect();
            let message = format!("the embeddings endpoint {url} answered {status}: {detail}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Failure::Transient(message)
            } else {
                Failure::Permanent(message)
            });
        }

        let parsed: EmbeddingsResponse = serde_json::from_slice(&body).map_err(|e| {
            Failure::Transient(format!("the embeddings answer from {url} is not understood: {e}"))
        })?;
        in_input_order(parsed.data, batch.len()).ok_or_else(|| {
            Failure::Transient(format!(
                "the embeddings answer from {url} does not give one vector per input"
            ))
        })
    }
}

/// Puts vectors in input order by their `index`; `None` unless each input has exactly one.
fn in_input_order(items: Vec<EmbeddingItem>, expected: usize) -> Option<Vec<Vec<f32>>> {
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in items {
        let slot = slots.get_mut(item.index)?;
        if slot.replace(item.embedding).is_some() {
            return None;
        }
    }
    slots.into_iter().collect()
}

/// An HTTP client error with its causes, which say what actually failed (refused, timed out).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_string() } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_put_back_in_input_order() {
        let items = vec![
            EmbeddingItem { index: 1, embedding: vec![1.0] },
            EmbeddingItem { index: 0, embedding: vec![0.0] },
        ];
        assert_eq!(in_input_order(items, 2), Some(vec![vec![0.0], vec![1.0]]));
    }

    #[test]
    fn a_missing_or_repeated_index_is_refused() {
        let missing = vec![EmbeddingItem { index: 0, embedding: vec![0.0] }];
        assert_eq!(in_input_order(missing, 2), None);
        let repeated = vec![
            EmbeddingItem { index: 0, embedding: vec![0.0] },
            EmbeddingItem { index: 0, embedding: vec![1.0] },
        ];
        assert_eq!(in_input_order(repeated, 2), None);
    }

    #[test]
    fn the_api_key_stays_out_of_debug_output() {
        let embedder =
            Embedder::new("http://127.0.0.1:1/v1", "m", Some("sk-secret".into()), false).unwrap();
        assert!(!format!("{embedder:?}").contains("sk-secret"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(Embedder::new("ftp://host/v1", "m", None, false).is_err());
        assert!(Embedder::new("not a url", "m", None, false).is_err());
        assert!(Embedder::new("http://host/v1", " ", None, false).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_transient() {
        // Port 9 (discard) on the loopback interface has no listener here.
        let embedder = Embedder::new("http://127.0.0.1:9/v1", "m", None, false).unwrap();
        let failure = embedder.embed_texts(&["x".into()]).await.unwrap_err();
        assert_eq!(failure.kind(), "transient", "{failure}");
    }
}
