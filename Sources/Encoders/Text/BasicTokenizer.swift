// BERT's "basic" tokenisation: clean the text, pad CJK ideographs with spaces, strip accents and
// lower-case, then split on whitespace and isolate punctuation. It reproduces Hugging Face's fast
// tokenizer (the `tokenizers` BertNormalizer + BertPreTokenizer), which is what `BertTokenizer` runs
// in transformers 5, down to the Unicode 8.0 character tables that library was built with.
// Deliberately not here: WordPiece, special tokens, `never_split` (transformers 5 ignores it too).
import Foundation

/// Splits raw text into the normalised words that WordPiece then cuts into sub-word pieces.
///
/// The steps, in the order the reference applies them:
/// 1. clean: drop NUL, U+FFFD and control/format/private-use characters; map whitespace to a space;
/// 2. pad every CJK ideograph with spaces so each becomes its own word;
/// 3. strip accents: canonical decomposition (NFD), then drop non-spacing marks (category Mn);
/// 4. lower-case, one code point at a time (no context-dependent rules such as a final sigma);
/// 5. split on whitespace, then make every punctuation character a word of its own.
/// Every step works on Unicode scalars (code points), never on Swift `Character`s (graphemes).
public struct BasicTokenizer: Sendable, Equatable {
    /// Whether to lower-case (`do_lower_case`).
    public var lowercase: Bool
    /// Whether to decompose and drop non-spacing marks (`strip_accents`, resolved: nil means `lowercase`).
    public var stripAccents: Bool
    /// Whether CJK ideographs become words of their own (`tokenize_chinese_chars`).
    public var tokenizeChineseCharacters: Bool
    /// Whether to drop control characters and map whitespace to spaces (`clean_text`).
    public var cleanText: Bool

    public init(
        lowercase: Bool = true, stripAccents: Bool? = nil, tokenizeChineseCharacters: Bool = true,
        cleanText: Bool = true
    ) {
        self.lowercase = lowercase
        self.stripAccents = stripAccents ?? lowercase
        self.tokenizeChineseCharacters = tokenizeChineseCharacters
        self.cleanText = cleanText
    }

    /// The words of `text`, for debugging and tests.
    public func words(_ text: String) -> [String] {
        var words: [String] = []
        forEachWord(in: Array(text.unicodeScalars)[...]) { word in
            var string = String.UnicodeScalarView()
            string.append(contentsOf: word)
            words.append(String(string))
        }
        return words
    }

    /// Calls `body` with each normalised word of `text`, in order.
    ///
    /// Splitting on whitespace before normalising a word is equivalent to the reference's
    /// normalise-then-split: canonical decompositions and lower-case mappings never produce
    /// whitespace, and canonical reordering never crosses a space (combining class 0).
    func forEachWord(in text: ArraySlice<Unicode.Scalar>, _ body: (ArraySlice<Unicode.Scalar>) -> Void) {
        // Steps 1 and 2 on the whole text.
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(text.count + 8)
        for scalar in text {
            if cleanText {
                if BertCharacterClass.isRemovedByCleaning(scalar) { continue }
                if BertCharacterClass.isWhitespace(scalar) {
                    cleaned.append(" ")
                    continue
                }
            }
            if tokenizeChineseCharacters && BertCharacterClass.isChineseCharacter(scalar) {
                cleaned.append(" ")
                cleaned.append(scalar)
                cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }

        // Steps 3 to 5 word by word.
        var normalized: [Unicode.Scalar] = []
        var wordStart = 0
        var index = 0
        while index <= cleaned.count {
            if index < cleaned.count && !BertCharacterClass.isWhitespace(cleaned[index]) {
                index += 1
                continue
            }
            if wordStart < index {
                normalize(cleaned[wordStart..<index], into: &normalized)
                splitOnPunctuation(normalized, body)
            }
            index += 1
            wordStart = index
        }
    }

    /// Steps 3 and 4 on one whitespace-free word: accent stripping, then lower-casing.
    func normalize(_ word: ArraySlice<Unicode.Scalar>, into output: inout [Unicode.Scalar]) {
        output.removeAll(keepingCapacity: true)
        if word.allSatisfy(\.isASCII) {
            // ASCII has no decompositions, marks or context: the common case, kept cheap.
            for scalar in word {
                let value = scalar.value
                output.append(lowercase && value >= 65 && value <= 90 ? Unicode.Scalar(value + 32)! : scalar)
            }
            return
        }
        var stripped: [Unicode.Scalar]
        if stripAccents {
            stripped = BertCharacterClass.canonicalDecomposition(word)
            stripped.removeAll(where: BertCharacterClass.isNonspacingMark)
        } else {
            stripped = Array(word)
        }
        guard lowercase else {
            output.append(contentsOf: stripped)
            return
        }
        for scalar in stripped {
            if scalar.isASCII {
                let value = scalar.value
                output.append(value >= 65 && value <= 90 ? Unicode.Scalar(value + 32)! : scalar)
            } else if scalar.properties.changesWhenLowercased {
                output.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                output.append(scalar)
            }
        }
    }

    /// Step 5 within a word: runs of non-punctuation stay together, each punctuation scalar is alone.
    func splitOnPunctuation(_ word: [Unicode.Scalar], _ body: (ArraySlice<Unicode.Scalar>) -> Void) {
        var runStart = 0
        for index in word.indices where BertCharacterClass.isPunctuation(word[index]) {
            if runStart < index { body(word[runStart..<index]) }
            body(word[index...index])
            runStart = index + 1
        }
        if runStart < word.count { body(word[runStart...]) }
    }
}

/// The character classes BERT's tokenisation depends on, as the reference computes them.
///
/// Hugging Face's `tokenizers` takes general categories from Unicode 8.0 tables (crate
/// `unicode_categories`), while Swift's are current. A scalar assigned after 8.0 therefore counts as
/// unassigned there: never removed, never punctuation, never a stripped mark. The few scalars whose
/// category changed since 8.0 are listed explicitly. White space, lower-casing and decomposition use
/// current Unicode data on both sides.
enum BertCharacterClass {
    /// Whether `scalar` was assigned by Unicode 8.0 (the reference's category tables).
    @inline(__always)
    static func isInUnicode8(_ scalar: Unicode.Scalar) -> Bool {
        guard let age = scalar.properties.age else { return false }
        return age.major < 8 || (age.major == 8 && age.minor == 0)
    }

    /// NUL, U+FFFD and controls (Cc except tab, newline, carriage return; Cf; Co): removed by cleaning.
    static func isRemovedByCleaning(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value == 0 || value == 0xFFFD { return true }
        if value == 9 || value == 10 || value == 13 { return false }
        if value < 0x80 { return value < 32 || value == 127 }
        switch scalar.properties.generalCategory {
        case .control, .format, .privateUse: return isInUnicode8(scalar)
        default: return false
        }
    }

    /// Tab, newline, carriage return and the Unicode White_Space property (Rust's `char::is_whitespace`).
    @inline(__always)
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return value == 32 || (value >= 9 && value <= 13) }
        return scalar.properties.isWhitespace
    }

    /// ASCII 33–47, 58–64, 91–96, 123–126, or a Unicode 8.0 punctuation category (P*).
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 {
            return (33...47).contains(value) || (58...64).contains(value) || (91...96).contains(value)
                || (123...126).contains(value)
        }
        // Punctuation in Unicode 8.0, no longer so today.
        if value == 0x166D || value == 0x111C9 { return true }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return isInUnicode8(scalar)
        default: return false
        }
    }

    /// A non-spacing mark (Mn) in Unicode 8.0: dropped when stripping accents.
    static func isNonspacingMark(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x1734, 0x1171E: return true  // Mn in 8.0, Mc today
        case 0x1885, 0x1886, 0xA9BD, 0x111C9: return false  // Lo, Mc, Po in 8.0; Mn today
        default: break
        }
        return scalar.properties.generalCategory == .nonspacingMark && isInUnicode8(scalar)
    }

    /// The CJK ideograph blocks of the reference's `is_chinese_char`.
    ///
    /// The fourth extension range starts at U+2B920, not at U+2B820 as in the original Python BERT:
    /// Extension E's first 256 ideographs are not padded by the reference.
    static func isChineseCharacter(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x3400 { return false }
        return (0x4E00...0x9FFF).contains(value) || (0x3400...0x4DBF).contains(value)
            || (0x20000...0x2A6DF).contains(value) || (0x2A700...0x2B73F).contains(value)
            || (0x2B740...0x2B81F).contains(value) || (0x2B920...0x2CEAF).contains(value)
            || (0xF900...0xFAFF).contains(value) || (0x2F800...0x2FA1F).contains(value)
    }

    /// Canonical decomposition (NFD) of a word: each scalar's full decomposition from Foundation,
    /// then the canonical ordering of combining marks across scalars.
    ///
    /// U+11938 (DIVES AKURU VOWEL SIGN O, Unicode 13) keeps its precomposed form: the reference's
    /// normalisation tables predate its decomposition. Marks assigned after those tables may still
    /// be reordered here and not there; no such difference shows on single code points.
    static func canonicalDecomposition(_ word: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(word.count + 4)
        for scalar in word {
            // ASCII and unified CJK ideographs have no decomposition; skipping Foundation for them
            // keeps Chinese text fast.
            let value = scalar.value
            if value < 0x80 || value == 0x11938 || (0x4E00...0x9FFF).contains(value)
                || (0x3400...0x4DBF).contains(value) || (0x20000...0x2CEAF).contains(value)
            {
                output.append(scalar)
            } else {
                output.append(contentsOf: String(scalar).decomposedStringWithCanonicalMapping.unicodeScalars)
            }
        }
        // Canonical ordering: a stable sort of each run of non-starters by combining class.
        var index = 1
        while index < output.count {
            let combiningClass = output[index].properties.canonicalCombiningClass.rawValue
            if combiningClass != 0 {
                var position = index
                while position > 0 {
                    let previous = output[position - 1].properties.canonicalCombiningClass.rawValue
                    if previous <= combiningClass || previous == 0 { break }
                    output.swapAt(position - 1, position)
                    position -= 1
                }
            }
            index += 1
        }
        return output
    }
}
