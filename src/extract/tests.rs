//! Tests of the extractors on inputs generated here: images drawn with the `image` crate, WAV
//! and PDF files written byte by byte, and texts of known length.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use ::image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{Map, Value, json};

use super::*;

/// A file in a temporary directory that lives as long as the value.
struct TempBlob {
    _dir: tempfile::TempDir,
    path: PathBuf,
    size: u64,
}

fn temp_blob(bytes: &[u8]) -> TempBlob {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, bytes).unwrap();
    TempBlob { _dir: dir, path, size: bytes.len() as u64 }
}

fn input<'a>(property: &'a str, blob_type: &'a str, blob: &'a TempBlob) -> BlobInput<'a> {
    BlobInput { property, blob_type, path: &blob.path, size: blob.size, declared_mime: None }
}

fn context() -> Context {
    Context {
        ffprobe: None,
        ffmpeg: None,
        embedder: None,
        max_decode_bytes: DEFAULT_MAX_DECODE_BYTES,
    }
}

fn params(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

/// A 300x200 picture that brightens from left to right (or right to left when `mirrored`),
/// with some colour from top to bottom.
fn gradient(mirrored: bool) -> RgbImage {
    RgbImage::from_fn(300, 200, |x, y| {
        let x = if mirrored { 299 - x } else { x };
        let v = (x * 255 / 299) as u8;
        Rgb([v, v / 2 + (y as u8 / 4), 255 - v])
    })
}

fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image.clone()).write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

// Images

#[test]
fn a_png_gives_its_format_dimensions_colour_and_a_small_decodable_thumbnail() {
    let png = encode(&gradient(false), ImageFormat::Png);
    let facts = image::analyse(&png, 1 << 30, true, false).unwrap();

    assert_eq!((facts.format, facts.mime_type), ("png", "image/png"));
    assert_eq!((facts.width, facts.height), (300, 200));
    assert_eq!((facts.color_type.as_str(), facts.bit_depth, facts.channels), ("rgb8", 8, 3));
    assert!(!facts.has_alpha);
    assert!(facts.exif.is_empty());

    let thumbnail = facts.thumbnail.unwrap();
    assert_eq!(thumbnail.content_type, "image/jpeg");
    assert_eq!((thumbnail.width, thumbnail.height), (256, 171));
    let decoded = ::image::load_from_memory(&thumbnail.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (256, 171));
}

#[test]
fn a_jpeg_is_read_as_jpeg() {
    let jpeg = encode(&gradient(false), ImageFormat::Jpeg);
    let facts = image::analyse(&jpeg, 1 << 30, false, false).unwrap();
    assert_eq!((facts.format, facts.width, facts.height), ("jpg", 300, 200));
    assert_eq!(facts.mime_type, "image/jpeg");
    assert!(facts.thumbnail.is_none());
}

#[test]
fn the_perceptual_hash_is_stable_and_tells_different_pictures_apart() {
    let picture = DynamicImage::ImageRgb8(gradient(false));
    let same = DynamicImage::ImageRgb8(gradient(false));
    let mirrored = DynamicImage::ImageRgb8(gradient(true));

    let hash = image::dhash(&picture);
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(hash, image::dhash(&same));

    let other = image::dhash(&mirrored);
    let distance = (u64::from_str_radix(&hash, 16).unwrap()
        ^ u64::from_str_radix(&other, 16).unwrap())
    .count_ones();
    assert!(distance > 32, "{hash} and {other} differ in only {distance} bits");

    // Re-encoding as JPEG changes pixels a little but the picture not at all.
    let jpeg = encode(&gradient(false), ImageFormat::Jpeg);
    let from_jpeg = image::analyse(&jpeg, 1 << 30, false, false).unwrap().perceptual_hash;
    let png = encode(&gradient(false), ImageFormat::Png);
    let from_png = image::analyse(&png, 1 << 30, false, false).unwrap().perceptual_hash;
    let distance = (u64::from_str_radix(&from_jpeg, 16).unwrap()
        ^ u64::from_str_radix(&from_png, 16).unwrap())
    .count_ones();
    assert!(distance <= 4, "{from_jpeg} and {from_png} differ in {distance} bits");
}

/// A JPEG with an EXIF segment (APP1) holding `fields`, written right after the start marker.
fn jpeg_with_exif(fields: &[exif::Field]) -> Vec<u8> {
    let mut writer = exif::experimental::Writer::new();
    for field in fields {
        writer.push_field(field);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let tiff = tiff.into_inner();

    let jpeg = encode(&gradient(false), ImageFormat::Jpeg);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_tags_are_read_and_the_orientation_turns_the_thumbnail() {
    let ascii = |tag, text: &str| exif::Field {
        tag,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Ascii(vec![text.as_bytes().to_vec()]),
    };
    let fields = [
        ascii(exif::Tag::Make, "Sluice Optics"),
        ascii(exif::Tag::Model, "Test Camera 1"),
        ascii(exif::Tag::DateTimeOriginal, "2024:05:06 07:08:09"),
        exif::Field {
            tag: exif::Tag::Orientation,
            ifd_num: exif::In::PRIMARY,
            value: exif::Value::Short(vec![6]),
        },
    ];
    let jpeg = jpeg_with_exif(&fields);
    let facts = image::analyse(&jpeg, 1 << 30, true, false).unwrap();

    assert_eq!(facts.exif["Make"], "Sluice Optics");
    assert_eq!(facts.exif["Model"], "Test Camera 1");
    assert_eq!(facts.exif["DateTimeOriginal"], "2024:05:06 07:08:09");
    assert!(facts.exif["Orientation"].as_str().unwrap().contains("row 0 at right"));
    // Stored pixels are 300x200; orientation 6 shows them turned a quarter, so the
    // thumbnail is upright at 171x256.
    assert_eq!((facts.width, facts.height), (300, 200));
    let thumbnail = facts.thumbnail.unwrap();
    assert_eq!((thumbnail.width, thumbnail.height), (171, 256));
}

#[test]
fn an_image_with_transparency_gets_a_png_thumbnail() {
    let rgba = ::image::RgbaImage::from_fn(40, 30, |x, _| ::image::Rgba([x as u8, 0, 0, 128]));
    let mut png = Vec::new();
    DynamicImage::ImageRgba8(rgba).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
    let facts = image::analyse(&png, 1 << 30, true, false).unwrap();
    assert!(facts.has_alpha);
    assert_eq!(facts.color_type, "rgba8");
    let thumbnail = facts.thumbnail.unwrap();
    assert_eq!((thumbnail.content_type, thumbnail.width, thumbnail.height), ("image/png", 40, 30));
}

#[tokio::test]
async fn the_image_extractor_makes_one_document_per_image_with_its_thumbnail() {
    let png = temp_blob(&encode(&gradient(false), ImageFormat::Png));
    let text = temp_blob(b"not an image");
    let blobs = [input("cover", "image", &png), input("notes", "text", &text)];
    let docs = run(&context(), "image_extractor", "v1", None, &json!({}), &blobs).await.unwrap();

    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    assert_eq!(doc.position, "cover");
    assert_eq!(doc.fields["source_blob_property"], "cover");
    assert_eq!(doc.fields["width"], 300);
    assert_eq!(doc.fields["perceptual_hash_algorithm"], "dhash");
    assert!(!doc.fields.contains_key("embedding"));
    let thumbnail = doc.thumbnail.as_ref().unwrap();
    assert_eq!(thumbnail.content_type, "image/jpeg");

    let without = params(json!({"enable_thumbnails": false}));
    let docs = run(&context(), "image_extractor", "v1", Some(&without), &json!({}), &blobs[..1])
        .await
        .unwrap();
    assert!(docs[0].thumbnail.is_none());
}

#[tokio::test]
async fn an_image_larger_than_the_decode_limit_is_a_permanent_failure() {
    let png = temp_blob(&encode(&gradient(false), ImageFormat::Png));
    let ctx = Context { max_decode_bytes: 100, ..context() };
    let failure =
        run(&ctx, "image_extractor", "v1", None, &json!({}), &[input("c", "image", &png)])
            .await
            .unwrap_err();
    assert_eq!(failure.kind(), "permanent");
    assert!(failure.to_string().contains("more than the 100 bytes"), "{failure}");
}

#[tokio::test]
async fn a_truncated_image_is_a_permanent_failure() {
    let png = encode(&gradient(false), ImageFormat::Png);
    let cut = temp_blob(&png[..png.len() / 2]);
    let failure =
        run(&context(), "image_extractor", "v1", None, &json!({}), &[input("c", "image", &cut)])
            .await
            .unwrap_err();
    assert_eq!(failure.kind(), "permanent", "{failure}");
}

// Verification

#[test]
fn verify_accepts_blobs_that_are_what_they_claim() {
    let png = temp_blob(&encode(&gradient(false), ImageFormat::Png));
    assert_eq!(verify(&input("c", "image", &png)).unwrap(), "image/png");

    let text = temp_blob("Grüße aus Köln".as_bytes());
    assert_eq!(verify(&input("t", "text", &text)).unwrap(), "text/plain");
    let mut csv = input("t", "text", &text);
    csv.declared_mime = Some("text/csv");
    assert_eq!(verify(&csv).unwrap(), "text/csv");

    let pdf = temp_blob(&two_page_pdf());
    assert_eq!(verify(&input("p", "pdf", &pdf)).unwrap(), "application/pdf");

    let wav = temp_blob(&wav_bytes(8000, 1, 8, 8000));
    assert_eq!(verify(&input("a", "audio", &wav)).unwrap(), "audio/wav");
}

#[test]
fn verify_refuses_blobs_whose_content_contradicts_their_type() {
    let text = temp_blob(b"just some words, not pixels");
    let failure = verify(&input("cover", "image", &text)).unwrap_err();
    assert_eq!(failure.kind(), "permanent");
    assert!(failure.to_string().contains("declared as an image"), "{failure}");

    let png = temp_blob(&encode(&gradient(false), ImageFormat::Png));
    assert_eq!(verify(&input("notes", "text", &png)).unwrap_err().kind(), "permanent");
    assert_eq!(verify(&input("report", "pdf", &text)).unwrap_err().kind(), "permanent");
    assert_eq!(verify(&input("clip", "video", &png)).unwrap_err().kind(), "permanent");
    assert_eq!(verify(&input("sheet", "excel", &png)).unwrap_err().kind(), "permanent");

    // A PNG signature followed by garbage is not an image whose header decodes.
    let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
    broken.extend_from_slice(&[0u8; 64]);
    let broken = temp_blob(&broken);
    assert!(
        verify(&input("cover", "image", &broken))
            .unwrap_err()
            .to_string()
            .contains("does not decode")
    );
}

// Text

fn chunk_ranges(chunks: &[text::Chunk]) -> Vec<(usize, usize)> {
    chunks.iter().map(|c| (c.char_start, c.char_end)).collect()
}

#[test]
fn character_chunks_have_the_expected_boundaries() {
    let text: String = (0..2500).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let options =
        text::Options { split_by: text::SplitBy::Characters, chunk_size: 1000, chunk_overlap: 100 };
    let chunks = text::chunk_pages(&[&text], &options);

    assert_eq!(chunk_ranges(&chunks), vec![(0, 1000), (900, 1900), (1800, 2500)]);
    assert_eq!(chunks[1].text, text[900..1900]);
    assert_eq!(chunks[2].text.chars().count(), 700);

    let exact: String = text.chars().take(2000).collect();
    let no_overlap = text::Options { chunk_overlap: 0, ..options };
    assert_eq!(
        chunk_ranges(&text::chunk_pages(&[&exact], &no_overlap)),
        vec![(0, 1000), (1000, 2000)]
    );
}

#[test]
fn character_offsets_count_characters_not_bytes() {
    let text = "é".repeat(10);
    let options =
        text::Options { split_by: text::SplitBy::Characters, chunk_size: 4, chunk_overlap: 1 };
    let chunks = text::chunk_pages(&[&text], &options);
    assert_eq!(chunk_ranges(&chunks), vec![(0, 4), (3, 7), (6, 10)]);
    assert_eq!(chunks[0].text, "éééé");
}

#[test]
fn word_sentence_and_paragraph_chunks_follow_their_units() {
    let words = text::Options { split_by: text::SplitBy::Words, chunk_size: 3, chunk_overlap: 1 };
    let chunks = text::chunk_pages(&["one two three four five six"], &words);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["one two three", "three four five", "five six"]);
    assert_eq!(chunk_ranges(&chunks)[1], (8, 23));

    let sentences =
        text::Options { split_by: text::SplitBy::Sentences, chunk_size: 2, chunk_overlap: 0 };
    let chunks =
        text::chunk_pages(&["First one. Second one! Third? \"Fourth.\" Fifth"], &sentences);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["First one. Second one!", "Third? \"Fourth.\"", "Fifth"]);

    let paragraphs =
        text::Options { split_by: text::SplitBy::Paragraphs, chunk_size: 1, chunk_overlap: 0 };
    let chunks = text::chunk_pages(&["Alpha beta.\n\n\n  Gamma\ndelta.\n\nEpsilon"], &paragraphs);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["Alpha beta.", "Gamma\ndelta.", "Epsilon"]);

    let whole = text::Options { split_by: text::SplitBy::None, chunk_size: 1, chunk_overlap: 0 };
    assert_eq!(text::chunk_pages(&["a b c"], &whole).len(), 1);
    assert!(text::chunk_pages(&["  \n "], &whole).is_empty());
}

#[test]
fn pages_are_chunk_units_and_numbered() {
    let pages = text::Options { split_by: text::SplitBy::Pages, chunk_size: 1, chunk_overlap: 0 };
    let chunks = text::chunk_pages(&["Page one.", "", "Page three."], &pages);
    let found: Vec<(&str, usize, usize)> =
        chunks.iter().map(|c| (c.text.as_str(), c.page_start, c.page_end)).collect();
    assert_eq!(found, [("Page one.", 1, 1), ("Page three.", 3, 3)]);
    assert_eq!(chunk_ranges(&chunks), vec![(0, 9), (11, 22)]);
}

#[test]
fn normalisation_collapses_whitespace_drops_controls_and_composes() {
    let raw = "  Hello\t\u{a0} world \r\n\r\n\r\n  Next\u{200b} line\u{7}\rend  ";
    assert_eq!(text::normalise(raw), "Hello world\n\nNext line\nend");
    assert_eq!(text::normalise("Cafe\u{301}"), "Café");
    assert_eq!(text::normalise("Cafe\u{301}").chars().count(), 4);
}

#[test]
fn the_language_of_clear_sentences_is_detected() {
    let cases = [
        ("The committee will publish its report on the state of the economy.", "en"),
        ("Le comité publiera son rapport sur l'état de l'économie à la fin du mois.", "fr"),
        ("Der Ausschuss wird seinen Bericht über die Lage der Wirtschaft vorlegen.", "de"),
        ("El comité publicará su informe sobre el estado de la economía.", "es"),
        ("Il comitato pubblicherà il suo rapporto sulla situazione della economia.", "it"),
        ("O comitê vai publicar o seu relatório sobre o estado da economia.", "pt"),
        ("De commissie publiceert haar rapport over de toestand van de economie.", "nl"),
    ];
    for (sentence, expected) in cases {
        assert_eq!(lang::detect(sentence), expected, "{sentence}");
    }
    assert_eq!(lang::detect("Tokyo"), "und");
    assert_eq!(lang::detect("Съешь же ещё этих мягких французских булок"), "und");
}

#[test]
fn words_and_approximate_tokens_are_counted() {
    assert_eq!(text::word_count("Hello,  world!\nAgain"), 3);
    // hello: 2, ",": 1, world: 2, "!": 1
    assert_eq!(text::approximate_tokens("Hello, world!"), 6);
    assert_eq!(text::approximate_tokens("a I"), 2);
    assert_eq!(text::approximate_tokens("東京"), 2);
}

#[tokio::test]
async fn the_text_extractor_makes_one_document_per_chunk() {
    let sentence = "The quick brown fox jumps over the lazy dog and runs into the forest. ";
    let body = sentence.repeat(30);
    let blob = temp_blob(body.as_bytes());
    let image = temp_blob(&encode(&gradient(false), ImageFormat::Png));
    let blobs = [input("content", "text", &blob), input("cover", "image", &image)];
    let chosen = params(json!({"chunk_size": 500, "chunk_overlap": 50, "unknown_key": 1}));
    let docs =
        run(&context(), "text_extractor", "v1", Some(&chosen), &json!({}), &blobs).await.unwrap();

    // 2099 characters after trimming the last space: windows start every 450.
    assert_eq!(docs.len(), 5);
    let positions: Vec<&str> = docs.iter().map(|d| d.position.as_str()).collect();
    assert_eq!(
        positions,
        [
            "content#chunk-0",
            "content#chunk-1",
            "content#chunk-2",
            "content#chunk-3",
            "content#chunk-4"
        ]
    );
    let first = &docs[0].fields;
    assert_eq!(first["chunk_count"], 5);
    assert_eq!((first["char_start"].clone(), first["char_end"].clone()), (json!(0), json!(500)));
    assert_eq!(docs[4].fields["char_end"], 2099);
    assert_eq!(first["language"], "en");
    assert_eq!(first["source_blob_property"], "content");
    assert_eq!(first["split_by"], "characters");
    assert!(first["word_count"].as_u64().unwrap() > 80);
    assert!(!first.contains_key("embedding"));

    let again =
        run(&context(), "text_extractor", "v1", Some(&chosen), &json!({}), &blobs).await.unwrap();
    assert_eq!(docs, again);

    let no_text =
        run(&context(), "text_extractor", "v1", None, &json!({}), &blobs[1..]).await.unwrap();
    assert!(no_text.is_empty());
}

#[tokio::test]
async fn text_that_is_not_utf8_or_too_large_is_a_permanent_failure() {
    let latin1 = temp_blob(b"caf\xe9 cr\xe8me");
    let failure =
        run(&context(), "text_extractor", "v1", None, &json!({}), &[input("t", "text", &latin1)])
            .await
            .unwrap_err();
    assert_eq!(failure.kind(), "permanent");
    assert!(failure.to_string().contains("not valid UTF-8"), "{failure}");

    let big = temp_blob(&[b'a'; 2000]);
    let ctx = Context { max_decode_bytes: 1000, ..context() };
    let failure = run(&ctx, "text_extractor", "v1", None, &json!({}), &[input("t", "text", &big)])
        .await
        .unwrap_err();
    assert_eq!(failure.kind(), "permanent");
}

#[test]
fn utf16_text_with_a_byte_order_mark_is_decoded() {
    let mut bytes = vec![0xff, 0xfe];
    bytes.extend("Größe".encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(text::decode(&bytes, "t").unwrap(), "Größe");
}

// Audio and video

/// A PCM WAV file of silence.
fn wav_bytes(sample_rate: u32, channels: u16, bits: u16, frames: u32) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let data_len = frames * u32::from(block_align);
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    // A LIST chunk before the data, as many writers add; the parser must step over it.
    out.extend_from_slice(b"LIST");
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(b"INFOx\0");
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

#[test]
fn a_wav_header_gives_rate_channels_codec_and_duration() {
    let bytes = wav_bytes(44_100, 2, 16, 66_150);
    let facts = media::parse_wav(&mut Cursor::new(bytes)).unwrap();
    assert_eq!(facts.sample_rate, 44_100);
    assert_eq!(facts.channels, 2);
    assert_eq!(facts.bits_per_sample, 16);
    assert_eq!(facts.codec, "pcm_s16le");
    assert!((facts.duration_seconds - 1.5).abs() < 1e-9, "{}", facts.duration_seconds);

    let mut not_wav = Cursor::new(b"RIFF\0\0\0\0AVI LIST".to_vec());
    assert!(media::parse_wav(&mut not_wav).is_err());
}

#[tokio::test]
async fn the_multimodal_extractor_reads_wav_natively_and_says_when_ffprobe_is_missing() {
    let wav = temp_blob(&wav_bytes(16_000, 1, 16, 32_000));
    let mp3 = temp_blob(b"ID3\x04\0\0\0\0\0\0 and then frames would follow");
    let mp4 = temp_blob(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2 and then boxes");
    let blobs =
        [input("voice", "audio", &wav), input("song", "audio", &mp3), input("clip", "video", &mp4)];
    let docs =
        run(&context(), "multimodal_extractor", "v1", None, &json!({}), &blobs).await.unwrap();

    assert_eq!(docs.len(), 3);
    let voice = &docs[0].fields;
    assert_eq!(docs[0].position, "voice");
    assert_eq!(voice["media_probe"], "native");
    assert_eq!(voice["sample_rate"], 16_000);
    assert_eq!(voice["channels"], 1);
    assert_eq!(voice["duration_seconds"], 2.0);
    assert_eq!(voice["codec"], "pcm_s16le");

    let song = &docs[1].fields;
    assert_eq!(song["media_probe"], "unavailable: ffprobe is not installed");
    assert_eq!(song["mime_type"], "audio/mpeg");
    assert_eq!(song["size_bytes"], mp3.size);

    let clip = &docs[2];
    assert_eq!(clip.fields["media_probe"], "unavailable: ffprobe is not installed");
    assert_eq!(clip.fields["thumbnail_status"], "unavailable: ffprobe is not installed");
    assert_eq!(clip.fields["mime_type"], "video/mp4");
    assert!(clip.thumbnail.is_none());
}

/// Makes a media file with ffmpeg's test sources, or says why the test cannot run.
fn ffmpeg_file(args: &[&str], name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let ctx = Context::detect(None);
    let (Some(ffmpeg), Some(_)) = (ctx.ffmpeg, ctx.ffprobe) else {
        println!("skipped: ffmpeg and ffprobe are not both installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let status = std::process::Command::new(ffmpeg)
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make the test file");
    Some((dir, path))
}

#[tokio::test]
async fn ffprobe_reads_audio_and_ffmpeg_grabs_a_video_keyframe() {
    let Some((_dir, video)) = ffmpeg_file(
        &["-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25", "-c:v", "mpeg4"],
        "clip.mp4",
    ) else {
        return;
    };
    let Some((_dir2, audio)) = ffmpeg_file(
        &["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=22050", "-c:a", "flac"],
        "tone.flac",
    ) else {
        return;
    };
    let ctx = Context::detect(None);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let blobs = [
        BlobInput {
            property: "clip",
            blob_type: "video",
            path: &video,
            size: size(&video),
            declared_mime: None,
        },
        BlobInput {
            property: "tone",
            blob_type: "audio",
            path: &audio,
            size: size(&audio),
            declared_mime: None,
        },
    ];
    let docs = run(&ctx, "multimodal_extractor", "v1", None, &json!({}), &blobs).await.unwrap();

    let clip = &docs[0];
    assert_eq!(clip.fields["media_probe"], "ffprobe");
    assert_eq!(
        (clip.fields["width"].clone(), clip.fields["height"].clone()),
        (json!(320), json!(240))
    );
    assert_eq!(clip.fields["codec"], "mpeg4");
    assert_eq!(clip.fields["frame_rate"], 25.0);
    assert!((clip.fields["duration_seconds"].as_f64().unwrap() - 2.0).abs() < 0.1);
    assert_eq!(clip.fields["thumbnail_status"], "keyframe");
    let thumbnail = clip.thumbnail.as_ref().unwrap();
    let decoded = ::image::load_from_memory(&thumbnail.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (256, 192));

    let tone = &docs[1].fields;
    assert_eq!(tone["media_probe"], "ffprobe");
    assert_eq!(tone["codec"], "flac");
    assert_eq!(tone["sample_rate"], 22_050);
    assert_eq!(tone["channels"], 1);
    assert!((tone["duration_seconds"].as_f64().unwrap() - 1.0).abs() < 0.05);
}

// PDF

/// A two-page PDF: the first page's content stream plain, the second's Flate-compressed.
fn two_page_pdf() -> Vec<u8> {
    let page_one = concat!(
        "BT /F1 12 Tf 72 720 Td (Hello PDF world.) Tj ",
        "0 -14 Td [(Second) -250 (line \\(here\\))] TJ ET"
    )
    .as_bytes()
    .to_vec();
    let page_two_text = b"BT /F1 12 Tf 72 720 Td (Das ist die zweite Seite.) Tj ET";
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(page_two_text).unwrap();
    let page_two = encoder.finish().unwrap();

    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let object = |out: &mut Vec<u8>, number: u32, body: &[u8]| {
        out.extend_from_slice(format!("{number} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };
    object(&mut out, 1, b"<< /Type /Catalog /Pages 2 0 R >>");
    object(&mut out, 2, b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>");
    object(&mut out, 3, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R >>");
    object(&mut out, 4, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R >>");
    let mut stream = format!("<< /Length {} >>\nstream\n", page_one.len()).into_bytes();
    stream.extend_from_slice(&page_one);
    stream.extend_from_slice(b"\nendstream");
    object(&mut out, 5, &stream);
    let mut stream = b"<< /Length 7 0 R /Filter /FlateDecode >>\nstream\n".to_vec();
    stream.extend_from_slice(&page_two);
    stream.extend_from_slice(b"\nendstream");
    object(&mut out, 6, &stream);
    object(&mut out, 7, page_two.len().to_string().as_bytes());
    out.extend_from_slice(b"trailer\n<< /Size 8 /Root 1 0 R >>\n%%EOF\n");
    out
}

#[test]
fn a_hand_written_pdf_gives_its_page_count_and_text() {
    let pdf = pdf::read_pdf(&two_page_pdf(), 1 << 20).unwrap();
    assert_eq!(pdf.page_count, 2);
    assert_eq!(pdf.pages[0].trim(), "Hello PDF world.\nSecond line (here)");
    assert_eq!(pdf.pages[1].trim(), "Das ist die zweite Seite.");

    let failure = pdf::read_pdf(b"%PDF-1.4 but nothing else", 1 << 20).unwrap_err();
    assert_eq!(failure.kind(), "permanent");
}

#[tokio::test]
async fn the_multimodal_extractor_chunks_pdf_text_with_pages() {
    let pdf = temp_blob(&two_page_pdf());
    let sheet = temp_blob(b"name,amount\nwidget,3\n");
    let blobs = [input("report", "pdf", &pdf), input("sheet", "excel", &sheet)];
    let docs =
        run(&context(), "multimodal_extractor", "v1", None, &json!({}), &blobs).await.unwrap();

    assert_eq!(docs.len(), 2);
    let report = &docs[0];
    assert_eq!(report.position, "report#chunk-0");
    assert_eq!(report.fields["page_count"], 2);
    assert_eq!(
        (report.fields["page_start"].clone(), report.fields["page_end"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        report.fields["text"],
        "Hello PDF world.\nSecond line (here)\n\nDas ist die zweite Seite."
    );

    let sheet_doc = &docs[1];
    assert_eq!(sheet_doc.position, "sheet");
    assert_eq!(sheet_doc.fields["mime_type"], "text/csv");
    assert_eq!(sheet_doc.fields["size_bytes"], sheet.size);
}

// Passthrough

#[tokio::test]
async fn passthrough_copies_custom_fields_metadata_and_blob_references() {
    let object = json!({
        "object_id": "obj_1",
        "bucket_id": "bkt_1",
        "key_prefix": null,
        "status": "PENDING",
        "created_at": "2024-01-01T00:00:00Z",
        "metadata": {"team": "red"},
        "title": "Quarterly",
        "tags": ["a", "b"],
        "blobs": [{
            "blob_id": "blob_1", "property": "report", "type": "pdf",
            "properties": {"url": "https://example.com/r.pdf", "source": "url"},
            "details": {"filename": "r.pdf", "mime_type": "application/pdf", "size_bytes": 10}
        }]
    });
    let docs = run(&context(), "passthrough_extractor", "v1", None, &object, &[]).await.unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].position, "object");
    assert_eq!(
        Value::Object(docs[0].fields.clone()),
        json!({
            "title": "Quarterly",
            "tags": ["a", "b"],
            "metadata": {"team": "red"},
            "blobs": [{"property": "report", "type": "pdf", "blob_id": "blob_1",
                       "url": "https://example.com/r.pdf", "mime_type": "application/pdf",
                       "filename": "r.pdf", "size_bytes": 10}]
        })
    );

    let without = params(json!({"preserve_metadata": false}));
    let docs =
        run(&context(), "passthrough_extractor", "v1", Some(&without), &object, &[]).await.unwrap();
    assert!(!docs[0].fields.contains_key("metadata"));
}

// Catalog and parameter checks

#[test]
fn the_catalog_lists_the_four_builtins_with_the_required_keys() {
    let entries = catalog();
    let ids: Vec<&str> =
        entries.iter().map(|e| e["feature_extractor_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "text_extractor_v1",
            "image_extractor_v1",
            "multimodal_extractor_v1",
            "passthrough_extractor_v1"
        ]
    );
    let required = [
        "feature_extractor_name",
        "version",
        "feature_extractor_id",
        "description",
        "icon",
        "input_schema",
        "output_schema",
        "parameter_schema",
        "supported_input_types",
        "max_inputs",
        "default_parameters",
        "required_vector_indexes",
        "required_payload_indexes",
    ];
    for entry in &entries {
        for key in required {
            assert!(entry.get(key).is_some(), "{} lacks {key}", entry["feature_extractor_id"]);
        }
    }
    assert_eq!(
        describe("image_extractor_v1").unwrap()["feature_extractor_name"],
        "image_extractor"
    );
    assert!(describe("image_extractor_v2").is_none());
    assert!(describe("ocr_extractor_v1").is_none());
}

#[test]
fn check_refuses_unknown_extractors_and_invalid_parameters() {
    assert!(check("text_extractor", "v1", None).is_ok());
    assert!(check("ocr_extractor", "v1", None).unwrap_err().contains("unknown feature extractor"));
    assert!(check("text_extractor", "v2", None).unwrap_err().contains("no version"));

    let ok = params(
        json!({"chunk_size": 200, "chunk_overlap": 20, "split_by": "words", "something_else": [1]}),
    );
    assert!(check("text_extractor", "v1", Some(&ok)).is_ok());
    let cases = [
        json!({"chunk_size": "200"}),
        json!({"chunk_size": 0}),
        json!({"chunk_size": 10_001}),
        json!({"chunk_size": 2.5}),
        json!({"chunk_size": 100, "chunk_overlap": 100}),
        json!({"split_by": "markdown"}),
        json!({"source_type": "youtube"}),
        json!({"extractor_type": "image_extractor"}),
    ];
    for case in cases {
        assert!(check("text_extractor", "v1", Some(&params(case.clone()))).is_err(), "{case}");
    }
    assert!(
        check("image_extractor", "v1", Some(&params(json!({"enable_thumbnails": "yes"})))).is_err()
    );
    assert!(check("multimodal_extractor", "v1", Some(&params(json!({"run_ocr": 1})))).is_err());
    assert!(
        check(
            "multimodal_extractor",
            "v1",
            Some(&params(json!({"run_multimodal_embedding": true})))
        )
        .is_ok()
    );
    let rows = params(json!({"vector_fields": [{"name": "v"}]}));
    assert!(check("passthrough_extractor", "v1", Some(&rows)).is_err());
}

#[tokio::test]
async fn run_refuses_an_unknown_extractor_permanently() {
    let failure = run(&context(), "ocr_extractor", "v1", None, &json!({}), &[]).await.unwrap_err();
    assert_eq!(failure.kind(), "permanent");
}

#[test]
fn context_detection_finds_tools_only_where_they_are() {
    let ctx = Context::detect(None);
    assert_eq!(ctx.max_decode_bytes, DEFAULT_MAX_DECODE_BYTES);
    for tool in [&ctx.ffprobe, &ctx.ffmpeg].into_iter().flatten() {
        assert!(tool.is_file(), "{}", tool.display());
    }
}

#[test]
fn the_sdk_default_parameters_pass_the_check() {
    let text = json!({"extractor_type": "text_extractor", "source_type": "text",
        "split_by": "characters", "chunk_size": 1000, "chunk_overlap": 0,
        "segment_length_seconds": 120, "language": "en", "extract_captions": true});
    let image =
        json!({"extractor_type": "image_extractor", "enable_thumbnails": true, "use_cdn": false});
    let multimodal = json!({"extractor_type": "multimodal_extractor", "time_split_interval": 10,
        "run_transcription": false, "run_multimodal_embedding": true, "max_segment_duration": 30.0,
        "sensitivity": "low", "enable_thumbnails": true, "use_cdn": false,
        "output_dimensionality": 3072, "task_type": "RETRIEVAL_DOCUMENT"});
    let passthrough = json!({"extractor_type": "passthrough_extractor", "preserve_metadata": true});
    for (name, defaults) in [
        ("text_extractor", text),
        ("image_extractor", image),
        ("multimodal_extractor", multimodal),
        ("passthrough_extractor", passthrough),
    ] {
        assert_eq!(check(name, "v1", Some(&params(defaults))), Ok(()), "{name}");
    }
}
