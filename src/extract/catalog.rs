//! The built-in extractors as the API lists them (`FeatureExtractorResponseModel`), and the
//! check of a namespace's choice of one.
//!
//! Parameters are checked against the Mixpeek SDK's parameter models: unknown keys are
//! allowed, known keys must have the SDK's type and range. Where sluice does not do what a
//! valid value asks for and cannot fall back honestly (YouTube captions, markdown sections,
//! precomputed vector rows), the value is refused with a message that says so.

use serde_json::{Map, Value, json};

use super::text::{self, optional_bool, optional_int, optional_str};
use crate::model::schema::MAX_PROPERTIES;

/// The only version of each built-in extractor.
pub const VERSION: &str = "v1";

/// The names of the built-in extractors.
pub const NAMES: [&str; 4] =
    ["text_extractor", "image_extractor", "multimodal_extractor", "passthrough_extractor"];

/// The built-in extractors, as `FeatureExtractorResponseModel` JSON objects.
pub fn catalog() -> Vec<Value> {
    NAMES.iter().filter_map(|name| entry(name)).collect()
}

/// One built-in extractor by id (`{name}_{version}`, e.g. `text_extractor_v1`).
pub fn describe(feature_extractor_id: &str) -> Option<Value> {
    let name = feature_extractor_id.strip_suffix(&format!("_{VERSION}"))?;
    entry(name)
}

/// Checks a namespace's extractor choice.
///
/// # Errors
///
/// A message naming what is wrong: an unknown name or version, or the first invalid
/// parameter.
pub fn check(name: &str, version: &str, params: Option<&Map<String, Value>>) -> Result<(), String> {
    if !NAMES.contains(&name) {
        return Err(format!(
            "unknown feature extractor {name:?}; the built-in extractors are {}",
            NAMES.join(", ")
        ));
    }
    if version != VERSION {
        return Err(format!(
            "feature extractor {name} has no version {version:?}; use {VERSION:?}"
        ));
    }
    let Some(params) = params else { return Ok(()) };

    if let Some(kind) = optional_str(params, "extractor_type")?
        && kind != name
    {
        return Err(format!("extractor_type must be {name:?} for {name}"));
    }
    match name {
        "text_extractor" => check_text(params),
        "image_extractor" => check_types(params, &["enable_thumbnails", "use_cdn"], &[], &[]),
        "multimodal_extractor" => check_multimodal(params),
        _ => check_passthrough(params),
    }
}

fn check_text(params: &Map<String, Value>) -> Result<(), String> {
    text::Options::from_params(params).map_err(|f| f.message().to_string())?;
    optional_int(params, "segment_length_seconds", 30, 600)?;
    check_types(
        params,
        &["extract_captions"],
        &["language", "llm_provider", "llm_model", "llm_api_key", "embedding_task"],
        &[],
    )
}

fn check_multimodal(params: &Map<String, Value>) -> Result<(), String> {
    let flags = [
        "run_transcription",
        "run_video_description",
        "run_transcription_embedding",
        "run_ocr_embedding",
        "run_description_embedding",
        "run_multimodal_embedding",
        "run_ocr",
        "enable_thumbnails",
        "use_cdn",
    ];
    let strings = [
        "description_prompt",
        "transcription_language",
        "sensitivity",
        "task_type",
        "embedding_task",
    ];
    let integers = ["time_split_interval", "silence_db_threshold", "output_dimensionality"];
    check_types(params, &flags, &strings, &integers)?;
    for key in ["scene_detection_threshold", "max_segment_duration"] {
        match params.get(key) {
            None | Some(Value::Null | Value::Number(_)) => {}
            Some(_) => return Err(format!("{key} must be a number")),
        }
    }
    Ok(())
}

fn check_passthrough(params: &Map<String, Value>) -> Result<(), String> {
    check_types(params, &["preserve_metadata"], &[], &[])?;
    if let Some(format) = optional_str(params, "row_format")?
        && !matches!(format, "jsonl" | "parquet")
    {
        return Err("row_format must be \"jsonl\" or \"parquet\"".into());
    }
    match params.get("vector_fields") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(fields)) if fields.is_empty() => Ok(()),
        Some(Value::Array(_)) => Err("vector_fields is not supported: sluice's passthrough \
             extractor stores one document per object, not one per row"
            .into()),
        Some(_) => Err("vector_fields must be a list".into()),
    }
}

/// Checks that each named key, when present and not null, has its type.
fn check_types(
    params: &Map<String, Value>,
    booleans: &[&str],
    strings: &[&str],
    integers: &[&str],
) -> Result<(), String> {
    for key in booleans {
        optional_bool(params, key)?;
    }
    for key in strings {
        optional_str(params, key)?;
    }
    for key in integers {
        match params.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
            Some(_) => return Err(format!("{key} must be an integer")),
        }
    }
    Ok(())
}

fn entry(name: &str) -> Option<Value> {
    let (description, icon, category, types, parameters, defaults, output, positions) = match name {
        "text_extractor" => (
            "Normalises each text blob, detects its language, counts its words and tokens, and \
             splits it into chunks, one document per chunk; chunks carry an embedding when \
             sluice has an embeddings endpoint.",
            "file-text",
            "text",
            vec!["text"],
            text_parameters(),
            json!({"split_by": "characters", "chunk_size": text::DEFAULT_CHUNK_SIZE,
                   "chunk_overlap": text::DEFAULT_CHUNK_OVERLAP}),
            chunk_output(),
            vec!["source_blob_property", "chunk_index"],
        ),
        "image_extractor" => (
            "Reads each image blob's format, dimensions, colour type and EXIF tags, computes a \
             64-bit perceptual difference hash, and makes a thumbnail; one document per image.",
            "image",
            "image",
            vec!["image"],
            image_parameters(),
            json!({"enable_thumbnails": true}),
            image_output(),
            vec!["source_blob_property"],
        ),
        "multimodal_extractor" => (
            "Handles every blob by its type: text and PDF text in chunks, images as the image \
             extractor does, audio and video facts (through ffprobe and ffmpeg when installed), \
             and size and media type for anything else.",
            "layers",
            "multimodal",
            vec!["text", "image", "audio", "video", "pdf", "excel"],
            multimodal_parameters(),
            json!({"enable_thumbnails": true}),
            multimodal_output(),
            vec!["source_blob_property", "chunk_index"],
        ),
        "passthrough_extractor" => (
            "Stores one document per object with the object's custom fields, its metadata and \
             references to its blobs, without reading the blobs.",
            "arrow-right",
            "utility",
            vec!["text", "image", "audio", "video", "pdf", "excel"],
            passthrough_parameters(),
            json!({"preserve_metadata": true}),
            passthrough_output(),
            vec![],
        ),
        _ => return None,
    };

    let single = types.len() == 1;
    let max_inputs: Map<String, Value> =
        types.iter().map(|t| ((*t).to_string(), json!(MAX_PROPERTIES))).collect();
    let input_properties: Map<String, Value> = types
        .iter()
        .map(|t| {
            ((*t).to_string(), json!({"type": "string", "description": format!("A {t} blob.")}))
        })
        .collect();
    Some(json!({
        "feature_extractor_name": name,
        "version": VERSION,
        "feature_extractor_id": format!("{name}_{VERSION}"),
        "description": description,
        "icon": icon,
        "category": category,
        "source": "builtin",
        "type_mode": if single { "type_specific" } else { "multimodal" },
        "expected_input_types": if single { json!({types[0]: types[0]}) } else { Value::Null },
        "input_schema": {"type": "object", "properties": input_properties},
        "output_schema": output,
        "parameter_schema": parameters,
        "supported_input_types": types,
        "max_inputs": max_inputs,
        "default_parameters": defaults,
        "required_vector_indexes": null,
        "required_payload_indexes": null,
        "position_fields": positions,
        "capabilities": ["batch"],
    }))
}

fn object_schema(title: &str, properties: Value) -> Value {
    json!({"title": title, "type": "object", "properties": properties})
}

fn text_parameters() -> Value {
    let strategies: Vec<&str> = text::SplitBy::SUPPORTED.iter().map(|(n, _)| *n).collect();
    object_schema(
        "TextExtractorParams",
        json!({
            "extractor_type": {"type": "string", "enum": ["text_extractor"]},
            "split_by": {"type": "string", "enum": strategies, "default": "characters",
                         "description": "The unit chunks are measured in."},
            "chunk_size": {"type": "integer", "minimum": 1, "maximum": text::MAX_CHUNK_SIZE,
                           "default": text::DEFAULT_CHUNK_SIZE,
                           "description": "Units per chunk."},
            "chunk_overlap": {"type": "integer", "minimum": 0,
                              "maximum": text::MAX_CHUNK_OVERLAP,
                              "default": text::DEFAULT_CHUNK_OVERLAP,
                              "description": "Units a chunk repeats from the one before; less \
                                              than chunk_size."},
            "source_type": {"type": "string", "enum": ["text"], "default": "text"},
        }),
    )
}

fn image_parameters() -> Value {
    object_schema(
        "ImageExtractorParams",
        json!({
            "extractor_type": {"type": "string", "enum": ["image_extractor"]},
            "enable_thumbnails": {"type": "boolean", "default": true},
            "use_cdn": {"type": "boolean", "default": false,
                        "description": "Accepted and ignored: sluice serves thumbnails itself."},
        }),
    )
}

fn multimodal_parameters() -> Value {
    object_schema(
        "MultimodalExtractorParams",
        json!({
            "extractor_type": {"type": "string", "enum": ["multimodal_extractor"]},
            "enable_thumbnails": {"type": "boolean", "default": true,
                                  "description": "Thumbnails of images and video keyframes."},
        }),
    )
}

fn passthrough_parameters() -> Value {
    object_schema(
        "PassthroughExtractorParams",
        json!({
            "extractor_type": {"type": "string", "enum": ["passthrough_extractor"]},
            "preserve_metadata": {"type": "boolean", "default": true,
                                  "description": "Copy the object's metadata into the document."},
        }),
    )
}

fn source_fields() -> Value {
    json!({
        "source_blob_property": {"type": "string"},
        "source_blob_type": {"type": "string"},
    })
}

fn with_source(mut properties: Value) -> Value {
    if let (Value::Object(target), Value::Object(source)) = (&mut properties, source_fields()) {
        target.extend(source);
    }
    properties
}

fn chunk_properties() -> Value {
    with_source(json!({
        "text": {"type": "string"},
        "chunk_index": {"type": "integer"},
        "chunk_count": {"type": "integer"},
        "char_start": {"type": "integer"},
        "char_end": {"type": "integer"},
        "split_by": {"type": "string"},
        "language": {"type": "string", "description": "ISO 639-1 code, or \"und\"."},
        "word_count": {"type": "integer"},
        "token_count": {"type": "integer", "description": "An estimate of subword tokens."},
        "token_count_method": {"type": "string"},
        "embedding": {"type": "array", "items": {"type": "number"},
                      "description": "Present when sluice has an embeddings endpoint."},
    }))
}

fn chunk_output() -> Value {
    object_schema("TextExtractorOutput", chunk_properties())
}

fn image_properties() -> Value {
    with_source(json!({
        "mime_type": {"type": "string"},
        "format": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "color_type": {"type": "string"},
        "bit_depth": {"type": "integer"},
        "channels": {"type": "integer"},
        "has_alpha": {"type": "boolean"},
        "exif": {"type": "object", "additionalProperties": {"type": "string"}},
        "perceptual_hash": {"type": "string", "description": "16 hex digits."},
        "perceptual_hash_algorithm": {"type": "string", "enum": ["dhash"]},
        "thumbnail_width": {"type": "integer"},
        "thumbnail_height": {"type": "integer"},
        "embedding": {"type": "array", "items": {"type": "number"}},
    }))
}

fn image_output() -> Value {
    object_schema("ImageExtractorOutput", image_properties())
}

fn multimodal_output() -> Value {
    let mut properties = chunk_properties();
    if let (Value::Object(all), Value::Object(image)) = (&mut properties, image_properties()) {
        all.extend(image);
        all.extend(
            json!({
                "size_bytes": {"type": "integer"},
                "duration_seconds": {"type": "number"},
                "sample_rate": {"type": "integer"},
                "bits_per_sample": {"type": "integer"},
                "codec": {"type": "string"},
                "audio_codec": {"type": "string"},
                "has_audio": {"type": "boolean"},
                "frame_rate": {"type": "number"},
                "bit_rate": {"type": "integer"},
                "media_probe": {"type": "string",
                                "description": "\"native\", \"ffprobe\", or why neither ran."},
                "thumbnail_status": {"type": "string"},
                "thumbnail_seconds": {"type": "number"},
                "page_count": {"type": "integer"},
                "page_start": {"type": "integer"},
                "page_end": {"type": "integer"},
                "text_status": {"type": "string"},
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
    }
    object_schema("MultimodalExtractorOutput", properties)
}

fn passthrough_output() -> Value {
    object_schema(
        "PassthroughExtractorOutput",
        json!({
            "metadata": {"type": "object"},
            "blobs": {"type": "array", "items": {"type": "object", "properties": {
                "property": {"type": "string"},
                "type": {"type": "string"},
                "blob_id": {"type": "string"},
                "url": {"type": ["string", "null"]},
                "mime_type": {"type": ["string", "null"]},
                "filename": {"type": ["string", "null"]},
                "size_bytes": {"type": ["integer", "null"]},
            }}},
        }),
    )
}
