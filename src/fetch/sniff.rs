//! Guessing a media type from the first bytes of a body.
//!
//! Servers often answer `application/octet-stream` or nothing at all, and callers mislabel
//! files; the magic numbers at the start of a file are a better witness for the formats that
//! extractors care about.

/// Guesses the media type of a body from its first bytes, or `None` when they match nothing
/// known.
///
/// Pass at least the first 512 bytes when you have them: the container formats (ZIP, Matroska,
/// Ogg) are told apart by names a little way into the file, and the text heuristic looks at
/// everything it is given.
pub fn sniff_mime(first_bytes: &[u8]) -> Option<&'static str> {
    let b = first_bytes;
    if b.is_empty() {
        return None;
    }

    if let Some(mime) = sniff_image(b) {
        return Some(mime);
    }
    if b.starts_with(b"%PDF-") {
        return Some("application/pdf");
    }
    if let Some(mime) = sniff_riff(b).or_else(|| sniff_iso_media(b)) {
        return Some(mime);
    }
    if b.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        // Matroska and WebM share the EBML header; its DocType element names which one.
        return Some(if contains(b, b"webm") { "video/webm" } else { "video/x-matroska" });
    }
    // Before the audio checks: a UTF-16 byte order mark (FF FE) also reads as an MPEG frame
    // sync, and text with a mark is far more common than MPEG layer I audio.
    if has_text_bom(b) {
        return Some("text/plain");
    }
    if let Some(mime) = sniff_audio(b) {
        return Some(mime);
    }
    if b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") {
        return Some(sniff_zip(b));
    }
    if b.starts_with(&[0x1f, 0x8b]) {
        return Some("application/gzip");
    }

    looks_like_text(b).then_some("text/plain")
}

fn sniff_image(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        Some("image/tiff")
    } else if b.starts_with(b"BM") && b.len() >= 14 && b[6..10] == [0, 0, 0, 0] {
        // "BM" alone is too common at the start of text; the reserved header bytes are zero.
        Some("image/bmp")
    } else {
        None
    }
}

/// RIFF containers name their form type at offset 8.
fn sniff_riff(b: &[u8]) -> Option<&'static str> {
    if !b.starts_with(b"RIFF") || b.len() < 12 {
        return None;
    }
    match &b[8..12] {
        b"WEBP" => Some("image/webp"),
        b"WAVE" => Some("audio/wav"),
        b"AVI " => Some("video/x-msvideo"),
        _ => None,
    }
}

/// ISO base media files (MP4, QuickTime, HEIF, AVIF) open with an `ftyp` box whose major brand
/// says which.
fn sniff_iso_media(b: &[u8]) -> Option<&'static str> {
    if b.len() < 12 || &b[4..8] != b"ftyp" {
        return None;
    }
    Some(match &b[8..12] {
        b"qt  " => "video/quicktime",
        b"M4A " | b"M4B " => "audio/mp4",
        b"avif" | b"avis" => "image/avif",
        b"heic" | b"heix" | b"heim" | b"heis" => "image/heic",
        b"mif1" | b"msf1" => "image/heif",
        b"3gp4" | b"3gp5" | b"3gp6" | b"3ge6" | b"3gg6" => "video/3gpp",
        _ => "video/mp4",
    })
}

fn sniff_audio(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"ID3") {
        return Some("audio/mpeg");
    }
    if b.starts_with(b"fLaC") {
        return Some("audio/flac");
    }
    if b.starts_with(b"OggS") {
        return Some(sniff_ogg(b));
    }
    if b.len() >= 4 && b[0] == 0xff && b[1] & 0xe0 == 0xe0 {
        return sniff_mpeg_frame(b[1], b[2]);
    }
    None
}

/// An Ogg stream names its codec in the first packet, right after the page header.
fn sniff_ogg(b: &[u8]) -> &'static str {
    if contains(b, b"\x80theora") {
        "video/ogg"
    } else if contains(b, b"\x01vorbis") || contains(b, b"OpusHead") || contains(b, b"\x7fFLAC") {
        "audio/ogg"
    } else {
        "application/ogg"
    }
}

/// An MPEG audio frame header: eleven sync bits, then version, layer, bitrate and sample rate.
/// The invalid field values are checked so that random binary rarely passes.
fn sniff_mpeg_frame(second: u8, third: u8) -> Option<&'static str> {
    let version = (second >> 3) & 0b11;
    let layer = (second >> 1) & 0b11;
    if layer == 0 {
        // Layer bits "00" mean an ADTS (AAC) header rather than MPEG audio.
        return (second & 0xf6 == 0xf0).then_some("audio/aac");
    }
    let bitrate = third >> 4;
    let sample_rate = (third >> 2) & 0b11;
    let valid = version != 0b01 && bitrate != 0b1111 && sample_rate != 0b11;
    valid.then_some("audio/mpeg")
}

/// ZIP archives hide their real type in entry names. Office Open XML files keep their parts
/// under `word/`, `xl/` or `ppt/`; OpenDocument and EPUB store their type in a first entry
/// called `mimetype`. Only the first bytes are searched, so a plain ZIP is the honest default.
fn sniff_zip(b: &[u8]) -> &'static str {
    const KNOWN_MIMETYPES: &[&str] = &[
        "application/epub+zip",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
    ];
    // The first local header's name sits at byte 30; a stored `mimetype` entry's content
    // follows the eight-byte name directly.
    if b.len() > 38 && &b[30..38] == b"mimetype" {
        let content = &b[38..];
        if let Some(mime) = KNOWN_MIMETYPES.iter().find(|m| content.starts_with(m.as_bytes())) {
            return mime;
        }
    }
    if contains(b, b"xl/") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else if contains(b, b"word/") {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    } else if contains(b, b"ppt/") {
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    } else {
        "application/zip"
    }
}

/// A UTF-8 or UTF-16 byte order mark.
fn has_text_bom(b: &[u8]) -> bool {
    b.starts_with(b"\xef\xbb\xbf") || b.starts_with(b"\xff\xfe") || b.starts_with(b"\xfe\xff")
}

/// UTF-8 with no control bytes other than the whitespace and escape characters that real text
/// files contain.
fn looks_like_text(b: &[u8]) -> bool {
    let valid_prefix = match std::str::from_utf8(b) {
        Ok(text) => text,
        // The sample may end in the middle of a multi-byte character; that is not binary.
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&b[..err.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid_prefix.is_empty()
        && valid_prefix
            .bytes()
            .all(|c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
        && !valid_prefix.contains('\u{7f}')
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
