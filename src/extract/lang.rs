//! Guessing the language of a text from its function words.
//!
//! Function words ("the", "und", "les") are the most frequent words of a language and few of
//! them are shared, so counting them tells the common Latin-script languages apart on a
//! sentence or more. A word that several of the languages share counts for each of them in
//! proportion, so "de" (French, Spanish, Portuguese, Dutch) decides nothing on its own.
//!
//! Limitation: only English, French, German, Spanish, Italian, Portuguese and Dutch are
//! known; any other language, a text in another script, or a text too short to hold a few
//! function words is `"und"` (undetermined, as BCP 47 spells it).

/// The languages the detector knows, with their function words in lower case.
const LANGUAGES: [(&str, &[&str]); 7] = [
    (
        "en",
        &[
            "the", "and", "of", "to", "is", "in", "that", "it", "was", "for", "with", "as", "on",
            "are", "be", "this", "by", "have", "from", "not", "but", "at", "which", "they", "you",
            "he", "she", "we", "his", "her", "their", "were", "been", "has", "had", "would",
            "will", "there", "what", "an", "or", "can", "who", "all", "about", "when", "if", "its",
            "our", "than", "into",
        ],
    ),
    (
        "fr",
        &[
            "le", "la", "les", "des", "et", "est", "un", "une", "du", "en", "que", "qui", "dans",
            "pour", "pas", "sur", "au", "aux", "avec", "ce", "cette", "il", "elle", "sont", "ne",
            "se", "plus", "par", "nous", "vous", "je", "mais", "ou", "été", "être", "ont", "son",
            "sa", "ses", "leur", "comme", "tout", "très", "aussi", "où", "l", "d", "qu",
        ],
    ),
    (
        "de",
        &[
            "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu", "den", "dem", "des",
            "mit", "sich", "auf", "für", "von", "im", "es", "auch", "als", "an", "wird", "werden",
            "sind", "war", "hat", "haben", "dass", "aber", "wie", "oder", "noch", "nach", "bei",
            "nur", "einen", "einem", "einer", "wir", "ich", "sie", "er", "über", "kann", "durch",
        ],
    ),
    (
        "es",
        &[
            "el", "los", "las", "del", "y", "en", "que", "es", "un", "una", "por", "con", "para",
            "se", "no", "al", "lo", "como", "más", "su", "sus", "pero", "este", "esta", "son",
            "está", "también", "fue", "ha", "muy", "ya", "hay", "entre", "cuando", "todo", "sobre",
            "donde", "porque", "nos", "yo", "él", "ella",
        ],
    ),
    (
        "it",
        &[
            "il", "lo", "la", "gli", "le", "di", "e", "è", "che", "un", "una", "per", "con", "non",
            "del", "della", "dei", "delle", "nel", "nella", "sono", "si", "da", "al", "alla",
            "come", "anche", "più", "ma", "questo", "questa", "ha", "hanno", "era", "essere",
            "sul", "degli", "perché", "molto", "ci", "io", "lui", "lei", "l",
        ],
    ),
    (
        "pt",
        &[
            "o", "os", "as", "de", "do", "da", "dos", "das", "e", "é", "que", "um", "uma", "para",
            "com", "não", "em", "no", "na", "nos", "nas", "por", "se", "mais", "como", "mas", "ao",
            "foi", "são", "está", "seu", "sua", "também", "muito", "já", "quando", "ele", "ela",
            "eu", "você", "isso", "este", "esta", "pelo", "pela",
        ],
    ),
    (
        "nl",
        &[
            "de", "het", "een", "en", "van", "is", "dat", "die", "in", "op", "te", "voor", "met",
            "niet", "zijn", "er", "aan", "ook", "als", "bij", "door", "maar", "om", "dan", "nog",
            "naar", "uit", "worden", "wordt", "was", "werd", "heeft", "hebben", "deze", "dit",
            "wat", "ze", "hij", "zij", "we", "ik", "je", "kan", "over", "geen", "veel",
        ],
    ),
];

/// The code for a language the detector cannot name.
pub const UNDETERMINED: &str = "und";

/// The smallest score (in function words) a guess needs.
const MIN_SCORE: f64 = 2.0;

/// How much the best score must exceed the runner-up's.
const MIN_MARGIN: f64 = 1.25;

/// Only the first words are read: a few hundred settle the question.
const MAX_WORDS: usize = 2000;

/// The ISO 639-1 code of the text's language, or [`UNDETERMINED`].
pub fn detect(text: &str) -> &'static str {
    if !mostly_latin(text) {
        return UNDETERMINED;
    }

    let mut scores = [0.0f64; LANGUAGES.len()];
    let words = text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).take(MAX_WORDS);
    for word in words {
        let word = word.to_lowercase();
        let holders: Vec<usize> = LANGUAGES
            .iter()
            .enumerate()
            .filter(|(_, (_, list))| list.contains(&word.as_str()))
            .map(|(i, _)| i)
            .collect();
        for &i in &holders {
            scores[i] += 1.0 / holders.len() as f64;
        }
    }

    let mut ranked: Vec<(usize, f64)> = scores.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (best, best_score) = ranked[0];
    let runner_up = ranked[1].1;
    if best_score >= MIN_SCORE && best_score >= runner_up * MIN_MARGIN {
        LANGUAGES[best].0
    } else {
        UNDETERMINED
    }
}

/// Whether at least half of the letters are Latin (Basic Latin through Latin Extended-B).
fn mostly_latin(text: &str) -> bool {
    let (mut latin, mut letters) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()).take(MAX_WORDS * 5) {
        letters += 1;
        if (c as u32) < 0x250 {
            latin += 1;
        }
    }
    letters > 0 && latin * 2 >= letters
}
