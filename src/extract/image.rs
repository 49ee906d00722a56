//! Images: format, dimensions, colour, EXIF, a perceptual hash and a thumbnail.
//!
//! PNG, JPEG, GIF, WebP and BMP are decoded. Other images that sniffing recognises (TIFF,
//! HEIF, AVIF) pass [`super::verify`] but are permanent failures here: sluice is built without
//! their decoders to keep its dependencies small.

use std::io::Cursor;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageFormat, ImageReader};
use serde_json::{Map, Value, json};

use super::text::optional_bool;
use super::{
    BlobInput, Context, Document, Failure, Thumbnail, blob_fields, blocking, bounded_reader,
};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_MAX_SIDE: u32 = 256;

/// The longest side of the rendition that is hashed and sent for image embedding. Embedding
/// models look at a few hundred pixels at most, and resizing once to this size first makes
/// the thumbnail and the hash cheap even for very large photographs.
const PREVIEW_MAX_SIDE: u32 = 512;

/// JPEG quality of thumbnails and previews.
const JPEG_QUALITY: u8 = 85;

/// The name of the perceptual hash, as documents state it.
pub const HASH_ALGORITHM: &str = "dhash";

/// The EXIF tags documents carry, when an image has them.
const EXIF_TAGS: [exif::Tag; 22] = [
    exif::Tag::Make,
    exif::Tag::Model,
    exif::Tag::Software,
    exif::Tag::DateTime,
    exif::Tag::DateTimeOriginal,
    exif::Tag::Orientation,
    exif::Tag::ImageDescription,
    exif::Tag::Artist,
    exif::Tag::Copyright,
    exif::Tag::ExposureTime,
    exif::Tag::FNumber,
    exif::Tag::PhotographicSensitivity,
    exif::Tag::FocalLength,
    exif::Tag::LensModel,
    exif::Tag::GPSLatitudeRef,
    exif::Tag::GPSLatitude,
    exif::Tag::GPSLongitudeRef,
    exif::Tag::GPSLongitude,
    exif::Tag::GPSAltitudeRef,
    exif::Tag::GPSAltitude,
    exif::Tag::GPSDateStamp,
    exif::Tag::GPSTimeStamp,
];

/// The image extractor's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub thumbnails: bool,
}

impl Options {
    /// Reads `enable_thumbnails` (default true); [`super::check`] has vetted its type.
    pub fn from_params(params: &Map<String, Value>) -> Options {
        Options {
            thumbnails: optional_bool(params, "enable_thumbnails").ok().flatten().unwrap_or(true),
        }
    }
}

/// What decoding one image found.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub format: &'static str,
    pub mime_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub color_type: String,
    pub bit_depth: u16,
    pub channels: u8,
    pub has_alpha: bool,
    pub exif: Map<String, Value>,
    pub perceptual_hash: String,
    pub thumbnail: Option<Rendition>,
    /// The preview to embed, made only when asked for.
    pub preview: Option<Rendition>,
}

/// An encoded, downscaled copy of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Checks that an image's header decodes, for [`super::verify`]. Formats sluice does not
/// decode are not checked.
pub fn check_header(path: &Path, mime: &str) -> Result<(), Failure> {
    let Some(format) = ImageFormat::from_mime_type(mime).filter(|f| f.reading_enabled()) else {
        return Ok(());
    };
    let reader = ImageReader::open(path)
        .map_err(|e| Failure::Transient(format!("cannot open the downloaded blob: {e}")))?;
    let mut reader = reader;
    reader.set_format(format);
    reader
        .into_dimensions()
        .map(|_| ())
        .map_err(|e| Failure::Permanent(format!("the {mime} image header does not decode: {e}")))
}

/// Decodes one image blob into one document positioned at its property.
pub async fn extract_blob(
    ctx: &Context,
    blob: &BlobInput<'_>,
    options: &Options,
) -> Result<Document, Failure> {
    let read = bounded_reader(ctx, blob, "image");
    let max_alloc = ctx.max_decode_bytes.saturating_mul(4);
    let want_preview = ctx.embedder.as_ref().is_some_and(|e| e.embeds_images());
    let thumbnails = options.thumbnails;
    let facts = blocking(move || analyse(&read()?, max_alloc, thumbnails, want_preview)).await?;

    let mut fields = blob_fields(blob);
    fields.insert("mime_type".into(), json!(facts.mime_type));
    fields.insert("format".into(), json!(facts.format));
    fields.insert("width".into(), json!(facts.width));
    fields.insert("height".into(), json!(facts.height));
    fields.insert("color_type".into(), json!(facts.color_type));
    fields.insert("bit_depth".into(), json!(facts.bit_depth));
    fields.insert("channels".into(), json!(facts.channels));
    fields.insert("has_alpha".into(), json!(facts.has_alpha));
    fields.insert("exif".into(), Value::Object(facts.exif));
    fields.insert("perceptual_hash".into(), json!(facts.perceptual_hash));
    fields.insert("perceptual_hash_algorithm".into(), json!(HASH_ALGORITHM));

    let thumbnail = facts.thumbnail.map(|t| {
        fields.insert("thumbnail_width".into(), json!(t.width));
        fields.insert("thumbnail_height".into(), json!(t.height));
        Thumbnail { bytes: t.bytes, content_type: t.content_type }
    });
    if let (Some(embedder), Some(preview)) = (&ctx.embedder, facts.preview) {
        let url = format!("data:{};base64,{}", preview.content_type, BASE64.encode(&preview.bytes));
        let mut vectors = embedder.embed_images(&[url]).await?;
        if let Some(vector) = vectors.pop() {
            fields.insert("embedding".into(), json!(vector));
        }
    }
    Ok(Document { position: blob.property.to_string(), fields, thumbnail })
}

/// Decodes an image and derives everything a document says about it. Decoded pixels may
/// take at most `max_alloc` bytes.
pub fn analyse(
    bytes: &[u8],
    max_alloc: u64,
    thumbnails: bool,
    want_preview: bool,
) -> Result<Facts, Failure> {
    let undecodable =
        |e: image::ImageError| Failure::Permanent(format!("the image does not decode: {e}"));
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Failure::Permanent(format!("the image cannot be read: {e}")))?;
    let format = reader.format().filter(|f| f.reading_enabled()).ok_or_else(|| {
        Failure::Permanent(
            "the image's format is not one sluice decodes (PNG, JPEG, GIF, WebP, BMP)".into(),
        )
    })?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);

    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let original = decoder.original_color_type();
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    let (width, height) = (image.width(), image.height());
    let channels = original.channel_count();
    let has_alpha = image.color().has_alpha();
    image.apply_orientation(orientation);

    let preview = downscale(&image, PREVIEW_MAX_SIDE);
    let thumbnail =
        thumbnails.then(|| encode(&downscale(&preview, THUMBNAIL_MAX_SIDE))).transpose()?;
    let preview_rendition = want_preview.then(|| encode(&preview)).transpose()?;
    Ok(Facts {
        format: format_name(format),
        mime_type: format.to_mime_type(),
        width,
        height,
        color_type: color_name(original),
        bit_depth: original.bits_per_pixel() / u16::from(channels.max(1)),
        channels,
        has_alpha,
        exif: exif_fields(bytes),
        perceptual_hash: dhash(&preview),
        thumbnail,
        preview: preview_rendition,
    })
}

fn format_name(format: ImageFormat) -> &'static str {
    format.extensions_str().first().copied().unwrap_or("unknown")
}

/// The colour type as the decoder read it, e.g. `rgb8`, `rgba16`, `l8`, `l1`.
fn color_name(color: ExtendedColorType) -> String {
    format!("{color:?}").to_ascii_lowercase()
}

/// A copy whose longer side is at most `max_side`, with the aspect ratio kept; a smaller
/// image is returned as it is.
fn downscale(image: &DynamicImage, max_side: u32) -> DynamicImage {
    if image.width().max(image.height()) <= max_side {
        image.clone()
    } else {
        image.resize(max_side, max_side, FilterType::Triangle)
    }
}

/// PNG when the image has transparency, JPEG otherwise.
fn encode(image: &DynamicImage) -> Result<Rendition, Failure> {
    let failed =
        |e: image::ImageError| Failure::Permanent(format!("cannot encode a thumbnail: {e}"));
    let mut bytes = Vec::new();
    let content_type = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(failed)?;
        "image/png"
    } else {
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
            .encode_image(&image.to_rgb8())
            .map_err(failed)?;
        "image/jpeg"
    };
    Ok(Rendition { bytes, content_type, width: image.width(), height: image.height() })
}

/// The 64-bit difference hash: the image in grey, shrunk to 9x8, one bit per horizontally
/// adjacent pair (set when the left pixel is brighter), as 16 hex digits. Similar images
/// differ in few bits; compare hashes by Hamming distance.
pub fn dhash(image: &DynamicImage) -> String {
    let grey = image::imageops::resize(&image.to_luma8(), 9, 8, FilterType::Triangle);
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let left = grey.get_pixel(x, y)[0];
            let right = grey.get_pixel(x + 1, y)[0];
            hash = (hash << 1) | u64::from(left > right);
        }
    }
    format!("{hash:016x}")
}

/// The common EXIF tags of the primary image, as strings by tag name. An image without
/// EXIF, or with EXIF that does not parse, gives an empty map.
fn exif_fields(bytes: &[u8]) -> Map<String, Value> {
    let mut fields = Map::new();
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return fields;
    };
    for tag in EXIF_TAGS {
        let Some(field) = exif.get_field(tag, exif::In::PRIMARY) else { continue };
        let text = match &field.value {
            exif::Value::Ascii(parts) => parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).trim_end_matches('\0').trim().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            _ => field.display_value().with_unit(&exif).to_string(),
        };
        if !text.is_empty() {
            fields.insert(tag.to_string(), json!(text));
        }
    }
    fields
}

/// A thumbnail of an encoded image (a video frame, for instance), at most
/// [`THUMBNAIL_MAX_SIDE`] pixels on its longer side.
pub fn thumbnail_of_encoded(bytes: &[u8]) -> Result<Rendition, Failure> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| Failure::Permanent(format!("the extracted frame does not decode: {e}")))?;
    encode(&downscale(&image, THUMBNAIL_MAX_SIDE))
}
