//! Text: decoding, normalising, measuring and chunking.
//!
//! A text is a list of pages (a text blob's pages are separated by form feeds; a PDF's come
//! from its page tree). Each page is normalised, the pages are joined by a blank line, and the
//! joined text is cut into chunks by the `split_by` unit. Offsets in documents count
//! characters (Unicode scalar values) of the normalised text.

use std::ops::Range;

use serde_json::{Map, Value, json};
use unicode_normalization::UnicodeNormalization;

use super::{BlobInput, Context, Document, Failure, blob_fields, blocking, bounded_reader, lang};

/// Defaults of the text extractor's parameters, as the Mixpeek SDK declares them.
pub const DEFAULT_CHUNK_SIZE: usize = 1000;
pub const DEFAULT_CHUNK_OVERLAP: usize = 0;
pub const MAX_CHUNK_SIZE: usize = 10_000;
pub const MAX_CHUNK_OVERLAP: usize = 5_000;

/// The unit a text is cut by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    Characters,
    Words,
    Sentences,
    Paragraphs,
    Pages,
    /// The whole text as one chunk.
    None,
}

impl SplitBy {
    /// The strategies sluice implements, by their wire names.
    pub const SUPPORTED: [(&str, SplitBy); 6] = [
        ("characters", SplitBy::Characters),
        ("words", SplitBy::Words),
        ("sentences", SplitBy::Sentences),
        ("paragraphs", SplitBy::Paragraphs),
        ("pages", SplitBy::Pages),
        ("none", SplitBy::None),
    ];

    pub fn as_str(self) -> &'static str {
        Self::SUPPORTED.iter().find(|(_, s)| *s == self).map_or("characters", |(name, _)| name)
    }
}

/// How text is chunked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub split_by: SplitBy,
    /// Units per chunk.
    pub chunk_size: usize,
    /// Units a chunk repeats from the end of the one before; less than `chunk_size`.
    pub chunk_overlap: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            split_by: SplitBy::Characters,
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunk_overlap: DEFAULT_CHUNK_OVERLAP,
        }
    }
}

impl Options {
    /// Reads `split_by`, `chunk_size` and `chunk_overlap` from text extractor parameters, with
    /// the SDK's ranges. Other keys are ignored, except values that ask for what sluice does
    /// not do (YouTube captions, markdown sections, time segments), which are refused rather
    /// than silently treated as plain text.
    ///
    /// # Errors
    ///
    /// [`Failure::Permanent`] naming the first invalid parameter.
    pub fn from_params(params: &Map<String, Value>) -> Result<Options, Failure> {
        let invalid = |m: String| Failure::Permanent(m);
        let mut options = Options::default();

        if let Some(source) = optional_str(params, "source_type").map_err(invalid)?
            && source != "text"
        {
            return Err(invalid(format!(
                "source_type {source:?} is not supported; sluice reads text blobs only (\"text\")"
            )));
        }
        if let Some(split) = optional_str(params, "split_by").map_err(invalid)? {
            options.split_by = SplitBy::SUPPORTED
                .iter()
                .find(|(name, _)| *name == split)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    let names: Vec<&str> = SplitBy::SUPPORTED.iter().map(|(n, _)| *n).collect();
                    invalid(format!(
                        "split_by {split:?} is not supported; use one of {}",
                        names.join(", ")
                    ))
                })?;
        }
        if let Some(size) =
            optional_int(params, "chunk_size", 1, MAX_CHUNK_SIZE).map_err(invalid)?
        {
            options.chunk_size = size;
        }
        if let Some(overlap) =
            optional_int(params, "chunk_overlap", 0, MAX_CHUNK_OVERLAP).map_err(invalid)?
        {
            options.chunk_overlap = overlap;
        }
        if options.chunk_overlap >= options.chunk_size {
            return Err(invalid(format!(
                "chunk_overlap ({}) must be smaller than chunk_size ({})",
                options.chunk_overlap, options.chunk_size
            )));
        }
        Ok(options)
    }
}

/// A string parameter; absent and `null` read as unset.
pub fn optional_str<'a>(
    params: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// An integer parameter within `min..=max`; absent and `null` read as unset.
pub fn optional_int(
    params: &Map<String, Value>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, String> {
    let value = match params.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let n = value
        .as_u64()
        .filter(|_| value.is_u64())
        .ok_or_else(|| format!("{key} must be an integer from {min} to {max}"))?;
    usize::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| format!("{key} must be an integer from {min} to {max}"))
}

/// A boolean parameter; absent and `null` read as unset.
pub fn optional_bool(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{key} must be true or false")),
    }
}

/// One chunk of a normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    /// Character offsets into the normalised text, end exclusive.
    pub char_start: usize,
    pub char_end: usize,
    /// The 1-based pages the chunk starts and ends on.
    pub page_start: usize,
    pub page_end: usize,
}

/// Reads, normalises and chunks one text blob, one document per chunk. An empty text (or one
/// of whitespace only) gives no document.
pub async fn extract_blob(
    ctx: &Context,
    blob: &BlobInput<'_>,
    options: &Options,
) -> Result<Vec<Document>, Failure> {
    let read = bounded_reader(ctx, blob, "text");
    let property = blob.property.to_string();
    let options = *options;
    let chunks = blocking(move || {
        let text = decode(&read()?, &property)?;
        let pages: Vec<&str> = text.split('\u{c}').collect();
        Ok(chunk_pages(&pages, &options))
    })
    .await?;
    Ok(documents(blob, &chunks, options.split_by, false))
}

/// Turns chunks into documents positioned `{property}#chunk-{index}`. Page fields are added
/// when the source has pages of its own (a PDF).
pub fn documents(
    blob: &BlobInput,
    chunks: &[Chunk],
    split_by: SplitBy,
    paged: bool,
) -> Vec<Document> {
    // The language is the whole text's: a short chunk alone holds too few words to tell.
    let whole: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let language = lang::detect(&whole.join(" "));
    chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let mut fields = blob_fields(blob);
            fields.insert("text".into(), json!(chunk.text));
            fields.insert("chunk_index".into(), json!(index));
            fields.insert("chunk_count".into(), json!(chunks.len()));
            fields.insert("char_start".into(), json!(chunk.char_start));
            fields.insert("char_end".into(), json!(chunk.char_end));
            if paged {
                fields.insert("page_start".into(), json!(chunk.page_start));
                fields.insert("page_end".into(), json!(chunk.page_end));
            }
            fields.insert("split_by".into(), json!(split_by.as_str()));
            fields.insert("language".into(), json!(language));
            fields.insert("word_count".into(), json!(word_count(&chunk.text)));
            fields.insert("token_count".into(), json!(approximate_tokens(&chunk.text)));
            fields.insert("token_count_method".into(), json!(TOKEN_COUNT_METHOD));
            Document {
                position: format!("{}#chunk-{index}", blob.property),
                fields,
                thumbnail: None,
            }
        })
        .collect()
}

/// Decodes a text blob: UTF-8 (a leading byte order mark is dropped), or UTF-16 when a byte
/// order mark says so.
pub fn decode(bytes: &[u8], property: &str) -> Result<String, Failure> {
    if let Some(rest) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return decode(rest, property);
    }
    let utf16 = match bytes {
        [0xff, 0xfe, rest @ ..] => Some((rest, u16::from_le_bytes as fn([u8; 2]) -> u16)),
        [0xfe, 0xff, rest @ ..] => Some((rest, u16::from_be_bytes as fn([u8; 2]) -> u16)),
        _ => None,
    };
    if let Some((rest, read)) = utf16 {
        let units = rest.chunks_exact(2).map(|pair| read([pair[0], pair[1]]));
        return char::decode_utf16(units).collect::<Result<String, _>>().map_err(|_| {
            Failure::Permanent(format!("text blob {property:?} is not valid UTF-16"))
        });
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        Failure::Permanent(format!(
            "text blob {property:?} is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Normalises one page: NFC; line breaks to `\n`; other whitespace runs to one space;
/// control and zero-width format characters dropped; at most one blank line between
/// paragraphs; no space at the ends of lines or of the page.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut pending_newlines = 0usize;
    let mut previous_cr = false;
    for c in text.nfc() {
        let was_cr = std::mem::replace(&mut previous_cr, c == '\r');
        match c {
            '\n' if was_cr => {}
            '\n' | '\r' | '\u{2028}' | '\u{85}' => pending_newlines += 1,
            '\u{2029}' => pending_newlines += 2,
            c if c.is_whitespace() => pending_space = true,
            c if c.is_control() || is_invisible_format(c) => {}
            c => {
                if !out.is_empty() {
                    match pending_newlines {
                        0 if pending_space => out.push(' '),
                        0 => {}
                        1 => out.push('\n'),
                        _ => out.push_str("\n\n"),
                    }
                }
                pending_space = false;
                pending_newlines = 0;
                out.push(c);
            }
        }
    }
    out
}

/// Zero-width and directional marks that carry no text of their own.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}'
            | '\u{ad}'
    )
}

/// Normalises the pages, joins the non-empty ones with a blank line, and chunks the result.
pub fn chunk_pages(pages: &[&str], options: &Options) -> Vec<Chunk> {
    let mut text = String::new();
    let mut page_ranges: Vec<(Range<usize>, usize)> = Vec::new();
    for (number, page) in pages.iter().enumerate() {
        let page = normalise(page);
        if page.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        page_ranges.push((text.len()..text.len() + page.len(), number + 1));
        text.push_str(&page);
    }

    let units = match options.split_by {
        SplitBy::Characters => {
            return finish(&text, &page_ranges, character_chunks(&text, options));
        }
        SplitBy::Words => word_units(&text),
        SplitBy::Sentences => sentence_units(&text),
        SplitBy::Paragraphs => paragraph_units(&text),
        SplitBy::Pages => page_ranges.iter().map(|(range, _)| range.clone()).collect(),
        SplitBy::None => std::iter::once(0..text.len()).filter(|r| !r.is_empty()).collect(),
    };
    let ranges = group_units(&units, options.chunk_size, options.chunk_overlap);
    finish(&text, &page_ranges, ranges)
}

/// Fixed windows of `chunk_size` characters, each starting `chunk_size - chunk_overlap`
/// characters after the one before; the last window ends at the end of the text.
fn character_chunks(text: &str, options: &Options) -> Vec<Range<usize>> {
    let total = text.chars().count();
    let step = options.chunk_size - options.chunk_overlap;
    let mut windows = Vec::new();
    let mut start = 0;
    while start < total {
        let end = (start + options.chunk_size).min(total);
        windows.push((start, end));
        if end == total {
            break;
        }
        start += step;
    }

    // Map the window bounds from character to byte offsets in one pass over the text.
    let mut wanted: Vec<usize> = windows.iter().flat_map(|&(s, e)| [s, e]).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut bytes_at = std::collections::HashMap::with_capacity(wanted.len());
    let mut next = wanted.iter().peekable();
    for (chars, (byte, _)) in text.char_indices().chain([(text.len(), ' ')]).enumerate() {
        while next.peek().is_some_and(|&&w| w == chars) {
            bytes_at.insert(chars, byte);
            next.next();
        }
    }
    windows.into_iter().map(|(s, e)| bytes_at[&s]..bytes_at[&e]).collect()
}

/// Runs of non-whitespace.
fn word_units(text: &str) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                units.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        units.push(s..text.len());
    }
    units
}

/// Sentences end at `.`, `!`, `?` or `…` (with any closing quotes or brackets) followed by
/// whitespace, and at paragraph breaks.
///
/// Limitation: abbreviations such as "e.g." or "Dr." end a sentence too; there is no
/// abbreviation list.
fn sentence_units(text: &str) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut start = 0;
    let mut after_terminal = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let paragraph_break = c == '\n' && chars.peek().is_some_and(|&(_, n)| n == '\n');
        if (c.is_whitespace() && after_terminal) || paragraph_break {
            push_trimmed(&mut units, text, start..i);
            start = i;
            after_terminal = false;
        } else if matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？') {
            after_terminal = true;
        } else if !matches!(c, '"' | '\'' | ')' | ']' | '»' | '”' | '’') {
            after_terminal = false;
        }
    }
    push_trimmed(&mut units, text, start..text.len());
    units
}

/// Paragraphs are separated by a blank line (normalisation leaves exactly `\n\n` there).
fn paragraph_units(text: &str) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices("\n\n") {
        push_trimmed(&mut units, text, start..i);
        start = i + 2;
    }
    push_trimmed(&mut units, text, start..text.len());
    units
}

fn push_trimmed(units: &mut Vec<Range<usize>>, text: &str, range: Range<usize>) {
    let slice = &text[range.clone()];
    let lead = slice.len() - slice.trim_start().len();
    let trimmed = slice.trim();
    if !trimmed.is_empty() {
        units.push(range.start + lead..range.start + lead + trimmed.len());
    }
}

/// Groups units into chunks of `size` units, each starting `size - overlap` units after the
/// one before; a chunk spans from its first unit's start to its last unit's end.
fn group_units(units: &[Range<usize>], size: usize, overlap: usize) -> Vec<Range<usize>> {
    let step = size - overlap;
    let mut chunks = Vec::new();
    let mut first = 0;
    while first < units.len() {
        let last = (first + size).min(units.len()) - 1;
        chunks.push(units[first].start..units[last].end);
        if last == units.len() - 1 {
            break;
        }
        first += step;
    }
    chunks
}

/// Turns byte ranges into chunks with character offsets and page numbers.
fn finish(text: &str, pages: &[(Range<usize>, usize)], ranges: Vec<Range<usize>>) -> Vec<Chunk> {
    let mut wanted: Vec<usize> = ranges.iter().flat_map(|r| [r.start, r.end]).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut chars_at = std::collections::HashMap::with_capacity(wanted.len());
    let mut next = wanted.iter().peekable();
    for (chars, (byte, _)) in text.char_indices().chain([(text.len(), ' ')]).enumerate() {
        while next.peek().is_some_and(|&&w| w == byte) {
            chars_at.insert(byte, chars);
            next.next();
        }
    }

    let page_of = |byte: usize| {
        let index = pages.partition_point(|(range, _)| range.end <= byte);
        pages.get(index).or(pages.last()).map_or(1, |(_, number)| *number)
    };
    ranges
        .into_iter()
        .map(|range| Chunk {
            text: text[range.clone()].to_string(),
            char_start: chars_at[&range.start],
            char_end: chars_at[&range.end],
            page_start: page_of(range.start),
            page_end: page_of(range.end.saturating_sub(1).max(range.start)),
        })
        .collect()
}

/// Words are runs of non-whitespace.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// How [`approximate_tokens`] counts, for the documents that carry its number.
pub const TOKEN_COUNT_METHOD: &str = "approximate: one token per 4 letters or digits of a word \
     (at least one per word), one per punctuation mark, one per CJK character";

/// An estimate of a subword tokenizer's count (BPE or WordPiece, as embedding models use).
///
/// Such tokenizers keep common short words whole and cut longer words into pieces of about
/// four characters, and give each punctuation mark a token of its own. So: each run of
/// letters and digits counts `ceil(len / 4)` tokens, each other visible character one, and
/// each Chinese, Japanese or Korean character one, since those tokenizers split them singly.
/// For English prose this lands within about 15% of real tokenizers' counts; it is an
/// estimate, not any particular model's count.
pub fn approximate_tokens(text: &str) -> usize {
    let mut tokens = 0;
    let mut run = 0usize;
    for c in text.chars() {
        if c.is_alphanumeric() && !is_cjk(c) {
            run += 1;
            continue;
        }
        tokens += run.div_ceil(4);
        run = 0;
        if !c.is_whitespace() {
            tokens += 1;
        }
    }
    tokens + run.div_ceil(4)
}

fn is_cjk(c: char) -> bool {
    // Kana, CJK ideographs (with extension A and compatibility forms) and Hangul syllables.
    matches!(
        c as u32,
        0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff
    )
}
