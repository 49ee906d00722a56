//! Feature extractors: what batch processing turns an object's blobs into documents with.
//!
//! The module is self-contained. Its caller downloads each blob to a local file, checks it with
//! [`verify`], and hands the object to [`run`] with the extractor the namespace chose; [`run`]
//! answers the documents to store, or a [`Failure`] that says whether a retry can help.
//!
//! - [`catalog`], [`describe`] and [`check`] answer what the built-in extractors are and
//!   whether a namespace's choice of one is valid.
//! - `text` normalises, measures and chunks text; `lang` guesses its language.
//! - `image` reads an image's facts, EXIF, a perceptual hash and a thumbnail.
//! - `media` reads audio and video facts, natively for WAV and through ffprobe and ffmpeg
//!   otherwise; `pdf` counts a PDF's pages and reads its text.
//! - [`embed`] is the client of an OpenAI-compatible embeddings endpoint.
//!
//! Documents are deterministic: the same object and parameters give the same documents, in the
//! same order, with the same positions, so a rerun replaces what an earlier run stored.

mod catalog;
pub mod embed;
mod image;
mod lang;
mod media;
mod passthrough;
mod pdf;
mod text;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::fetch::sniff_mime;

pub use catalog::{catalog, check, describe};

/// The default for [`Context::max_decode_bytes`]: 64 MiB.
pub const DEFAULT_MAX_DECODE_BYTES: u64 = 64 * 1024 * 1024;

/// How many leading bytes [`verify`] reads to sniff a blob's type.
const SNIFF_BYTES: usize = 4096;

/// Why an extractor could not process an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The object itself is at fault (a corrupt image, a text that is not UTF-8, invalid
    /// parameters); running again gives the same answer.
    Permanent(String),
    /// Something around the object failed (an embeddings endpoint down, a timeout); a later
    /// retry may succeed.
    Transient(String),
}

impl Failure {
    /// `"permanent"` or `"transient"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Permanent(_) => "permanent",
            Failure::Transient(_) => "transient",
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            Failure::Permanent(m) | Failure::Transient(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Failure {}

/// One blob of the object, already downloaded to a local temporary file by the caller.
#[derive(Debug, Clone, Copy)]
pub struct BlobInput<'a> {
    /// The bucket schema field the blob fills, e.g. `"content"`.
    pub property: &'a str,
    /// The declared blob type: `text`, `image`, `audio`, `video`, `pdf` or `excel`.
    pub blob_type: &'a str,
    pub path: &'a Path,
    pub size: u64,
    pub declared_mime: Option<&'a str>,
}

/// Tools and services extractors may use.
#[derive(Debug, Clone)]
pub struct Context {
    /// The `ffprobe` binary, for audio and video facts beyond WAV headers.
    pub ffprobe: Option<PathBuf>,
    /// The `ffmpeg` binary, for video keyframe thumbnails.
    pub ffmpeg: Option<PathBuf>,
    /// The embeddings endpoint; without it documents carry no `embedding`.
    pub embedder: Option<embed::Embedder>,
    /// The largest blob an extractor reads into memory whole. Larger images, texts and PDFs
    /// are permanent failures; decoded image pixels may take up to four times this much.
    pub max_decode_bytes: u64,
}

impl Context {
    /// A context with `ffprobe` and `ffmpeg` found on `PATH` (each absent when not
    /// installed), the given embedder, and [`DEFAULT_MAX_DECODE_BYTES`].
    pub fn detect(embedder: Option<embed::Embedder>) -> Context {
        Context {
            ffprobe: find_on_path("ffprobe"),
            ffmpeg: find_on_path("ffmpeg"),
            embedder,
            max_decode_bytes: DEFAULT_MAX_DECODE_BYTES,
        }
    }
}

/// The first executable file called `name` in a directory of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// One document an extractor produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where the document sits within its object, unique per (object, extractor): e.g.
    /// `"content#chunk-3"`, `"content"` or `"object"`.
    pub position: String,
    /// The extractor's output, to put at the document's root.
    pub fields: Map<String, Value>,
    /// An image to store as a blob; the caller puts its URL into the document.
    pub thumbnail: Option<Thumbnail>,
}

/// A small preview image of a blob.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
}

impl fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thumbnail")
            .field("bytes", &self.bytes.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// Checks one blob against its declared type and answers its sniffed media type.
///
/// Only the first few kilobytes are read. An image must sniff as an image with a header the
/// decoder accepts, a PDF must carry `%PDF-` in its first kilobyte, and a text must be UTF-8
/// (or sniff as text). Audio and video are refused only when the bytes clearly are something
/// else, since many of their containers have no magic number to tell them by. Other declared
/// types are accepted as they are.
///
/// # Errors
///
/// [`Failure::Permanent`] when the bytes contradict the declared type; [`Failure::Transient`]
/// when the file cannot be read.
pub fn verify(blob: &BlobInput) -> Result<String, Failure> {
    let head = read_head(blob.path, SNIFF_BYTES)?;
    let sniffed = sniff_mime(&head);
    let declared = blob.declared_mime.map(str::to_ascii_lowercase);
    let mismatch = |what: &str| {
        let found = sniffed.unwrap_or("unrecognised binary data");
        Failure::Permanent(format!(
            "blob {:?} is declared as {what} but its content is {found}",
            blob.property
        ))
    };

    match blob.blob_type {
        "text" => verify_text(&head, sniffed, declared.as_deref()).ok_or_else(|| mismatch("text")),
        "image" => {
            let mime =
                sniffed.filter(|m| m.starts_with("image/")).ok_or_else(|| mismatch("an image"))?;
            image::check_header(blob.path, mime)?;
            Ok(mime.to_string())
        }
        "pdf" => {
            let window = &head[..head.len().min(1024)];
            let is_pdf = window.windows(5).any(|w| w == b"%PDF-");
            is_pdf.then(|| "application/pdf".to_string()).ok_or_else(|| mismatch("a PDF"))
        }
        "audio" | "video" => {
            verify_media(sniffed, declared.as_deref()).ok_or_else(|| mismatch(blob.blob_type))
        }
        "excel" => verify_spreadsheet(&head, sniffed).ok_or_else(|| mismatch("a spreadsheet")),
        _ => Ok(sniffed
            .map(String::from)
            .or(declared)
            .unwrap_or_else(|| "application/octet-stream".into())),
    }
}

/// The first `limit` bytes of a file, or all of a shorter one.
fn read_head(path: &Path, limit: usize) -> Result<Vec<u8>, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::Transient(format!("cannot open the downloaded blob: {e}")))?;
    let mut head = Vec::with_capacity(limit);
    file.take(limit as u64)
        .read_to_end(&mut head)
        .map_err(|e| Failure::Transient(format!("cannot read the downloaded blob: {e}")))?;
    Ok(head)
}

/// Text sniffs as text, or is UTF-8 (a cut-off character at the end of the sample is fine)
/// that sniffs as nothing else. A declared textual media type is kept, since sniffing cannot
/// tell JSON or CSV from plain text.
fn verify_text(head: &[u8], sniffed: Option<&str>, declared: Option<&str>) -> Option<String> {
    let utf8 = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    let accepted = match sniffed {
        Some(mime) => mime.starts_with("text/"),
        None => utf8,
    };
    if !accepted {
        return None;
    }
    let textual = |m: &&str| {
        m.starts_with("text/")
            || matches!(*m, "application/json" | "application/xml" | "application/x-ndjson")
    };
    Some(declared.filter(textual).unwrap_or("text/plain").to_string())
}

/// Audio and video: the sniffed type must not be an image, a document or text. An
/// unrecognised container is accepted with the declared type, for ffprobe to judge.
fn verify_media(sniffed: Option<&str>, declared: Option<&str>) -> Option<String> {
    match sniffed {
        Some(m) if m.starts_with("audio/") || m.starts_with("video/") => Some(m.to_string()),
        Some("application/ogg") => Some("application/ogg".into()),
        Some(_) => None,
        None => Some(declared.unwrap_or("application/octet-stream").to_string()),
    }
}

/// Spreadsheets: Office Open XML or OpenDocument (ZIP), legacy Excel (an OLE compound file),
/// or delimited text.
fn verify_spreadsheet(head: &[u8], sniffed: Option<&str>) -> Option<String> {
    const OLE_MAGIC: &[u8] = &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
    if head.starts_with(OLE_MAGIC) {
        return Some("application/vnd.ms-excel".into());
    }
    match sniffed {
        Some(
            m @ ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            | "application/vnd.oasis.opendocument.spreadsheet"
            | "application/zip"),
        ) => Some(m.to_string()),
        Some("text/plain") => Some("text/csv".into()),
        _ => None,
    }
}

/// Runs one extractor over one object and answers its documents, in a deterministic order.
///
/// `object` is the object's record (root custom fields, `metadata`, `blobs`, `object_id`, ...);
/// `blobs` are its downloaded blobs, which the caller has already checked with [`verify`].
///
/// # Errors
///
/// [`Failure::Permanent`] for an unknown extractor, invalid parameters or a blob that cannot
/// be processed; [`Failure::Transient`] when a tool or the embeddings endpoint failed in a way
/// a retry may fix.
pub async fn run(
    ctx: &Context,
    name: &str,
    version: &str,
    params: Option<&Map<String, Value>>,
    object: &Value,
    blobs: &[BlobInput<'_>],
) -> Result<Vec<Document>, Failure> {
    check(name, version, params).map_err(Failure::Permanent)?;
    let empty = Map::new();
    let params = params.unwrap_or(&empty);

    match name {
        "text_extractor" => {
            let options = text::Options::from_params(params)?;
            let texts = blobs.iter().filter(|b| b.blob_type == "text");
            let mut documents = Vec::new();
            for blob in texts {
                documents.extend(text::extract_blob(ctx, blob, &options).await?);
            }
            embed_text_documents(ctx, &mut documents).await?;
            Ok(documents)
        }
        "image_extractor" => {
            let options = image::Options::from_params(params);
            let mut documents = Vec::new();
            for blob in blobs.iter().filter(|b| b.blob_type == "image") {
                documents.push(image::extract_blob(ctx, blob, &options).await?);
            }
            Ok(documents)
        }
        "multimodal_extractor" => multimodal(ctx, params, blobs).await,
        "passthrough_extractor" => Ok(vec![passthrough::document(object, params)]),
        _ => Err(Failure::Permanent(format!("unknown feature extractor {name:?}"))),
    }
}

/// Each blob by its type: text and PDF text in chunks, images and media as one document each,
/// and basic facts for anything else.
async fn multimodal(
    ctx: &Context,
    params: &Map<String, Value>,
    blobs: &[BlobInput<'_>],
) -> Result<Vec<Document>, Failure> {
    let text_options = text::Options::default();
    let image_options = image::Options::from_params(params);
    let mut documents = Vec::new();
    for blob in blobs {
        match blob.blob_type {
            "text" => documents.extend(text::extract_blob(ctx, blob, &text_options).await?),
            "pdf" => documents.extend(pdf::extract_blob(ctx, blob, &text_options).await?),
            "image" => documents.push(image::extract_blob(ctx, blob, &image_options).await?),
            "audio" => documents.push(media::extract_audio(ctx, blob).await?),
            "video" => documents.push(media::extract_video(ctx, blob, &image_options).await?),
            _ => documents.push(basic_facts(blob)?),
        }
    }
    embed_text_documents(ctx, &mut documents).await?;
    Ok(documents)
}

/// Size and media type: all that is said about a blob no extractor reads, e.g. a spreadsheet.
fn basic_facts(blob: &BlobInput) -> Result<Document, Failure> {
    let mime = verify(blob)?;
    let mut fields = blob_fields(blob);
    fields.insert("mime_type".into(), json!(mime));
    fields.insert("size_bytes".into(), json!(blob.size));
    Ok(Document { position: blob.property.to_string(), fields, thumbnail: None })
}

/// The fields every document made from a blob carries: where it comes from.
fn blob_fields(blob: &BlobInput) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("source_blob_property".into(), json!(blob.property));
    fields.insert("source_blob_type".into(), json!(blob.blob_type));
    fields
}

/// Embeds the `text` of every document that has one, in one call, when an embedder is set.
async fn embed_text_documents(ctx: &Context, documents: &mut [Document]) -> Result<(), Failure> {
    let Some(embedder) = &ctx.embedder else { return Ok(()) };
    let with_text: Vec<usize> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.fields.get("text").and_then(Value::as_str).is_some_and(|t| !t.is_empty())
        })
        .map(|(i, _)| i)
        .collect();
    if with_text.is_empty() {
        return Ok(());
    }

    let inputs: Vec<String> = with_text
        .iter()
        .map(|&i| documents[i].fields["text"].as_str().unwrap_or_default().to_string())
        .collect();
    let vectors = embedder.embed_texts(&inputs).await?;
    for (&i, vector) in with_text.iter().zip(vectors) {
        documents[i].fields.insert("embedding".into(), json!(vector));
    }
    Ok(())
}

/// A reader of a whole blob for decoding, which refuses a blob larger than the context allows.
/// It does blocking file I/O, so it is meant to run inside [`blocking`].
fn bounded_reader(
    ctx: &Context,
    blob: &BlobInput,
    what: &'static str,
) -> impl FnOnce() -> Result<Vec<u8>, Failure> + Send + 'static {
    let path = blob.path.to_path_buf();
    let property = blob.property.to_string();
    let limit = ctx.max_decode_bytes;
    move || {
        let unreadable =
            |e: std::io::Error| Failure::Transient(format!("cannot read the downloaded blob: {e}"));
        let size = std::fs::metadata(&path).map_err(unreadable)?.len();
        if size > limit {
            return Err(Failure::Permanent(format!(
                "{what} blob {property:?} is {size} bytes, more than the {limit} bytes sluice decodes"
            )));
        }
        std::fs::read(&path).map_err(unreadable)
    }
}

/// Runs CPU-heavy work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::Transient(format!("an extraction task stopped: {e}")))?
}

#[cfg(test)]
mod tests;
