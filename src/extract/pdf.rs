//! PDF: the page count and the text of each page, read by a small parser of our own.
//!
//! Objects are found by scanning for `N G obj` rather than through the cross-reference table,
//! which also reads files whose table is damaged; objects packed into object streams are read
//! too. Pages come from the catalog's page tree in reading order. A page's text is what its
//! content streams show with `Tj`, `TJ`, `'` and `"`, with line breaks where the text moves to
//! a new line. Streams are read when unfiltered or Flate-compressed.
//!
//! Limitation: text in fonts with two-byte or custom encodings (most CID fonts) is not mapped
//! through the font's ToUnicode table, so such pages come out empty; scanned pages have no
//! text at all; encrypted files give their page count but no text; streams compressed with
//! other filters (LZW, ASCII85) are skipped.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use serde_json::json;

use super::text::{self, Options as TextOptions};
use super::{BlobInput, Context, Document, Failure, blob_fields, blocking, bounded_reader};

/// How deep the page tree may nest before the parser gives up on a branch.
const MAX_TREE_DEPTH: usize = 64;

/// A PDF object, as far as text extraction needs it.
#[derive(Debug, Clone, PartialEq)]
enum Obj {
    Null,
    Bool(bool),
    Num(f64),
    Name(Vec<u8>),
    Str(Vec<u8>),
    Array(Vec<Obj>),
    Dict(Vec<(Vec<u8>, Obj)>),
    Ref(u32),
    /// A bare keyword: an operator in a content stream, or `stream`/`endobj` in a file.
    Keyword(Vec<u8>),
}

impl Obj {
    fn get(&self, key: &[u8]) -> Option<&Obj> {
        match self {
            Obj::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn is_name(&self, name: &[u8]) -> bool {
        matches!(self, Obj::Name(n) if n == name)
    }
}

/// What reading a PDF found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfText {
    pub page_count: usize,
    /// The text of each page, in page order.
    pub pages: Vec<String>,
}

/// The documents of one PDF blob: its text in chunks, each with the page count, or one
/// document at the blob's property when no text could be read.
pub async fn extract_blob(
    ctx: &Context,
    blob: &BlobInput<'_>,
    options: &TextOptions,
) -> Result<Vec<Document>, Failure> {
    let read = bounded_reader(ctx, blob, "PDF");
    let limit = ctx.max_decode_bytes;
    let options = *options;
    let (page_count, chunks) = blocking(move || {
        let pdf = read_pdf(&read()?, limit)?;
        let pages: Vec<&str> = pdf.pages.iter().map(String::as_str).collect();
        Ok((pdf.page_count, text::chunk_pages(&pages, &options)))
    })
    .await?;

    let mut documents = text::documents(blob, &chunks, options.split_by, true);
    if documents.is_empty() {
        let mut fields = blob_fields(blob);
        fields.insert("text_status".into(), json!("no extractable text"));
        documents.push(Document { position: blob.property.to_string(), fields, thumbnail: None });
    }
    for document in &mut documents {
        document.fields.insert("mime_type".into(), json!("application/pdf"));
        document.fields.insert("page_count".into(), json!(page_count));
    }
    Ok(documents)
}

/// Reads the page count and page texts of a PDF. Decompressed streams may take at most
/// `limit` bytes each.
///
/// # Errors
///
/// [`Failure::Permanent`] when the bytes are not a PDF or no page can be found.
pub fn read_pdf(bytes: &[u8], limit: u64) -> Result<PdfText, Failure> {
    if !bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        return Err(Failure::Permanent("the blob is not a PDF (no %PDF- header)".into()));
    }
    let file = File::index(bytes, limit);
    let pages = file.pages();
    if pages.is_empty() {
        let count = file.count_page_objects();
        if count == 0 {
            return Err(Failure::Permanent("the PDF has no page that sluice can find".into()));
        }
        return Ok(PdfText { page_count: count, pages: Vec::new() });
    }
    let texts = pages.iter().map(|page| file.page_text(page)).collect();
    Ok(PdfText { page_count: pages.len(), pages: texts })
}

/// Where an object's text starts: in the file, or in a decoded object stream.
#[derive(Debug, Clone, Copy)]
enum Location {
    File(usize),
    Packed { stream: usize, offset: usize },
}

struct File<'a> {
    bytes: &'a [u8],
    limit: u64,
    objects: HashMap<u32, Location>,
    packed: Vec<Vec<u8>>,
}

impl<'a> File<'a> {
    fn index(bytes: &'a [u8], limit: u64) -> File<'a> {
        let mut file = File { bytes, limit, objects: HashMap::new(), packed: Vec::new() };
        for (number, offset) in scan_objects(bytes) {
            file.objects.insert(number, Location::File(offset));
        }
        file.unpack_object_streams();
        file
    }

    /// Adds the objects packed in object streams, where the file does not define them itself.
    fn unpack_object_streams(&mut self) {
        let mut numbers: Vec<u32> = self.objects.keys().copied().collect();
        numbers.sort_unstable();
        for number in numbers {
            let Some(dict) = self.get(number) else { continue };
            if !dict.get(b"Type").is_some_and(|t| t.is_name(b"ObjStm")) {
                continue;
            }
            let Some((_, Some(data))) = self.object(number) else { continue };
            let (Some(Obj::Num(count)), Some(Obj::Num(first))) =
                (dict.get(b"N"), dict.get(b"First"))
            else {
                continue;
            };
            let (count, first) = (*count as usize, *first as usize);
            let mut lexer = Lexer::new(&data);
            let stream = self.packed.len();
            for _ in 0..count {
                let (Some(Obj::Num(n)), Some(Obj::Num(offset))) = (lexer.next(), lexer.next())
                else {
                    break;
                };
                let location = Location::Packed { stream, offset: first + offset as usize };
                self.objects.entry(n as u32).or_insert(location);
            }
            self.packed.push(data);
        }
    }

    /// An object, and where its stream data starts in its source when it is a stream.
    fn locate(&self, number: u32) -> Option<(Obj, &[u8], Option<usize>)> {
        let (source, offset) = match *self.objects.get(&number)? {
            Location::File(offset) => (self.bytes, offset),
            Location::Packed { stream, offset } => (self.packed.get(stream)?.as_slice(), offset),
        };
        let mut lexer = Lexer::new(source);
        lexer.pos = offset;
        let obj = lexer.object()?;
        let data_start = match lexer.next() {
            Some(Obj::Keyword(k)) if k == b"stream" => Some(lexer.pos),
            _ => None,
        };
        Some((obj, source, data_start))
    }

    /// An object without its stream data.
    fn get(&self, number: u32) -> Option<Obj> {
        self.locate(number).map(|(obj, _, _)| obj)
    }

    /// An object and, when it is a stream, its decoded data.
    fn object(&self, number: u32) -> Option<(Obj, Option<Vec<u8>>)> {
        let (obj, source, data_start) = self.locate(number)?;
        let data = data_start.and_then(|start| self.stream_data(&obj, source, start));
        Some((obj, data))
    }

    fn resolve(&self, obj: &Obj) -> Obj {
        match obj {
            Obj::Ref(n) => self.get(*n).unwrap_or(Obj::Null),
            other => other.clone(),
        }
    }

    /// The decoded data of a stream whose `stream` keyword ends at `start`.
    fn stream_data(&self, dict: &Obj, source: &[u8], start: usize) -> Option<Vec<u8>> {
        let mut start = start;
        if source.get(start) == Some(&b'\r') {
            start += 1;
        }
        if source.get(start) == Some(&b'\n') {
            start += 1;
        }
        let declared = match dict.get(b"Length").map(|l| self.resolve_length(l)) {
            Some(Some(len)) if start + len <= source.len() => Some(len),
            _ => None,
        };
        let end = declared.map(|len| start + len).or_else(|| {
            find(&source[start..], b"endstream").map(|i| {
                let mut end = start + i;
                while end > start && matches!(source[end - 1], b'\r' | b'\n') {
                    end -= 1;
                }
                end
            })
        })?;
        self.decode(dict, &source[start..end])
    }

    fn resolve_length(&self, length: &Obj) -> Option<usize> {
        match self.resolve(length) {
            Obj::Num(n) if n >= 0.0 => Some(n as usize),
            _ => None,
        }
    }

    /// Applies the stream's filters: none, or FlateDecode. Other filters give `None`.
    fn decode(&self, dict: &Obj, raw: &[u8]) -> Option<Vec<u8>> {
        let filters = match dict.get(b"Filter").map(|f| self.resolve(f)) {
            None | Some(Obj::Null) => Vec::new(),
            Some(Obj::Name(name)) => vec![name],
            Some(Obj::Array(items)) => items
                .into_iter()
                .filter_map(|i| if let Obj::Name(n) = i { Some(n) } else { None })
                .collect(),
            Some(_) => return None,
        };
        let mut data = raw.to_vec();
        for filter in filters {
            if filter != b"FlateDecode" && filter != b"Fl" {
                return None;
            }
            data = inflate(&data, self.limit)?;
        }
        Some(data)
    }

    /// The page dictionaries in reading order, from the catalog's page tree.
    fn pages(&self) -> Vec<Obj> {
        let Some(catalog) = self.catalog() else { return Vec::new() };
        let mut pages = Vec::new();
        let mut seen = HashSet::new();
        if let Some(root) = catalog.get(b"Pages") {
            self.walk(root, 0, &mut seen, &mut pages);
        }
        pages
    }

    fn walk(&self, node: &Obj, depth: usize, seen: &mut HashSet<u32>, pages: &mut Vec<Obj>) {
        if depth > MAX_TREE_DEPTH {
            return;
        }
        if let Obj::Ref(n) = node
            && !seen.insert(*n)
        {
            return;
        }
        let node = self.resolve(node);
        match self.resolve(node.get(b"Kids").unwrap_or(&Obj::Null)) {
            Obj::Array(kids) => {
                for kid in &kids {
                    self.walk(kid, depth + 1, seen, pages);
                }
            }
            _ if node.get(b"Type").is_some_and(|t| t.is_name(b"Page")) => pages.push(node),
            _ => {}
        }
    }

    /// The document catalog: the trailer's `/Root`, or else the last `/Type /Catalog` object.
    fn catalog(&self) -> Option<Obj> {
        let from_trailer = rfind(self.bytes, b"trailer").and_then(|at| {
            let mut lexer = Lexer::new(self.bytes);
            lexer.pos = at + b"trailer".len();
            lexer.object()
        });
        if let Some(root) = from_trailer.as_ref().and_then(|t| t.get(b"Root")) {
            let catalog = self.resolve(root);
            if catalog.get(b"Pages").is_some() {
                return Some(catalog);
            }
        }
        let mut numbers: Vec<u32> = self.objects.keys().copied().collect();
        numbers.sort_unstable();
        numbers.into_iter().rev().find_map(|n| {
            let obj = self.get(n)?;
            obj.get(b"Type").is_some_and(|t| t.is_name(b"Catalog")).then_some(obj)
        })
    }

    /// The number of `/Type /Page` objects, for files whose page tree cannot be followed.
    fn count_page_objects(&self) -> usize {
        self.objects
            .keys()
            .filter_map(|&n| self.get(n))
            .filter(|obj| obj.get(b"Type").is_some_and(|t| t.is_name(b"Page")))
            .count()
    }

    /// The text a page's content streams show.
    fn page_text(&self, page: &Obj) -> String {
        let contents = match page.get(b"Contents") {
            Some(Obj::Array(items)) => items.clone(),
            Some(Obj::Ref(n)) => match self.get(*n) {
                Some(Obj::Array(items)) => items,
                _ => vec![Obj::Ref(*n)],
            },
            _ => Vec::new(),
        };
        let mut content = Vec::new();
        for item in contents {
            if let Obj::Ref(n) = item
                && let Some((_, Some(data))) = self.object(n)
            {
                content.extend_from_slice(&data);
                content.push(b'\n');
            }
        }
        content_text(&content)
    }
}

/// Inflates zlib data, keeping what decoded before an error (damaged streams often still
/// hold readable text), and at most `limit` bytes.
fn inflate(data: &[u8], limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let result = flate2::read::ZlibDecoder::new(data).take(limit).read_to_end(&mut out);
    (result.is_ok() || !out.is_empty()).then_some(out)
}

/// Every `N G obj` in the file, as (object number, offset after `obj`); a later definition of
/// the same number (an incremental update) wins.
fn scan_objects(bytes: &[u8]) -> Vec<(u32, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], b"obj") {
        let at = from + i;
        from = at + 3;
        if bytes.get(at + 3).is_some_and(|&c| is_regular(c)) {
            continue;
        }
        let mut p = at;
        let skip_space = |p: &mut usize| {
            let start = *p;
            while *p > 0 && is_space(bytes[*p - 1]) {
                *p -= 1;
            }
            *p < start
        };
        let digits = |p: &mut usize| {
            let end = *p;
            while *p > 0 && bytes[*p - 1].is_ascii_digit() {
                *p -= 1;
            }
            (*p < end)
                .then(|| std::str::from_utf8(&bytes[*p..end]).ok()?.parse::<u32>().ok())
                .flatten()
        };
        if !skip_space(&mut p) || digits(&mut p).is_none() || !skip_space(&mut p) {
            continue;
        }
        let Some(number) = digits(&mut p) else { continue };
        if p == 0 || !is_regular(bytes[p - 1]) {
            found.push((number, at + 3));
        }
    }
    found
}

/// The text shown by a content stream's text operators.
fn content_text(content: &[u8]) -> String {
    let mut out = String::new();
    let mut operands: Vec<Obj> = Vec::new();
    let mut last_y: Option<f64> = None;
    let mut lexer = Lexer::new(content);
    while let Some(token) = lexer.next() {
        let Obj::Keyword(op) = token else {
            operands.push(token);
            continue;
        };
        match op.as_slice() {
            b"Tj" => show(&mut out, operands.last()),
            b"'" | b"\"" => {
                newline(&mut out);
                show(&mut out, operands.last());
            }
            b"TJ" => {
                if let Some(Obj::Array(items)) = operands.last() {
                    for item in items {
                        match item {
                            Obj::Str(_) => show(&mut out, Some(item)),
                            // A large negative adjustment is a gap between words.
                            Obj::Num(n) if *n < -200.0 => space(&mut out),
                            _ => {}
                        }
                    }
                }
            }
            b"Td" | b"TD" => match operands.as_slice() {
                [.., _, Obj::Num(ty)] if *ty != 0.0 => newline(&mut out),
                _ => space(&mut out),
            },
            b"Tm" => {
                let y = match operands.as_slice() {
                    [.., Obj::Num(f)] => Some(*f),
                    _ => None,
                };
                if y != last_y && last_y.is_some() {
                    newline(&mut out)
                } else {
                    space(&mut out)
                }
                last_y = y;
            }
            b"T*" | b"ET" => newline(&mut out),
            b"BI" => lexer.skip_inline_image(),
            _ => {}
        }
        operands.clear();
    }
    out
}

fn show(out: &mut String, operand: Option<&Obj>) {
    if let Some(Obj::Str(bytes)) = operand {
        out.push_str(&decode_string(bytes));
    }
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with(char::is_whitespace) {
        out.push(' ');
    }
}

fn newline(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// A text string: UTF-16 with a byte order mark, or one byte per character (PDFDocEncoding
/// and WinAnsi agree with Latin-1 on the printable range). Strings that are mostly control
/// bytes are two-byte glyph codes of a CID font, which cannot be read without the font's
/// mapping; they give nothing rather than noise.
fn decode_string(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xfe, 0xff]) {
        let units = rest.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
        return char::decode_utf16(units).map(|c| c.unwrap_or('\u{fffd}')).collect();
    }
    let control =
        bytes.iter().filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t')).count();
    if control * 10 > bytes.len() * 3 {
        return String::new();
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b'\x0c' | b'\0')
}

fn is_delimiter(c: u8) -> bool {
    matches!(c, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

fn is_regular(c: u8) -> bool {
    !is_space(c) && !is_delimiter(c)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A tokenizer of PDF syntax that also assembles arrays, dictionaries and references.
struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Lexer { bytes, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(c) = self.peek() {
            if is_space(c) {
                self.pos += 1;
            } else if c == b'%' {
                while self.peek().is_some_and(|c| c != b'\n' && c != b'\r') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    /// The next object, with `N G R` read as a reference.
    fn object(&mut self) -> Option<Obj> {
        let first = self.next()?;
        if let Obj::Num(n) = first
            && n.fract() == 0.0
            && n >= 0.0
        {
            let save = self.pos;
            if let Some(Obj::Num(_)) = self.next()
                && let Some(Obj::Keyword(k)) = self.next()
                && k == b"R"
            {
                return Some(Obj::Ref(n as u32));
            }
            self.pos = save;
        }
        Some(first)
    }

    /// The next token or composite object; `None` at the end of the input.
    fn next(&mut self) -> Option<Obj> {
        loop {
            self.skip_space_and_comments();
            let c = self.peek()?;
            return Some(match c {
                b'/' => Obj::Name(self.name()),
                b'(' => Obj::Str(self.literal_string()),
                b'<' if self.bytes.get(self.pos + 1) == Some(&b'<') => {
                    self.pos += 2;
                    self.dict()
                }
                b'<' => Obj::Str(self.hex_string()),
                b'[' => {
                    self.pos += 1;
                    self.array()
                }
                b'+' | b'-' | b'.' | b'0'..=b'9' => self.number(),
                c if is_regular(c) => {
                    let start = self.pos;
                    while self.peek().is_some_and(is_regular) {
                        self.pos += 1;
                    }
                    match &self.bytes[start..self.pos] {
                        b"true" => Obj::Bool(true),
                        b"false" => Obj::Bool(false),
                        b"null" => Obj::Null,
                        word => Obj::Keyword(word.to_vec()),
                    }
                }
                _ => {
                    // A stray delimiter (`)`, `>`, `]`, braces): skip it.
                    self.pos += 1;
                    continue;
                }
            });
        }
    }

    fn name(&mut self) -> Vec<u8> {
        self.pos += 1;
        let mut name = Vec::new();
        while let Some(c) = self.peek().filter(|&c| is_regular(c)) {
            self.pos += 1;
            let escaped = (c == b'#')
                .then(|| self.bytes.get(self.pos..self.pos + 2))
                .flatten()
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            match escaped {
                Some(byte) => {
                    name.push(byte);
                    self.pos += 2;
                }
                None => name.push(c),
            }
        }
        name
    }

    fn number(&mut self) -> Obj {
        let start = self.pos;
        self.pos += 1;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("0");
        Obj::Num(text.parse().unwrap_or(0.0))
    }

    fn literal_string(&mut self) -> Vec<u8> {
        self.pos += 1;
        let mut out = Vec::new();
        let mut depth = 1;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'(' => {
                    depth += 1;
                    out.push(c);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    out.push(c);
                }
                b'\\' => self.escape(&mut out),
                c => out.push(c),
            }
        }
        out
    }

    fn escape(&mut self, out: &mut Vec<u8>) {
        let Some(c) = self.peek() else { return };
        self.pos += 1;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'\r' => {
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
            }
            b'\n' => {}
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xff) as u8);
            }
            other => out.push(other),
        }
    }

    fn hex_string(&mut self) -> Vec<u8> {
        self.pos += 1;
        let mut digits = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b'>' {
                break;
            }
            if let Some(d) = char::from(c).to_digit(16) {
                digits.push(d as u8);
            }
        }
        if digits.len() % 2 == 1 {
            digits.push(0);
        }
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn array(&mut self) -> Obj {
        let mut items = Vec::new();
        loop {
            self.skip_space_and_comments();
            match self.peek() {
                None => break,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => match self.object() {
                    Some(item) => items.push(item),
                    None => break,
                },
            }
        }
        Obj::Array(items)
    }

    fn dict(&mut self) -> Obj {
        let mut entries = Vec::new();
        loop {
            self.skip_space_and_comments();
            match (self.peek(), self.bytes.get(self.pos + 1)) {
                (None, _) => break,
                (Some(b'>'), Some(b'>')) => {
                    self.pos += 2;
                    break;
                }
                (Some(b'/'), _) => {
                    let key = self.name();
                    match self.object() {
                        Some(value) => entries.push((key, value)),
                        None => break,
                    }
                }
                _ => self.pos += 1,
            }
        }
        Obj::Dict(entries)
    }

    /// Skips an inline image (`BI ... ID <binary> EI`), whose data the tokenizer cannot read.
    fn skip_inline_image(&mut self) {
        let rest = &self.bytes[self.pos..];
        let Some(id) = find(rest, b"ID") else {
            self.pos = self.bytes.len();
            return;
        };
        let data = id + 2;
        let end = rest[data..]
            .windows(4)
            .position(|w| {
                is_space(w[0]) && &w[1..3] == b"EI" && (is_space(w[3]) || is_delimiter(w[3]))
            })
            .map_or(rest.len(), |i| data + i + 3);
        self.pos += end;
    }
}
