//! Audio and video: duration, stream facts and a keyframe thumbnail.
//!
//! WAV headers are read natively. Every other container is read by ffprobe, and video
//! keyframes are grabbed by ffmpeg, when those are installed. Without them a document still
//! says what sluice could find (size, media type, and for WAV everything) and states in
//! `media_probe` or `thumbnail_status` what it could not do and why.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::image::Options as ImageOptions;
use super::{BlobInput, Context, Document, Failure, Thumbnail, blob_fields, blocking, verify};

/// How long ffprobe or ffmpeg may run on one blob.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of a tool's error output goes into a failure message.
const TOOL_ERROR_CHARS: usize = 300;

pub const FFPROBE_MISSING: &str = "unavailable: ffprobe is not installed";
pub const FFMPEG_MISSING: &str = "unavailable: ffmpeg is not installed";

/// What a WAV file's header says.
#[derive(Debug, Clone, PartialEq)]
pub struct WavFacts {
    pub codec: String,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    pub duration_seconds: f64,
}

/// One document for an audio blob, positioned at its property.
pub async fn extract_audio(ctx: &Context, blob: &BlobInput<'_>) -> Result<Document, Failure> {
    let mime = verify(blob)?;
    let mut fields = basic_fields(blob, &mime);

    if mime == "audio/wav" {
        let path = blob.path.to_path_buf();
        let wav = blocking(move || parse_wav_file(&path)).await?;
        fields.insert("format".into(), json!("wav"));
        fields.insert("codec".into(), json!(wav.codec));
        fields.insert("duration_seconds".into(), json!(wav.duration_seconds));
        fields.insert("sample_rate".into(), json!(wav.sample_rate));
        fields.insert("channels".into(), json!(wav.channels));
        fields.insert("bits_per_sample".into(), json!(wav.bits_per_sample));
        fields.insert("media_probe".into(), json!("native"));
        return Ok(document(blob, fields, None));
    }

    match &ctx.ffprobe {
        Some(ffprobe) => {
            let probe = run_ffprobe(ffprobe, blob.path).await?;
            add_probe_fields(&mut fields, &probe, "audio");
            fields.insert("media_probe".into(), json!("ffprobe"));
        }
        None => {
            fields.insert("media_probe".into(), json!(FFPROBE_MISSING));
        }
    }
    Ok(document(blob, fields, None))
}

/// One document for a video blob, positioned at its property, with a keyframe thumbnail when
/// ffmpeg is installed and thumbnails are on.
pub async fn extract_video(
    ctx: &Context,
    blob: &BlobInput<'_>,
    options: &ImageOptions,
) -> Result<Document, Failure> {
    let mime = verify(blob)?;
    let mut fields = basic_fields(blob, &mime);
    let Some(ffprobe) = &ctx.ffprobe else {
        fields.insert("media_probe".into(), json!(FFPROBE_MISSING));
        if options.thumbnails {
            fields.insert("thumbnail_status".into(), json!(FFPROBE_MISSING));
        }
        return Ok(document(blob, fields, None));
    };

    let probe = run_ffprobe(ffprobe, blob.path).await?;
    add_probe_fields(&mut fields, &probe, "video");
    fields.insert("media_probe".into(), json!("ffprobe"));
    if !options.thumbnails {
        return Ok(document(blob, fields, None));
    }
    let Some(ffmpeg) = &ctx.ffmpeg else {
        fields.insert("thumbnail_status".into(), json!(FFMPEG_MISSING));
        return Ok(document(blob, fields, None));
    };

    // A tenth of the way in skips most fades from black; ffmpeg then takes the keyframe at
    // or before that time, so the same file always gives the same frame.
    let duration = fields.get("duration_seconds").and_then(Value::as_f64).unwrap_or(0.0);
    let at = (duration / 10.0).clamp(0.0, 60.0);
    let thumbnail = match grab_keyframe(ffmpeg, blob.path, at).await? {
        Some(rendition) => {
            fields.insert("thumbnail_status".into(), json!("keyframe"));
            fields.insert("thumbnail_seconds".into(), json!(at));
            fields.insert("thumbnail_width".into(), json!(rendition.width));
            fields.insert("thumbnail_height".into(), json!(rendition.height));
            Some(Thumbnail { bytes: rendition.bytes, content_type: rendition.content_type })
        }
        None => {
            fields.insert("thumbnail_status".into(), json!("no video frame found"));
            None
        }
    };
    Ok(document(blob, fields, thumbnail))
}

fn basic_fields(blob: &BlobInput, mime: &str) -> Map<String, Value> {
    let mut fields = blob_fields(blob);
    fields.insert("mime_type".into(), json!(mime));
    fields.insert("size_bytes".into(), json!(blob.size));
    fields
}

fn document(
    blob: &BlobInput,
    fields: Map<String, Value>,
    thumbnail: Option<Thumbnail>,
) -> Document {
    Document { position: blob.property.to_string(), fields, thumbnail }
}

fn parse_wav_file(path: &Path) -> Result<WavFacts, Failure> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Failure::Transient(format!("cannot open the downloaded blob: {e}")))?;
    parse_wav(&mut file).map_err(|m| Failure::Permanent(format!("the WAV file is malformed: {m}")))
}

/// Reads a RIFF/WAVE header: the `fmt ` chunk for the encoding and the `data` chunk's size for
/// the duration. Only chunk headers are read, never the samples.
pub fn parse_wav<R: Read + Seek>(reader: &mut R) -> Result<WavFacts, String> {
    let file_len = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut riff = [0u8; 12];
    reader.read_exact(&mut riff).map_err(|_| "shorter than a RIFF header".to_string())?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err("no RIFF/WAVE header".into());
    }

    let mut format: Option<(u16, u16, u32, u32, u16, u16)> = None;
    let mut data_len: Option<u64> = None;
    let mut position = 12u64;
    while position + 8 <= file_len && (format.is_none() || data_len.is_none()) {
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).map_err(|e| e.to_string())?;
        let id = &header[0..4];
        let len = u64::from(u32::from_le_bytes([header[4], header[5], header[6], header[7]]));
        let body_start = position + 8;
        if id == b"fmt " {
            let mut body = vec![0u8; len.min(40) as usize];
            reader.read_exact(&mut body).map_err(|_| "the fmt chunk is cut short".to_string())?;
            format = Some(read_fmt(&body)?);
        } else if id == b"data" {
            // Streaming writers leave the size at 0 or 0xFFFFFFFF: the data runs to the end.
            let available = file_len - body_start;
            data_len = Some(if len == 0 || len > available { available } else { len });
        }
        position = body_start + len + (len & 1);
        reader.seek(SeekFrom::Start(position)).map_err(|e| e.to_string())?;
    }

    let (tag, channels, sample_rate, byte_rate, block_align, bits) =
        format.ok_or("no fmt chunk")?;
    let data_len = data_len.ok_or("no data chunk")?;
    let bytes_per_second = if byte_rate > 0 {
        f64::from(byte_rate)
    } else {
        f64::from(block_align) * f64::from(sample_rate)
    };
    if bytes_per_second <= 0.0 || channels == 0 {
        return Err("the fmt chunk gives no byte rate".into());
    }
    Ok(WavFacts {
        codec: codec_name(tag, bits),
        channels,
        sample_rate,
        bits_per_sample: bits,
        duration_seconds: data_len as f64 / bytes_per_second,
    })
}

/// The `fmt ` chunk: format tag (the sub-format's, for WAVE_FORMAT_EXTENSIBLE), channels,
/// sample rate, byte rate, block align and bits per sample.
fn read_fmt(body: &[u8]) -> Result<(u16, u16, u32, u32, u16, u16), String> {
    if body.len() < 16 {
        return Err("the fmt chunk is shorter than 16 bytes".into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let mut tag = u16_at(0);
    if tag == 0xfffe && body.len() >= 26 {
        tag = u16_at(24);
    }
    Ok((tag, u16_at(2), u32_at(4), u32_at(8), u16_at(12), u16_at(14)))
}

/// The codec as ffprobe names it, e.g. `pcm_s16le`.
fn codec_name(tag: u16, bits: u16) -> String {
    match (tag, bits) {
        (1, 8) => "pcm_u8".into(),
        (1, bits) => format!("pcm_s{bits}le"),
        (3, bits) => format!("pcm_f{bits}le"),
        (2, _) => "adpcm_ms".into(),
        (6, _) => "pcm_alaw".into(),
        (7, _) => "pcm_mulaw".into(),
        (0x11, _) => "adpcm_ima_wav".into(),
        (0x55, _) => "mp3".into(),
        (tag, _) => format!("wav_format_0x{tag:04x}"),
    }
}

/// Runs a tool with a time limit and answers its standard output.
async fn run_tool(program: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, Failure> {
    let name =
        program.file_name().map_or_else(|| "tool".into(), |n| n.to_string_lossy().into_owned());
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Transient(format!("cannot start {name}: {e}")))?;
    let output = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Failure::Transient(format!("{name} took longer than {TOOL_TIMEOUT:?}")))?
        .map_err(|e| Failure::Transient(format!("{name} failed: {e}")))?;
    if !output.status.success() {
        let stderr: String =
            String::from_utf8_lossy(&output.stderr).trim().chars().take(TOOL_ERROR_CHARS).collect();
        return Err(Failure::Permanent(format!("{name} cannot read the blob: {stderr}")));
    }
    Ok(output.stdout)
}

async fn run_ffprobe(ffprobe: &Path, path: &Path) -> Result<Value, Failure> {
    let args = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", "-i"];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    args.push(path.as_os_str());
    let stdout = run_tool(ffprobe, &args).await?;
    serde_json::from_slice(&stdout)
        .map_err(|e| Failure::Transient(format!("ffprobe's output is not JSON: {e}")))
}

/// Adds what ffprobe found: container, duration and bit rate, and the first stream of the
/// wanted kind (`"audio"` or `"video"`), plus the first audio stream of a video.
pub fn add_probe_fields(fields: &mut Map<String, Value>, probe: &Value, kind: &str) {
    let format = &probe["format"];
    let number = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).or_else(|| v.as_f64());
    if let Some(name) = format["format_name"].as_str() {
        fields.insert("format".into(), json!(name));
    }
    if let Some(duration) = number(&format["duration"]) {
        fields.insert("duration_seconds".into(), json!(duration));
    }
    if let Some(rate) = number(&format["bit_rate"]) {
        fields.insert("bit_rate".into(), json!(rate as u64));
    }

    let streams = probe["streams"].as_array().map(Vec::as_slice).unwrap_or_default();
    let first = |wanted: &str| streams.iter().find(|s| s["codec_type"] == wanted);
    let audio = first("audio");
    if kind == "video" {
        if let Some(video) = first("video") {
            fields.insert("codec".into(), video["codec_name"].clone());
            fields.insert("width".into(), video["width"].clone());
            fields.insert("height".into(), video["height"].clone());
            if let Some(rate) = video["avg_frame_rate"].as_str().and_then(parse_ratio) {
                fields.insert("frame_rate".into(), json!(rate));
            }
        }
        fields.insert("has_audio".into(), json!(audio.is_some()));
        if let Some(audio) = audio {
            fields.insert("audio_codec".into(), audio["codec_name"].clone());
        }
    } else if let Some(audio) = audio {
        fields.insert("codec".into(), audio["codec_name"].clone());
        if let Some(rate) = number(&audio["sample_rate"]) {
            fields.insert("sample_rate".into(), json!(rate as u64));
        }
        fields.insert("channels".into(), audio["channels"].clone());
    }
}

/// `"30000/1001"` as 29.97...; `None` for `0/0`.
fn parse_ratio(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/')?;
    let (num, den) = (num.parse::<f64>().ok()?, den.parse::<f64>().ok()?);
    (den != 0.0 && num != 0.0).then(|| num / den)
}

/// The keyframe at or before `at` seconds as a thumbnail, or `None` when the file has no
/// video frame to give.
async fn grab_keyframe(
    ffmpeg: &Path,
    path: &Path,
    at: f64,
) -> Result<Option<super::image::Rendition>, Failure> {
    let at = format!("{at:.3}");
    let before_input = ["-v", "error", "-nostdin", "-skip_frame", "nokey", "-ss", &at, "-i"];
    let after_input = ["-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"];
    let mut args: Vec<&std::ffi::OsStr> = before_input.iter().map(std::ffi::OsStr::new).collect();
    args.push(path.as_os_str());
    args.extend(after_input.iter().map(std::ffi::OsStr::new));
    let png = run_tool(ffmpeg, &args).await?;
    if png.is_empty() {
        return Ok(None);
    }
    blocking(move || super::image::thumbnail_of_encoded(&png)).await.map(Some)
}
