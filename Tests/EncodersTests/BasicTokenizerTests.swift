// Unit tests for the pieces of BERT's basic tokenisation: the character classes (including the
// Unicode 8.0 quirks of the reference), each normalisation step, and word splitting.
import Testing

@testable import Encoders

@Suite struct BasicTokenizerTests {
    private func scalar(_ value: UInt32) -> Unicode.Scalar { Unicode.Scalar(value)! }

    @Test func asciiPunctuationIsExactlyBertsRanges() {
        for value in UInt32(0)..<128 {
            let expected = (33...47).contains(value) || (58...64).contains(value) || (91...96).contains(value)
                || (123...126).contains(value)
            #expect(BertCharacterClass.isPunctuation(scalar(value)) == expected, "U+\(value)")
        }
    }

    @Test func unicodePunctuationUsesUnicode8Categories() {
        for value: UInt32 in [0xA1, 0xA7, 0xBF, 0x2014, 0x2026, 0x300C, 0xFF01, 0x055D] {
            #expect(BertCharacterClass.isPunctuation(scalar(value)), "U+\(String(value, radix: 16)) is P*")
        }
        // Symbols are not punctuation, even where ASCII's counterparts are.
        for value: UInt32 in [0x20AC, 0xA3, 0x2211, 0x2665, 0xB0] {
            #expect(!BertCharacterClass.isPunctuation(scalar(value)), "U+\(String(value, radix: 16)) is S*")
        }
        #expect(BertCharacterClass.isPunctuation(scalar(0x166D)))  // Po in 8.0, So today
        #expect(BertCharacterClass.isPunctuation(scalar(0x111C9)))  // Po in 8.0, Mn today
        #expect(!BertCharacterClass.isPunctuation(scalar(0x2E50)))  // Po, but only since Unicode 13
        #expect(!BertCharacterClass.isPunctuation(scalar(0x1E95E)))  // Po, since Unicode 9
    }

    @Test func cleaningRemovesControlFormatAndPrivateUseOfUnicode8() {
        let removed: [UInt32] = [
            0x0, 0x1, 0x1B, 0x7F, 0x85, 0xFFFD, 0xAD, 0x200B, 0x200D, 0xFEFF, 0x061C, 0xE000, 0xF0000, 0xE0001,
        ]
        for value in removed {
            #expect(BertCharacterClass.isRemovedByCleaning(scalar(value)), "U+\(String(value, radix: 16)) removed")
        }
        for value: UInt32 in [0x9, 0xA, 0xD, 0x20, 0x41, 0x378, 0x08E2, 0x13430, 0x1F600] {
            #expect(!BertCharacterClass.isRemovedByCleaning(scalar(value)), "U+\(String(value, radix: 16)) kept")
        }
    }

    @Test func whitespaceIsTheWhiteSpaceProperty() {
        let whitespace: [UInt32] = [
            0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
        ]
        for value in whitespace {
            #expect(BertCharacterClass.isWhitespace(scalar(value)), "U+\(String(value, radix: 16))")
        }
        for value: UInt32 in [0x1C, 0x1F, 0x200B, 0x180E, 0xFEFF, 0x41] {
            #expect(!BertCharacterClass.isWhitespace(scalar(value)), "U+\(String(value, radix: 16))")
        }
    }

    @Test func chineseCharacterRangesAndTheirEdges() {
        let inside: [UInt32] = [
            0x3400, 0x4DBF, 0x4E00, 0x9FFF, 0xF900, 0xFAFF, 0x20000, 0x2A6DF, 0x2A700, 0x2B81F, 0x2B920, 0x2CEAF,
            0x2F800, 0x2FA1F,
        ]
        // Includes Extension E's first 256 (U+2B820...U+2B91F), which the reference does not pad.
        let outside: [UInt32] = [
            0x33FF, 0x4DC0, 0x4DFF, 0xA000, 0xF8FF, 0xFB00, 0x1FFFF, 0x2A6E0, 0x2B820, 0x2B91F, 0x2CEB0, 0x2F7FF,
            0x2FA20, 0x3007, 0x3042, 0xAC00,
        ]
        for value in inside {
            #expect(BertCharacterClass.isChineseCharacter(scalar(value)), "U+\(String(value, radix: 16))")
        }
        for value in outside {
            #expect(!BertCharacterClass.isChineseCharacter(scalar(value)), "U+\(String(value, radix: 16))")
        }
    }

    @Test func nonspacingMarksAsInUnicode8() {
        #expect(BertCharacterClass.isNonspacingMark(scalar(0x301)))
        #expect(BertCharacterClass.isNonspacingMark(scalar(0x3099)))  // kana voicing mark
        #expect(BertCharacterClass.isNonspacingMark(scalar(0x1734)))  // Mn in 8.0, Mc today
        #expect(!BertCharacterClass.isNonspacingMark(scalar(0x1885)))  // Lo in 8.0, Mn today
        #expect(!BertCharacterClass.isNonspacingMark(scalar(0x903)))  // Mc
        #expect(!BertCharacterClass.isNonspacingMark(scalar(0x1E4EC)))  // Mn, but only since Unicode 15
    }

    @Test func canonicalDecompositionReordersMarksAcrossScalars() {
        func nfd(_ text: String) -> [UInt32] {
            BertCharacterClass.canonicalDecomposition(Array(text.unicodeScalars)[...]).map(\.value)
        }
        #expect(nfd("é") == [0x65, 0x301])
        #expect(nfd("a\u{301}\u{323}") == [0x61, 0x323, 0x301])  // below (220) before above (230)
        #expect(nfd("á\u{323}") == [0x61, 0x323, 0x301])  // a decomposition's mark moves too
        #expect(nfd("가") == [0x1100, 0x1161])  // Hangul syllables decompose into jamo
        #expect(nfd("\u{212B}") == [0x41, 0x30A])  // singleton decomposition
        #expect(nfd("\u{11938}") == [0x11938])  // kept whole, as the reference does
    }

    @Test func wordsOfTheDefaultUncasedTokenizer() {
        let basic = BasicTokenizer()
        #expect(basic.words("Hello, World!") == ["hello", ",", "world", "!"])
        #expect(basic.words("  Crème\tBrûlée\n") == ["creme", "brulee"])
        #expect(basic.words("don't") == ["don", "'", "t"])
        #expect(basic.words("X.509 (dev)") == ["x", ".", "509", "(", "dev", ")"])
        #expect(basic.words("ab中文cd") == ["ab", "中", "文", "cd"])
        #expect(basic.words("a\u{0}b\u{FFFD}c\u{200B}d") == ["abcd"])
        #expect(basic.words("a\tb\nc\r\nd\u{3000}e\u{2028}f") == ["a", "b", "c", "d", "e", "f"])
        #expect(basic.words("ΟΣ ΣΟΦΟΣ") == ["οσ", "σοφοσ"])  // per scalar: no final-sigma rule
        #expect(basic.words("İ") == ["i"])  // I + combining dot: the dot is stripped before lower-casing
        #expect(basic.words("") == [])
        #expect(basic.words(" \t\n ") == [])
        #expect(basic.words("...") == [".", ".", "."])
    }

    @Test func accentsFollowLowercaseUnlessExplicit() {
        #expect(BasicTokenizer(lowercase: false).words("Héllo") == ["Héllo"])
        #expect(BasicTokenizer(lowercase: true, stripAccents: false).words("Héllo") == ["héllo"])
        #expect(BasicTokenizer(lowercase: false, stripAccents: true).words("Héllo") == ["Hello"])
        #expect(BasicTokenizer(lowercase: true).words("Héllo") == ["hello"])
    }

    @Test func chineseSplittingAndCleaningCanBeTurnedOff() {
        #expect(BasicTokenizer(tokenizeChineseCharacters: false).words("ab中文cd") == ["ab中文cd"])
        let raw = BasicTokenizer(cleanText: false)
        #expect(raw.words("a\u{200B}b") == ["a\u{200B}b"])
        #expect(raw.words("a\u{0B}b") == ["a", "b"])  // vertical tab is still whitespace
    }
}
