//! Placeholder with the feature extractors' interface; replaced by the real module.
#![allow(dead_code, unused_variables)]
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub mod embed {
    #[derive(Clone)]
    pub struct Embedder;
}

#[derive(Debug, Clone)]
pub enum Failure {
    Permanent(String),
    Transient(String),
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Permanent(_) => "permanent",
            Failure::Transient(_) => "transient",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Permanent(m) | Failure::Transient(m) => f.write_str(m),
        }
    }
}

pub struct BlobInput<'a> {
    pub property: &'a str,
    pub blob_type: &'a str,
    pub path: &'a Path,
    pub size: u64,
    pub declared_mime: Option<&'a str>,
}

pub struct Context {
    pub ffprobe: Option<PathBuf>,
    pub ffmpeg: Option<PathBuf>,
    pub embedder: Option<embed::Embedder>,
    pub max_decode_bytes: u64,
}

impl Context {
    pub fn detect(embedder: Option<embed::Embedder>) -> Context {
        Context { ffprobe: None, ffmpeg: None, embedder, max_decode_bytes: 64 << 20 }
    }
}

pub struct Document {
    pub position: String,
    pub fields: Map<String, Value>,
    pub thumbnail: Option<Thumbnail>,
}

pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

pub fn verify(blob: &BlobInput) -> Result<String, Failure> {
    Ok("text/plain".into())
}

pub fn catalog() -> Vec<Value> {
    Vec::new()
}

pub fn describe(id: &str) -> Option<Value> {
    None
}

pub fn check(name: &str, version: &str, params: Option<&Map<String, Value>>) -> Result<(), String> {
    Ok(())
}

pub async fn run(
    ctx: &Context,
    name: &str,
    version: &str,
    params: Option<&Map<String, Value>>,
    object: &Value,
    blobs: &[BlobInput<'_>],
) -> Result<Vec<Document>, Failure> {
    Ok(Vec::new())
}
