//! The embeddings client against a real model behind an OpenAI-compatible endpoint.
//!
//! `scripts/embed-server.sh up` serves all-MiniLM-L6-v2 locally and prints the variables:
//! `SLUICE_TEST_EMBEDDINGS_URL` (e.g. `http://127.0.0.1:9300/v1`), and optionally
//! `SLUICE_TEST_EMBEDDINGS_MODEL` (default `all-MiniLM-L6-v2`) and
//! `SLUICE_TEST_EMBEDDINGS_API_KEY`. Without the URL every test here is skipped, saying so,
//! unless `SLUICE_TEST_REQUIRE_EMBEDDINGS=1`, which makes a missing URL a failure (for CI).

use serde_json::json;
use sluice::extract::embed::{Embedder, MAX_BATCH};
use sluice::extract::{BlobInput, Context, run};

const MINILM_DIMENSIONS: usize = 384;

fn embedder(images: bool) -> Option<Embedder> {
    let Ok(url) = std::env::var("SLUICE_TEST_EMBEDDINGS_URL") else {
        let required = std::env::var("SLUICE_TEST_REQUIRE_EMBEDDINGS").is_ok_and(|v| v == "1");
        assert!(!required, "SLUICE_TEST_EMBEDDINGS_URL is not set but embeddings are required");
        println!("skipped: SLUICE_TEST_EMBEDDINGS_URL is not set (see scripts/embed-server.sh)");
        return None;
    };
    let model = std::env::var("SLUICE_TEST_EMBEDDINGS_MODEL")
        .unwrap_or_else(|_| "all-MiniLM-L6-v2".to_string());
    let key = std::env::var("SLUICE_TEST_EMBEDDINGS_API_KEY").ok();
    Some(Embedder::new(&url, &model, key, images).expect("the test endpoint's URL is valid"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

#[tokio::test]
async fn vectors_have_the_model_dimension_and_paraphrases_are_closest() {
    let Some(embedder) = embedder(false) else { return };
    let inputs = texts(&[
        "A man is eating a piece of bread.",
        "Someone is having some bread for lunch.",
        "The stock market fell sharply after the interest rate announcement.",
    ]);
    let vectors = embedder.embed_texts(&inputs).await.unwrap();

    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == MINILM_DIMENSIONS));
    let paraphrase = cosine(&vectors[0], &vectors[1]);
    let unrelated = cosine(&vectors[0], &vectors[2]);
    assert!(paraphrase > 0.5, "paraphrases are only {paraphrase} similar");
    assert!(
        paraphrase > unrelated + 0.3,
        "paraphrases {paraphrase} are not clearly closer than unrelated sentences {unrelated}"
    );
}

#[tokio::test]
async fn more_inputs_than_one_batch_keep_their_order() {
    let Some(embedder) = embedder(false) else { return };
    let topics = ["cooking pasta", "tax law", "orbital mechanics", "knitting", "jazz piano"];
    let inputs: Vec<String> = (0..MAX_BATCH * 2 + 7)
        .map(|i| format!("Note {i}: a short remark about {}.", topics[i % topics.len()]))
        .collect();
    let vectors = embedder.embed_texts(&inputs).await.unwrap();
    assert_eq!(vectors.len(), inputs.len());

    // Each vector must be the one its own input gets when embedded alone, including those
    // on either side of the batch boundaries.
    for i in [0, MAX_BATCH - 1, MAX_BATCH, MAX_BATCH + 1, inputs.len() - 1] {
        let alone = embedder.embed_texts(&inputs[i..=i]).await.unwrap();
        let similarity = cosine(&vectors[i], &alone[0]);
        assert!(similarity > 0.9999, "input {i} got another input's vector ({similarity})");
    }
}

#[tokio::test]
async fn the_text_extractor_embeds_every_chunk() {
    let Some(embedder) = embedder(false) else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("content.txt");
    let body = "Rivers carry sediment to the sea. ".repeat(40);
    std::fs::write(&path, &body).unwrap();
    let blob = BlobInput {
        property: "content",
        blob_type: "text",
        path: &path,
        size: body.len() as u64,
        declared_mime: Some("text/plain"),
    };
    let ctx = Context::detect(Some(embedder));
    let params = json!({"chunk_size": 400, "chunk_overlap": 40});
    let docs =
        run(&ctx, "text_extractor", "v1", params.as_object(), &json!({}), &[blob]).await.unwrap();

    assert_eq!(docs.len(), 4);
    for doc in &docs {
        let embedding = doc.fields["embedding"].as_array().unwrap();
        assert_eq!(embedding.len(), MINILM_DIMENSIONS, "{}", doc.position);
    }
}

#[tokio::test]
async fn a_refused_request_is_a_permanent_failure() {
    let Some(embedder) = embedder(false) else { return };
    let url = std::env::var("SLUICE_TEST_EMBEDDINGS_URL").unwrap();
    let unknown = Embedder::new(&url, "no-such-model", None, false).unwrap();
    let failure = unknown.embed_texts(&texts(&["hello"])).await.unwrap_err();
    assert_eq!(failure.kind(), "permanent", "{failure}");

    // The local server embeds text only, as most endpoints do, so an image sent as a data
    // URL is refused, and permanently.
    let images = Embedder::new(&url, embedder.model(), None, true).unwrap();
    let failure =
        images.embed_images(&texts(&["data:image/png;base64,iVBORw0KGgo="])).await.unwrap_err();
    assert_eq!(failure.kind(), "permanent", "{failure}");
}
