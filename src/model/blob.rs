//! One entry of an object's `blobs`: which schema property it fills and where its bytes
//! come from.
//!
//! A blob carries either `data` or an `upload_id`. `data` takes five shapes on the wire:
//! a URL, a `data:` URI, `{"base64", "mime_type", "filename"}`, `{"url"}`, and for text
//! blobs the text itself (`"…"` or `{"text"}`). [`parse_blob`] turns all of them into one
//! [`BlobData`], checked against the bucket schema, with every error naming its path
//! under `blobs[<index>]`.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use super::FieldError;
use super::schema::{
    BucketSchema, FieldType, json_kind, optional_bool, optional_string, present, type_names,
};

/// The longest URL accepted in `data`, in characters.
pub const MAX_URL_LEN: usize = 8192;

/// The longest `property` name, as the SDK declares it.
pub const MAX_PROPERTY_LEN: usize = 100;

/// The longest `filename` of an inline blob, in characters.
pub const MAX_FILENAME_LEN: usize = 255;

/// URL schemes a blob may be fetched from.
pub const URL_SCHEMES: [&str; 5] = ["http", "https", "s3", "gs", "az"];

/// The shortest plain string that the base64 look-alike check considers. Shorter strings
/// are too often ordinary words that happen to decode ("file" decodes to "~)^").
const MIN_BASE64_LOOKALIKE_LEN: usize = 8;

/// Standard alphabet; the trailing `=` padding may be present or left out.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where a blob's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobData {
    /// A URL to fetch, with a scheme from [`URL_SCHEMES`].
    Url { url: String },
    /// Decoded bytes sent in the request, from a `data:` URI or a `{"base64"}` object.
    Inline { bytes: Vec<u8>, mime_type: Option<String>, filename: Option<String> },
    /// The text of a text blob, sent as a plain string or `{"text"}`.
    Text { text: String },
    /// A confirmed presigned upload (`upl_…`).
    Upload { upload_id: String },
}

/// A blob of an object create request, validated against the bucket schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBlob {
    pub property: String,
    pub field_type: FieldType,
    pub data: BlobData,
    pub key_prefix: Option<String>,
    /// The SHA-256 the client declared, as 64 lowercase hex digits without the `sha256:`
    /// prefix.
    pub checksum: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub canonicalize_source: Option<bool>,
    pub force_remirror: Option<bool>,
}

/// Parses `blobs[index]` of an object create request.
///
/// Inline content (decoded base64 or text) larger than `max_inline_bytes` is refused, so
/// that large files go through presigned uploads. Explicit `null`s read as absent and
/// unknown keys are ignored, as the rest of the API does.
///
/// # Errors
///
/// The first rule the blob breaks, named by its path, e.g. `blobs[0].data`.
pub fn parse_blob(
    blob: &Value,
    index: usize,
    schema: &BucketSchema,
    max_inline_bytes: usize,
) -> Result<ParsedBlob, FieldError> {
    let path = format!("blobs[{index}]");
    let object = blob.as_object().ok_or_else(|| FieldError::new(&path, "must be an object"))?;

    let (property, schema_type) = parse_property(object, &path, schema)?;
    let field_type = parse_type(object, &path, &property, schema_type)?;
    let data = parse_source(object, &path, field_type, max_inline_bytes)?;

    Ok(ParsedBlob {
        property,
        field_type,
        data,
        key_prefix: optional_string(object, "key_prefix", &path)?,
        checksum: parse_checksum(object, &path)?,
        metadata: optional_object(object, "metadata", &path)?,
        canonicalize_source: optional_bool(object, "canonicalize_source", &path)?,
        force_remirror: optional_bool(object, "force_remirror", &path)?,
    })
}

/// Guesses a MIME type from the extension of a file name or URL path.
pub fn guess_mime(filename_or_url: &str) -> Option<&'static str> {
    let path = filename_or_url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit(['/', '\\']).next().unwrap_or_default();
    let (_, extension) = name.rsplit_once('.')?;

    let mime = match extension.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xls" => "application/vnd.ms-excel",
        _ => return None,
    };
    Some(mime)
}

/// The blob type a MIME type belongs to, e.g. `image/png` → image. Parameters such as
/// `; charset=utf-8` are ignored and the match is case-insensitive.
///
/// `text/csv` maps to text: a CSV sent as a file is text unless the schema says
/// otherwise.
pub fn field_type_for_mime(mime: &str) -> Option<FieldType> {
    let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (top, sub) = essence.split_once('/')?;

    match (top, sub) {
        (_, "") => None,
        ("image", _) => Some(FieldType::Image),
        ("video", _) => Some(FieldType::Video),
        ("audio", _) => Some(FieldType::Audio),
        ("text", _) => Some(FieldType::Text),
        ("application", "pdf") => Some(FieldType::Pdf),
        ("application", sub) if is_spreadsheet(sub) => Some(FieldType::Excel),
        _ => None,
    }
}

fn is_spreadsheet(subtype: &str) -> bool {
    matches!(
        subtype,
        "vnd.ms-excel"
            | "vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            | "vnd.ms-excel.sheet.macroenabled.12"
            | "vnd.ms-excel.sheet.binary.macroenabled.12"
            | "vnd.oasis.opendocument.spreadsheet"
    )
}

/// Reads `property`, which must name a blob property of the schema; returns it with its
/// type.
fn parse_property(
    object: &Map<String, Value>,
    path: &str,
    schema: &BucketSchema,
) -> Result<(String, FieldType), FieldError> {
    let path = format!("{path}.property");
    let name = required_string(object, "property", &path)?;
    if name.is_empty() {
        return Err(FieldError::new(path, "must not be empty"));
    }
    if name.chars().count() > MAX_PROPERTY_LEN {
        let message = format!("must be at most {MAX_PROPERTY_LEN} characters");
        return Err(FieldError::new(path, message));
    }

    let Some(field) = schema.property(name) else {
        let message = format!("property \"{name}\" is not in the bucket schema");
        return Err(FieldError::new(path, message));
    };
    if !field.field_type.is_blob() {
        let message = format!(
            "property \"{name}\" is a {} property, not a blob property; send its value at the \
             object root",
            field.field_type
        );
        return Err(FieldError::new(path, message));
    }
    Ok((name.to_owned(), field.field_type))
}

/// Reads `type`, which must be a blob type equal to the schema's type for the property.
fn parse_type(
    object: &Map<String, Value>,
    path: &str,
    property: &str,
    schema_type: FieldType,
) -> Result<FieldType, FieldError> {
    let path = format!("{path}.type");
    let name = required_string(object, "type", &path)?;
    let blob_types = FieldType::ALL.into_iter().filter(|t| t.is_blob());
    let expected = type_names(blob_types);

    let field_type = match FieldType::parse(name) {
        Some(field_type) if field_type.is_blob() => field_type,
        Some(_) => {
            let message = format!("\"{name}\" is not a blob type; expected one of {expected}");
            return Err(FieldError::new(path, message));
        }
        None => {
            let message = format!("unknown blob type \"{name}\"; expected one of {expected}");
            return Err(FieldError::new(path, message));
        }
    };

    if field_type != schema_type {
        let message = format!(
            "type \"{field_type}\" does not match property \"{property}\", which the bucket \
             schema declares as \"{schema_type}\""
        );
        return Err(FieldError::new(path, message));
    }
    Ok(field_type)
}

/// Reads exactly one of `data` and `upload_id`.
fn parse_source(
    object: &Map<String, Value>,
    path: &str,
    field_type: FieldType,
    limit: usize,
) -> Result<BlobData, FieldError> {
    match (present(object, "data"), present(object, "upload_id")) {
        (Some(data), None) => parse_data(data, &format!("{path}.data"), field_type, limit),
        (None, Some(upload_id)) => parse_upload_id(upload_id, &format!("{path}.upload_id")),
        (Some(_), Some(_)) => Err(FieldError::new(path, "send data or upload_id, not both")),
        (None, None) => Err(FieldError::new(path, "one of data or upload_id is required")),
    }
}

fn parse_upload_id(value: &Value, path: &str) -> Result<BlobData, FieldError> {
    let Value::String(upload_id) = value else {
        return Err(FieldError::new(path, "must be a string"));
    };

    let tail = upload_id.strip_prefix("upl_").unwrap_or_default();
    let valid = !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(FieldError::new(path, "must match ^upl_[a-zA-Z0-9_-]+$"));
    }
    Ok(BlobData::Upload { upload_id: upload_id.clone() })
}

fn parse_data(
    data: &Value,
    path: &str,
    field_type: FieldType,
    limit: usize,
) -> Result<BlobData, FieldError> {
    match data {
        Value::String(text) => parse_data_string(text, path, field_type, limit),
        Value::Object(map) => parse_data_object(map, path, field_type, limit),
        other => {
            let message = format!("must be a string or an object, got {}", json_kind(other));
            Err(FieldError::new(path, message))
        }
    }
}

/// Reads a string `data`: a URL, a `data:` URI, or (text blobs only) the text itself.
///
/// For a text blob only a string that starts with `<scheme>://` is a URL, so prose such
/// as "Note: call back" stays text; for other blobs any `<scheme>:` prefix is read as a
/// URL so that `file:/etc/passwd` gets a clear refusal.
fn parse_data_string(
    text: &str,
    path: &str,
    field_type: FieldType,
    limit: usize,
) -> Result<BlobData, FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(path, "must not be empty"));
    }
    let is_text = field_type == FieldType::Text;

    if looks_like_data_uri(text) || (!is_text && has_prefix_ignore_case(text, "data:")) {
        return parse_data_uri(text, path, limit);
    }
    if starts_with_authority(text) || (!is_text && split_scheme(text).is_some()) {
        return Ok(BlobData::Url { url: parse_url(text, path)? });
    }

    if is_text {
        return inline_text(text, path, limit);
    }
    let message = format!(
        "must be a URL ({}), a data:<mime>;base64,<payload> URI, or an object with base64 or url",
        URL_SCHEMES.join(", ")
    );
    Err(FieldError::new(path, message))
}

/// Reads an object `data`: exactly one of `base64`, `url` and (text blobs only) `text`.
fn parse_data_object(
    map: &Map<String, Value>,
    path: &str,
    field_type: FieldType,
    limit: usize,
) -> Result<BlobData, FieldError> {
    let forms: Vec<&str> =
        ["base64", "url", "text"].into_iter().filter(|key| present(map, key).is_some()).collect();
    let is_text = field_type == FieldType::Text;

    match forms.as_slice() {
        ["base64"] => parse_base64_object(map, path, limit),
        ["url"] => {
            let url_path = format!("{path}.url");
            let url = required_string(map, "url", &url_path)?;
            Ok(BlobData::Url { url: parse_url(url, &url_path)? })
        }
        ["text"] if is_text => {
            let text_path = format!("{path}.text");
            inline_text(required_string(map, "text", &text_path)?, &text_path, limit)
        }
        ["text"] => {
            let message = format!("is only accepted for text blobs, not {field_type} blobs");
            Err(FieldError::new(format!("{path}.text"), message))
        }
        [] if is_text => Err(FieldError::new(path, "must contain one of base64, url or text")),
        [] => Err(FieldError::new(path, "must contain base64 or url")),
        several => {
            let message = format!("must contain only one of {}", several.join(", "));
            Err(FieldError::new(path, message))
        }
    }
}

fn parse_base64_object(
    map: &Map<String, Value>,
    path: &str,
    limit: usize,
) -> Result<BlobData, FieldError> {
    let payload_path = format!("{path}.base64");
    let payload = required_string(map, "base64", &payload_path)?;
    let bytes = decode_base64(payload, &payload_path, limit)?;

    let mime_type = optional_string(map, "mime_type", path)?;
    if let Some(mime) = &mime_type {
        check_mime(mime)
            .map_err(|message| FieldError::new(format!("{path}.mime_type"), message))?;
    }
    let filename = optional_string(map, "filename", path)?;
    if let Some(name) = &filename {
        check_filename(name)
            .map_err(|message| FieldError::new(format!("{path}.filename"), message))?;
    }

    Ok(BlobData::Inline { bytes, mime_type, filename })
}

/// Reads `data:<mime>[;params];base64,<payload>`. The MIME type is kept without
/// parameters, lowercased, and is `None` when the URI leaves it out.
fn parse_data_uri(uri: &str, path: &str, limit: usize) -> Result<BlobData, FieldError> {
    const FORM: &str = "data:<mime>;base64,<payload>";
    let rest = uri.get("data:".len()..).unwrap_or_default();
    let Some((header, payload)) = rest.split_once(',') else {
        return Err(FieldError::new(path, format!("is not a data URI of the form {FORM}")));
    };

    let media = match header.rsplit_once(';') {
        Some((media, encoding)) if encoding.eq_ignore_ascii_case("base64") => media,
        _ => {
            let message = format!("only base64 data URIs are supported ({FORM})");
            return Err(FieldError::new(path, message));
        }
    };
    let essence = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let mime_type = if essence.is_empty() { None } else { Some(essence) };
    if let Some(mime) = &mime_type {
        check_mime(mime).map_err(|message| FieldError::new(path, message))?;
    }

    let bytes = decode_base64(payload, path, limit)?;
    Ok(BlobData::Inline { bytes, mime_type, filename: None })
}

/// Decodes standard base64, tolerating missing padding and line breaks, within the size
/// limit. The size is worked out from the payload before decoding, so an oversized
/// payload is refused without allocating its bytes.
fn decode_base64(payload: &str, path: &str, limit: usize) -> Result<Vec<u8>, FieldError> {
    let compact: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let size = compact.trim_end_matches('=').len() * 3 / 4;
    if size > limit {
        return Err(FieldError::new(path, too_large(size, limit)));
    }

    let bytes = BASE64
        .decode(compact.as_bytes())
        .map_err(|_| FieldError::new(path, "is not valid base64 (standard alphabet)"))?;
    if bytes.is_empty() {
        return Err(FieldError::new(path, "decodes to no bytes"));
    }
    Ok(bytes)
}

/// Accepts the text of a text blob. A string that is itself base64 of readable text is
/// refused, as upstream does, because the client almost certainly meant the decoded text.
fn inline_text(text: &str, path: &str, limit: usize) -> Result<BlobData, FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(path, "must not be empty"));
    }
    if text.len() > limit {
        return Err(FieldError::new(path, too_large(text.len(), limit)));
    }
    if is_base64_of_text(text) {
        let message = "looks like base64-encoded text; send the text itself, a \
                       data:text/plain;base64,<payload> URI, or {\"base64\": …, \"mime_type\": \
                       \"text/plain\"}";
        return Err(FieldError::new(path, message));
    }
    Ok(BlobData::Text { text: text.to_owned() })
}

fn too_large(size: usize, limit: usize) -> String {
    format!(
        "inline content is {size} bytes, over the {limit}-byte limit; upload larger files \
         through POST /v1/buckets/{{bucket}}/uploads"
    )
}

/// Whether a string is canonical base64 that decodes to readable ASCII text: printable
/// characters and whitespace, at least four fifths of them letters, digits or whitespace.
fn is_base64_of_text(text: &str) -> bool {
    if text.len() < MIN_BASE64_LOOKALIKE_LEN || !text.len().is_multiple_of(4) {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text) else {
        return false;
    };

    let printable = decoded.iter().all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    let wordy = decoded.iter().filter(|b| b.is_ascii_alphanumeric() || b.is_ascii_whitespace());
    printable && wordy.count() * 5 >= decoded.len() * 4
}

/// Checks a URL for `data`: an allowed scheme, `//`, a host (or bucket), no whitespace,
/// and a bounded length. Returns it unchanged.
fn parse_url(url: &str, path: &str) -> Result<String, FieldError> {
    if url.chars().count() > MAX_URL_LEN {
        let message = format!("URL is longer than {MAX_URL_LEN} characters");
        return Err(FieldError::new(path, message));
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return Err(FieldError::new(path, "is not a URL"));
    };

    let scheme_lower = scheme.to_ascii_lowercase();
    if !URL_SCHEMES.contains(&scheme_lower.as_str()) {
        let message = format!(
            "URL scheme \"{scheme}\" is not supported; use one of {}",
            URL_SCHEMES.join(", ")
        );
        return Err(FieldError::new(path, message));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FieldError::new(path, "URL must not contain whitespace"));
    }

    let host = rest.strip_prefix("//").map(host_of).unwrap_or_default();
    if host.is_empty() {
        let what = if scheme_lower.starts_with("http") { "host" } else { "bucket" };
        let message = format!("URL has no {what}; expected {scheme_lower}://<{what}>/…");
        return Err(FieldError::new(path, message));
    }
    Ok(url.to_owned())
}

/// The host of a URL's authority part (after `//`), without user info or port.
fn host_of(after_slashes: &str) -> &str {
    let authority = after_slashes.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();

    if let Some(bracketed) = host_port.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    host_port.split(':').next().unwrap_or_default()
}

/// Splits `<scheme>:<rest>` when the part before the first colon is a valid URI scheme.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

fn starts_with_authority(text: &str) -> bool {
    split_scheme(text).is_some_and(|(_, rest)| rest.starts_with("//"))
}

/// Whether a string starts with `data:` and a header without whitespace before a comma.
/// Text such as "Data: see below" is not a data URI.
fn looks_like_data_uri(text: &str) -> bool {
    if !has_prefix_ignore_case(text, "data:") {
        return false;
    }
    let rest = text.get("data:".len()..).unwrap_or_default();
    rest.split_once(',').is_some_and(|(header, _)| !header.chars().any(char::is_whitespace))
}

fn has_prefix_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn check_mime(mime: &str) -> Result<(), String> {
    let valid = mime.split_once('/').is_some_and(|(top, sub)| {
        !top.is_empty() && !sub.is_empty() && !mime.chars().any(|c| c.is_whitespace())
    });
    if valid { Ok(()) } else { Err(format!("\"{mime}\" is not a MIME type such as image/png")) }
}

fn check_filename(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > MAX_FILENAME_LEN {
        return Err(format!("must be at most {MAX_FILENAME_LEN} characters"));
    }
    if name.contains(['/', '\\']) || name.contains("..") {
        return Err("must be a plain file name without '/', '\\' or '..'".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Reads `checksum`: `sha256:<64 hex>` or bare 64 hex digits, returned as lowercase hex.
fn parse_checksum(object: &Map<String, Value>, path: &str) -> Result<Option<String>, FieldError> {
    let Some(checksum) = optional_string(object, "checksum", path)? else {
        return Ok(None);
    };
    let path = format!("{path}.checksum");

    let hex = match checksum.split_once(':') {
        None => checksum.as_str(),
        Some((algorithm, hex)) if algorithm.eq_ignore_ascii_case("sha256") => hex,
        Some((algorithm, _)) => {
            let message = format!("algorithm \"{algorithm}\" is not supported; use sha256");
            return Err(FieldError::new(path, message));
        }
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FieldError::new(path, "must be sha256:<64 hex digits> or 64 hex digits"));
    }
    Ok(Some(hex.to_ascii_lowercase()))
}

/// Reads a required string at `key`; errors name `path`, the key's full path.
fn required_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, FieldError> {
    match present(object, key) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(FieldError::new(path, "must be a string")),
        None => Err(FieldError::new(path, "is required")),
    }
}

fn optional_object(
    object: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<Map<String, Value>>, FieldError> {
    match present(object, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(_) => Err(FieldError::new(format!("{parent}.{key}"), "must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMIT: usize = 1024;

    fn schema() -> BucketSchema {
        let value = json!({"properties": {
            "clip": {"type": "video"},
            "cover": {"type": "image"},
            "notes": {"type": "text"},
            "report": {"type": "pdf"},
            "title": {"type": "string"}
        }});
        match BucketSchema::parse(&value) {
            Ok(schema) => schema,
            Err(err) => panic!("schema rejected: {err:?}"),
        }
    }

    fn parse(blob: Value) -> Result<ParsedBlob, FieldError> {
        parse_blob(&blob, 0, &schema(), LIMIT)
    }

    fn parsed(blob: Value) -> ParsedBlob {
        match parse(blob) {
            Ok(parsed) => parsed,
            Err(err) => panic!("blob rejected: {err:?}"),
        }
    }

    fn rejection(blob: Value) -> FieldError {
        match parse(blob) {
            Ok(parsed) => panic!("blob accepted: {parsed:?}"),
            Err(err) => err,
        }
    }

    fn data(property: &str, field_type: &str, data: Value) -> Value {
        json!({"property": property, "type": field_type, "data": data})
    }

    fn image_data(value: Value) -> Value {
        data("cover", "image", value)
    }

    fn text_data(value: Value) -> Value {
        data("notes", "text", value)
    }

    fn url(value: &str) -> BlobData {
        BlobData::Url { url: value.to_owned() }
    }

    #[test]
    fn accepts_a_url_with_every_allowed_scheme() {
        for link in [
            "https://example.com/a.jpg",
            "http://user:pw@example.com:8080/a.jpg?x=1",
            "HTTPS://EXAMPLE.COM/A.JPG",
            "s3://bucket/key/a.jpg",
            "gs://bucket/a.jpg",
            "az://container/a.jpg",
            "http://[::1]:8080/a.jpg",
        ] {
            assert_eq!(parsed(image_data(json!(link))).data, url(link));
        }
    }

    #[test]
    fn refuses_other_url_schemes_clearly() {
        for (link, scheme) in [
            ("file:///etc/passwd", "file"),
            ("ftp://host/a.jpg", "ftp"),
            ("file:/etc/passwd", "file"),
        ] {
            let err = rejection(image_data(json!(link)));
            assert_eq!(err.field, "blobs[0].data");
            assert_eq!(
                err.message,
                format!(
                    "URL scheme \"{scheme}\" is not supported; use one of http, https, s3, gs, az"
                )
            );
        }

        let err = rejection(text_data(json!("file:///etc/passwd")));
        assert!(err.message.starts_with("URL scheme \"file\""), "{}", err.message);
    }

    #[test]
    fn requires_a_host_or_bucket() {
        let cases = [
            ("https://", "URL has no host; expected https://<host>/…"),
            ("https:example.com/a.jpg", "URL has no host; expected https://<host>/…"),
            ("s3:///key", "URL has no bucket; expected s3://<bucket>/…"),
            ("https://user@:80/a", "URL has no host; expected https://<host>/…"),
        ];
        for (link, message) in cases {
            assert_eq!(
                rejection(image_data(json!(link))),
                FieldError::new("blobs[0].data", message)
            );
        }
    }

    #[test]
    fn bounds_url_length_and_refuses_whitespace() {
        let head = "https://example.com/";
        let longest = format!("{head}{}", "a".repeat(MAX_URL_LEN - head.len()));
        assert_eq!(parsed(image_data(json!(longest))).data, url(&longest));

        let err = rejection(image_data(json!(format!("{longest}a"))));
        assert_eq!(err.message, "URL is longer than 8192 characters");

        let err = rejection(image_data(json!("https://example.com/a b.jpg")));
        assert_eq!(err.message, "URL must not contain whitespace");
    }

    #[test]
    fn decodes_a_data_uri() {
        let blob = parsed(image_data(json!("data:image/png;base64,aGVsbG8=")));
        let expected = BlobData::Inline {
            bytes: b"hello".to_vec(),
            mime_type: Some("image/png".into()),
            filename: None,
        };
        assert_eq!(blob.data, expected);

        let blob = parsed(image_data(json!("DATA:Image/PNG;name=x.png;base64,aGVsbG8")));
        assert_eq!(blob.data, expected);

        let blob = parsed(image_data(json!("data:;base64,aGVs\nbG8=")));
        let BlobData::Inline { bytes, mime_type, .. } = blob.data else {
            panic!("not inline: {:?}", blob.data);
        };
        assert_eq!((bytes.as_slice(), mime_type), (b"hello".as_slice(), None));
    }

    #[test]
    fn refuses_malformed_data_uris() {
        let cases = [
            ("data:image/png;base64,@@@@", "is not valid base64 (standard alphabet)"),
            ("data:image/png;base64,", "decodes to no bytes"),
            (
                "data:image/png,hello",
                "only base64 data URIs are supported (data:<mime>;base64,<payload>)",
            ),
            ("data:image/png;base64", "is not a data URI of the form data:<mime>;base64,<payload>"),
            ("data:png;base64,aGVsbG8=", "\"png\" is not a MIME type such as image/png"),
        ];
        for (uri, message) in cases {
            assert_eq!(
                rejection(image_data(json!(uri))),
                FieldError::new("blobs[0].data", message)
            );
        }
    }

    #[test]
    fn decodes_a_base64_object() {
        let value =
            json!({"base64": "JVBERi0=", "mime_type": "application/pdf", "filename": "a.pdf"});
        let expected = BlobData::Inline {
            bytes: b"%PDF-".to_vec(),
            mime_type: Some("application/pdf".into()),
            filename: Some("a.pdf".into()),
        };
        assert_eq!(parsed(data("report", "pdf", value)).data, expected);

        let value = json!({"base64": "JVBERi0", "mime_type": null, "filename": null, "url": null});
        let expected =
            BlobData::Inline { bytes: b"%PDF-".to_vec(), mime_type: None, filename: None };
        assert_eq!(parsed(data("report", "pdf", value)).data, expected);
    }

    #[test]
    fn refuses_bad_base64_objects() {
        let err = rejection(image_data(json!({"base64": "not base64!"})));
        assert_eq!(
            err,
            FieldError::new("blobs[0].data.base64", "is not valid base64 (standard alphabet)")
        );

        let err = rejection(image_data(json!({"base64": 12})));
        assert_eq!(err, FieldError::new("blobs[0].data.base64", "must be a string"));

        let err = rejection(image_data(json!({"base64": "aGk=", "mime_type": "image"})));
        assert_eq!(err.field, "blobs[0].data.mime_type");

        for name in ["../a.png", "dir/a.png", "dir\\a.png", "a..png", ""] {
            let err = rejection(image_data(json!({"base64": "aGk=", "filename": name})));
            assert_eq!(err.field, "blobs[0].data.filename", "{name}");
        }
        let err = rejection(image_data(json!({"base64": "aGk=", "filename": "a\u{0}.png"})));
        assert_eq!(err.message, "must not contain control characters");
    }

    #[test]
    fn accepts_a_url_object() {
        let link = "s3://bucket/clip.mp4";
        assert_eq!(parsed(data("clip", "video", json!({"url": link}))).data, url(link));

        let err = rejection(data("clip", "video", json!({"url": "ftp://host/clip.mp4"})));
        assert_eq!(err.field, "blobs[0].data.url");
    }

    #[test]
    fn requires_exactly_one_form_in_a_data_object() {
        let err = rejection(image_data(json!({"url": "https://a.b/c", "base64": "aGk="})));
        assert_eq!(err, FieldError::new("blobs[0].data", "must contain only one of base64, url"));

        let err = rejection(image_data(json!({"mime_type": "image/png"})));
        assert_eq!(err, FieldError::new("blobs[0].data", "must contain base64 or url"));

        let err = rejection(text_data(json!({})));
        assert_eq!(err.message, "must contain one of base64, url or text");

        let err = rejection(image_data(json!({"text": "hello"})));
        assert_eq!(
            err,
            FieldError::new(
                "blobs[0].data.text",
                "is only accepted for text blobs, not image blobs"
            )
        );
    }

    #[test]
    fn reads_inline_text_for_text_blobs_only() {
        let text = |t: &str| BlobData::Text { text: t.to_owned() };
        for plain in
            ["The quarterly report is due Friday.", "Note: call back", "file", "Data: see below"]
        {
            assert_eq!(parsed(text_data(json!(plain))).data, text(plain));
        }
        assert_eq!(parsed(text_data(json!({"text": "hello"}))).data, text("hello"));
        assert_eq!(
            parsed(text_data(json!("https://a.b/notes.txt"))).data,
            url("https://a.b/notes.txt")
        );

        let blob = parsed(text_data(json!("data:text/plain;base64,aGVsbG8=")));
        assert!(matches!(blob.data, BlobData::Inline { .. }), "{:?}", blob.data);

        let err = rejection(image_data(json!("a photo of a cat")));
        assert_eq!(err.field, "blobs[0].data");
        assert!(
            err.message.starts_with("must be a URL (http, https, s3, gs, az)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn refuses_base64_sent_as_inline_text() {
        let err = rejection(text_data(json!("SGVsbG8gd29ybGQ=")));
        assert_eq!(err.field, "blobs[0].data");
        assert!(err.message.starts_with("looks like base64-encoded text"), "{}", err.message);

        let err = rejection(text_data(json!({"text": "VGhpcyBpcyB0aGUgd2F5"})));
        assert_eq!(err.field, "blobs[0].data.text");

        for plain in ["Weighted", "demanded", "ZmlsZQ==-ish"] {
            assert!(parse(text_data(json!(plain))).is_ok(), "{plain}");
        }
    }

    #[test]
    fn refuses_empty_and_non_string_data() {
        let err = rejection(text_data(json!("")));
        assert_eq!(err, FieldError::new("blobs[0].data", "must not be empty"));

        let err = rejection(text_data(json!({"text": ""})));
        assert_eq!(err, FieldError::new("blobs[0].data.text", "must not be empty"));

        let err = rejection(image_data(json!(42)));
        assert_eq!(
            err,
            FieldError::new("blobs[0].data", "must be a string or an object, got number")
        );
    }

    #[test]
    fn enforces_the_inline_limit() {
        let at_limit = "A".repeat(LIMIT);
        assert!(parse(text_data(json!(at_limit))).is_ok());

        let err = rejection(text_data(json!(format!("{at_limit}A"))));
        assert_eq!(err.field, "blobs[0].data");
        assert_eq!(err.message, too_large(1025, LIMIT));

        let payload = "A".repeat(LIMIT / 3 * 4 + 4);
        let err = rejection(image_data(json!({"base64": payload})));
        assert_eq!(err.field, "blobs[0].data.base64");
        assert_eq!(err.message, too_large(1026, LIMIT));

        let payload = "A".repeat(LIMIT / 3 * 4);
        assert!(parse(image_data(json!(format!("data:image/png;base64,{payload}")))).is_ok());
    }

    #[test]
    fn requires_exactly_one_of_data_and_upload_id() {
        let both = json!({
            "property": "clip", "type": "video", "data": "https://a.b/c", "upload_id": "upl_1"
        });
        let err = rejection(both);
        assert_eq!(err, FieldError::new("blobs[0]", "send data or upload_id, not both"));

        let neither = json!({"property": "clip", "type": "video", "data": null, "upload_id": null});
        let err = rejection(neither);
        assert_eq!(err, FieldError::new("blobs[0]", "one of data or upload_id is required"));

        let upload =
            json!({"property": "clip", "type": "video", "data": null, "upload_id": "upl_aB3_-x"});
        assert_eq!(parsed(upload).data, BlobData::Upload { upload_id: "upl_aB3_-x".into() });
    }

    #[test]
    fn checks_the_upload_id_format() {
        for id in [json!("upl_"), json!("abc"), json!("upl_a b"), json!("UPL_abc"), json!(7)] {
            let blob = json!({"property": "clip", "type": "video", "upload_id": id});
            assert_eq!(rejection(blob).field, "blobs[0].upload_id", "{id}");
        }
    }

    #[test]
    fn requires_a_blob_property_of_the_schema() {
        let err = rejection(json!({"type": "video", "data": "https://a.b/c"}));
        assert_eq!(err, FieldError::new("blobs[0].property", "is required"));

        let err = rejection(data("", "video", json!("https://a.b/c")));
        assert_eq!(err, FieldError::new("blobs[0].property", "must not be empty"));

        let err = rejection(data(&"p".repeat(101), "video", json!("https://a.b/c")));
        assert_eq!(err.message, "must be at most 100 characters");

        let err = rejection(data("thumbnail", "image", json!("https://a.b/c")));
        let message = "property \"thumbnail\" is not in the bucket schema";
        assert_eq!(err, FieldError::new("blobs[0].property", message));

        let err = rejection(data("title", "string", json!("https://a.b/c")));
        assert_eq!(err.field, "blobs[0].property");
        assert!(
            err.message.starts_with("property \"title\" is a string property"),
            "{}",
            err.message
        );
    }

    #[test]
    fn requires_the_type_of_the_schema_property() {
        let err = rejection(data("clip", "VIDEO", json!("https://a.b/c")));
        let message =
            "unknown blob type \"VIDEO\"; expected one of text, image, audio, video, pdf, excel";
        assert_eq!(err, FieldError::new("blobs[0].type", message));

        let err = rejection(data("clip", "string", json!("https://a.b/c")));
        assert!(err.message.starts_with("\"string\" is not a blob type"), "{}", err.message);

        let err = rejection(data("clip", "image", json!("https://a.b/c")));
        let message = "type \"image\" does not match property \"clip\", which the bucket schema \
                       declares as \"video\"";
        assert_eq!(err, FieldError::new("blobs[0].type", message));

        let err = rejection(json!({"property": "clip", "data": "https://a.b/c"}));
        assert_eq!(err, FieldError::new("blobs[0].type", "is required"));
    }

    #[test]
    fn normalises_the_checksum() {
        let hex = "ab".repeat(32);
        let with_checksum = |checksum: Value| {
            let mut blob = image_data(json!("https://a.b/c.png"));
            blob["checksum"] = checksum;
            parse(blob)
        };

        for sent in [format!("sha256:{}", hex.to_uppercase()), hex.clone(), format!("SHA256:{hex}")]
        {
            let checksum = with_checksum(json!(sent)).ok().and_then(|b| b.checksum);
            assert_eq!(checksum.as_deref(), Some(hex.as_str()));
        }
        assert_eq!(with_checksum(Value::Null).ok().and_then(|b| b.checksum), None);

        for sent in [
            json!("abc"),
            json!(format!("sha256:{}", &hex[1..])),
            json!(format!("{}zz", &hex[2..])),
        ] {
            let err = with_checksum(sent).err();
            let expected = "must be sha256:<64 hex digits> or 64 hex digits";
            assert_eq!(err, Some(FieldError::new("blobs[0].checksum", expected)));
        }
        let err = with_checksum(json!(format!("md5:{hex}"))).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("algorithm \"md5\" is not supported; use sha256"));
    }

    #[test]
    fn reads_the_optional_keys() {
        let blob = parsed(json!({
            "property": "cover", "type": "image", "data": "https://a.b/c.png",
            "key_prefix": "campaigns/summer", "metadata": {"alt": "a cat"},
            "canonicalize_source": false, "force_remirror": true, "unknown": 1
        }));
        assert_eq!(blob.property, "cover");
        assert_eq!(blob.field_type, FieldType::Image);
        assert_eq!(blob.key_prefix.as_deref(), Some("campaigns/summer"));
        assert_eq!(blob.metadata.map(Value::Object), Some(json!({"alt": "a cat"})));
        assert_eq!(blob.canonicalize_source, Some(false));
        assert_eq!(blob.force_remirror, Some(true));

        let blob = parsed(json!({
            "property": "cover", "type": "image", "data": "https://a.b/c.png", "key_prefix": null,
            "checksum": null, "metadata": null, "canonicalize_source": null, "force_remirror": null
        }));
        assert_eq!(blob.key_prefix, None);
        assert_eq!(blob.metadata, None);
        assert_eq!((blob.canonicalize_source, blob.force_remirror), (None, None));
    }

    #[test]
    fn checks_the_types_of_optional_keys() {
        let cases = [
            ("key_prefix", json!(1), "must be a string"),
            ("metadata", json!([]), "must be an object"),
            ("canonicalize_source", json!("true"), "must be true or false"),
            ("force_remirror", json!(0), "must be true or false"),
        ];
        for (key, value, message) in cases {
            let mut blob = image_data(json!("https://a.b/c.png"));
            blob[key] = value;
            assert_eq!(rejection(blob), FieldError::new(format!("blobs[0].{key}"), message));
        }
    }

    #[test]
    fn names_the_blob_by_its_index() {
        let err = parse_blob(&json!("https://a.b/c"), 3, &schema(), LIMIT).err();
        assert_eq!(err, Some(FieldError::new("blobs[3]", "must be an object")));

        let err = parse_blob(&image_data(json!("nope")), 7, &schema(), LIMIT).err();
        assert_eq!(err.map(|e| e.field).as_deref(), Some("blobs[7].data"));
    }

    #[test]
    fn guesses_mime_types_from_names_and_urls() {
        let cases = [
            ("photo.JPG", Some("image/jpeg")),
            ("a.jpeg", Some("image/jpeg")),
            ("https://cdn.example.com/v/clip.mp4?sig=abc#t=1", Some("video/mp4")),
            (
                "s3://bucket/dir.v2/sheet.xlsx",
                Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ),
            ("old.xls", Some("application/vnd.ms-excel")),
            ("song.mp3", Some("audio/mpeg")),
            ("clip.mov", Some("video/quicktime")),
            ("page.html", Some("text/html")),
            ("README", None),
            ("https://example.com/dir.d/file", None),
            ("archive.tar.gz", None),
        ];
        for (name, mime) in cases {
            assert_eq!(guess_mime(name), mime, "{name}");
        }
        for ext in ["png", "gif", "webp", "webm", "wav", "pdf", "txt", "csv", "json"] {
            assert!(guess_mime(&format!("f.{ext}")).is_some(), "{ext}");
        }
    }

    #[test]
    fn maps_mime_types_to_blob_types() {
        let cases = [
            ("image/png", Some(FieldType::Image)),
            ("IMAGE/GIF", Some(FieldType::Image)),
            ("video/mp4", Some(FieldType::Video)),
            ("audio/wav", Some(FieldType::Audio)),
            ("application/pdf", Some(FieldType::Pdf)),
            ("text/plain; charset=utf-8", Some(FieldType::Text)),
            ("text/csv", Some(FieldType::Text)),
            ("application/vnd.ms-excel", Some(FieldType::Excel)),
            (
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                Some(FieldType::Excel),
            ),
            ("application/json", None),
            ("application/octet-stream", None),
            ("image", None),
            ("image/", None),
        ];
        for (mime, field_type) in cases {
            assert_eq!(field_type_for_mime(mime), field_type, "{mime}");
        }
    }
}
