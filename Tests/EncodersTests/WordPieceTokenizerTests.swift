// Unit tests for WordPiece on a tiny vocabulary, the [CLS]/[SEP] layout, truncation, and loading
// a model folder (settings precedence and every typed error).
import Foundation
import Testing

@testable import Encoders

@Suite struct WordPieceTokenizerTests {
    static let tinyTokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "a", "ab", "abc", "##c", "##bc",
        "x", "##x", "hello", "world", ",", "!", "b", "##b", "é",
    ]

    static func tiny(_ configure: (inout TokenizerConfiguration) -> Void = { _ in }) throws -> WordPieceTokenizer {
        var configuration = TokenizerConfiguration.bertUncased
        configure(&configuration)
        return try WordPieceTokenizer(vocabulary: Vocabulary(tokens: tinyTokens), configuration: configuration)
    }

    @Test func greedyLongestMatchFirst() throws {
        let tokenizer = try Self.tiny()
        #expect(tokenizer.tokens("unaffable") == ["un", "##aff", "##able"])
        #expect(tokenizer.tokens("abcbc") == ["abc", "##bc"])
        #expect(tokenizer.tokens("abbc") == ["ab", "##bc"])
        #expect(tokenizer.tokens("abx") == ["ab", "##x"])
        #expect(tokenizer.tokens("Hello, world!") == ["hello", ",", "world", "!"])
    }

    @Test func aWordWithAnUncoverablePieceIsOneUnknown() throws {
        let tokenizer = try Self.tiny()
        #expect(tokenizer.tokens("abq") == ["[UNK]"])
        #expect(tokenizer.tokens("qab hello") == ["[UNK]", "hello"])
        #expect(tokenizer.tokens("☃") == ["[UNK]"])
    }

    @Test func wordsLongerThanTheLimitAreUnknown() throws {
        let tokenizer = try Self.tiny { $0.maxInputCharactersPerWord = 4 }
        #expect(tokenizer.tokens("xxxx") == ["x", "##x", "##x", "##x"])
        #expect(tokenizer.tokens("xxxxx") == ["[UNK]"])
        // Counted after normalisation: five scalars that strip down to three.
        #expect(tokenizer.tokens("x\u{301}x\u{301}x") == ["x", "##x", "##x"])
        let standard = try Self.tiny()
        #expect(standard.tokens(String(repeating: "x", count: 100)).count == 100)
        #expect(standard.tokens(String(repeating: "x", count: 101)) == ["[UNK]"])
    }

    @Test func withoutContinuationTokensOnlyWholeWordsMatch() throws {
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "ab"]
        let tokenizer = try WordPieceTokenizer(vocabulary: Vocabulary(tokens: tokens))
        #expect(tokenizer.tokens("ab a ba") == ["ab", "a", "[UNK]"])
    }

    @Test func specialTokensInTheRawTextKeepTheirIds() throws {
        let tokenizer = try Self.tiny()
        #expect(tokenizer.tokens("a[MASK]b") == ["a", "[MASK]", "b"])
        #expect(tokenizer.tokenIds("[CLS]x[SEP]") == [2, 13, 3])
        // Matched before lower-casing, so a lower-case spelling is ordinary text.
        #expect(tokenizer.tokens("[mask]") == ["[UNK]", "[UNK]", "[UNK]"])
    }

    @Test func singleAndPairLayout() throws {
        let tokenizer = try Self.tiny()
        let single = tokenizer.encode("hello world")
        #expect(single.ids == [2, 15, 16, 3])
        #expect(single.tokenTypeIds == [0, 0, 0, 0])
        #expect(single.attentionMask == [1, 1, 1, 1])
        let pair = tokenizer.encode("hello", pair: "world !")
        #expect(pair.ids == [2, 15, 3, 16, 18, 3])
        #expect(pair.tokenTypeIds == [0, 0, 0, 1, 1, 1])
        #expect(tokenizer.encode("").ids == [2, 3])
        #expect(tokenizer.encode("hello", pair: "").ids == [2, 15, 3])  // an empty pair is no pair
        #expect(tokenizer.encode("hello", pair: " ").ids == [2, 15, 3, 3])
    }

    @Test func singleTruncationKeepsTheFirstTokens() throws {
        let tokenizer = try Self.tiny()
        #expect(tokenizer.encode("a b x hello world", maxLength: 5).ids == [2, 8, 19, 13, 3])
        #expect(tokenizer.encode("a b x", maxLength: 2).ids == [2, 3])
    }

    /// The `tokenizers` crate's own table for longest_first with a budget of 7.
    @Test func longestFirstLengthsMatchTheReferenceTable() {
        let table: [(Int, Int, Int, Int)] = [
            (0, 0, 0, 0), (0, 2, 0, 2), (0, 4, 0, 4), (0, 8, 0, 7),
            (2, 0, 2, 0), (2, 2, 2, 2), (2, 4, 2, 4), (2, 8, 2, 5),
            (4, 0, 4, 0), (4, 2, 4, 2), (4, 4, 3, 4), (4, 8, 3, 4),
            (8, 0, 7, 0), (8, 2, 5, 2), (8, 4, 4, 3), (8, 8, 3, 4),
        ]
        for (n1, n2, kept1, kept2) in table {
            let kept = WordPieceTokenizer.longestFirstLengths(n1, n2, budget: 7)
            #expect(kept == (kept1, kept2), "(\(n1), \(n2)) → \(kept), expected (\(kept1), \(kept2))")
        }
        #expect(WordPieceTokenizer.longestFirstLengths(5, 5, budget: 0) == (0, 0))
    }

    @Test func pairTruncation() throws {
        let tokenizer = try Self.tiny()
        let encoding = tokenizer.encode("a b a b", pair: "x x x x x", maxLength: 9)
        #expect(encoding.ids == [2, 8, 19, 8, 3, 13, 13, 13, 3])
        #expect(encoding.tokenTypeIds == [0, 0, 0, 0, 0, 1, 1, 1, 1])
    }
}

@Suite struct TokenizerLoadingTests {
    /// A fresh folder with the given files.
    static func folder(_ files: [String: String]) throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("sidecar-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            for (name, contents) in files {
                try Data(contents.utf8).write(to: directory.appendingPathComponent(name))
            }
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        return directory
    }

    static let vocabulary = (WordPieceTokenizerTests.tinyTokens + ["<s>"]).joined(separator: "\n") + "\n"

    func loadError(_ files: [String: String]) throws -> (TokenizerError?, URL) {
        let directory = try Self.folder(files)
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            _ = try WordPieceTokenizer(directory: directory)
            return (nil, directory)
        } catch {
            return (error, directory)
        }
    }

    @Test func vocabularyLinesAndLineEndings() throws {
        let directory = try Self.folder(["vocab.txt": "a\r\nb\rc\nd"])
        defer { try? FileManager.default.removeItem(at: directory) }
        let vocabulary = try Vocabulary(contentsOf: directory.appendingPathComponent("vocab.txt"))
        #expect(vocabulary.tokens == ["a", "b", "c", "d"])
        #expect(vocabulary.id(of: "c") == 2)
        #expect(vocabulary.id(of: "e") == nil)
    }

    @Test func tokensAreComparedScalarByScalar() throws {
        // Canonically equivalent but different scalars: two tokens, as in Python and Rust.
        let vocabulary = try Vocabulary(tokens: ["é", "e\u{301}"])
        #expect(vocabulary.id(of: "é") == 0)
        #expect(vocabulary.id(of: "e\u{301}") == 1)
    }

    @Test func missingEmptyDuplicateAndInvalidVocabularies() throws {
        let (missing, directory) = try loadError([:])
        #expect(missing == .missingFile(path: directory.appendingPathComponent("vocab.txt").path))

        let (empty, emptyDirectory) = try loadError(["vocab.txt": ""])
        #expect(empty == .emptyVocabulary(path: emptyDirectory.appendingPathComponent("vocab.txt").path))

        let (duplicate, duplicateDirectory) = try loadError(["vocab.txt": "[PAD]\nb\n[PAD]\n"])
        let duplicatePath = duplicateDirectory.appendingPathComponent("vocab.txt").path
        #expect(duplicate == .duplicateToken(path: duplicatePath, token: "[PAD]", line: 3, firstLine: 1))
        #expect(duplicate?.description.contains("\(duplicatePath):3") == true)

        let invalidDirectory = try Self.folder([:])
        defer { try? FileManager.default.removeItem(at: invalidDirectory) }
        let invalidFile = invalidDirectory.appendingPathComponent("vocab.txt")
        try Data([0x61, 0x0A, 0xFF, 0xFE, 0x0A]).write(to: invalidFile)
        #expect(throws: TokenizerError.invalidUTF8(path: invalidFile.path, line: 2)) {
            try Vocabulary(contentsOf: invalidFile)
        }
    }

    @Test func specialTokensMustBeInTheVocabulary() throws {
        let (error, directory) = try loadError(["vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n"])
        #expect(
            error == .specialTokenNotInVocabulary(
                path: directory.appendingPathComponent("vocab.txt").path, key: "mask_token", token: "[MASK]"))
        #expect(error?.description.contains("mask_token") == true)
    }

    @Test func badJSONNamesTheFileAndKey() throws {
        let (unreadable, directory) = try loadError(["vocab.txt": Self.vocabulary, "tokenizer_config.json": "{oops"])
        guard case .invalidJSON(let path, _)? = unreadable else {
            Issue.record("expected invalidJSON, got \(String(describing: unreadable))")
            return
        }
        #expect(path == directory.appendingPathComponent("tokenizer_config.json").path)

        let (wrongType, typeDirectory) = try loadError([
            "vocab.txt": Self.vocabulary, "tokenizer_config.json": #"{"do_lower_case": "yes"}"#,
        ])
        #expect(
            wrongType == .invalidValue(
                path: typeDirectory.appendingPathComponent("tokenizer_config.json").path, key: "do_lower_case",
                expected: "true, false or null"))

        let (otherClass, classDirectory) = try loadError([
            "vocab.txt": Self.vocabulary, "tokenizer_config.json": #"{"tokenizer_class": "MPNetTokenizer"}"#,
        ])
        #expect(
            otherClass == .unsupported(
                path: classDirectory.appendingPathComponent("tokenizer_config.json").path, key: "tokenizer_class",
                value: "MPNetTokenizer"))

        let (unsupported, unsupportedDirectory) = try loadError([
            "vocab.txt": Self.vocabulary, "tokenizer.json": #"{"normalizer": {"type": "NFKC"}}"#,
        ])
        #expect(
            unsupported == .unsupported(
                path: unsupportedDirectory.appendingPathComponent("tokenizer.json").path, key: "normalizer.type",
                value: "NFKC"))
    }

    @Test func defaultsAreBertUncased() throws {
        let directory = try Self.folder(["vocab.txt": Self.vocabulary])
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenizer = try WordPieceTokenizer(directory: directory)
        #expect(tokenizer.configuration == .bertUncased)
        #expect(tokenizer.tokens("Héllo") == ["hello"])
        #expect(tokenizer.classifierTokenId == 2 && tokenizer.separatorTokenId == 3 && tokenizer.unknownTokenId == 1)
    }

    /// The settings read from a fresh folder holding `files`.
    func configuration(_ files: [String: String]) throws -> TokenizerConfiguration {
        let directory = try Self.folder(files)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try TokenizerConfiguration(directory: directory)
    }

    @Test func settingsPrecedence() throws {
        let tokenizerJSON = #"""
            {"normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": false,
             "strip_accents": null, "lowercase": false},
             "pre_tokenizer": {"type": "BertPreTokenizer"},
             "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                       "max_input_chars_per_word": 50, "vocab": {"[PAD]": 0}}}
            """#
        // tokenizer.json alone.
        let jsonOnly = try configuration(["tokenizer.json": tokenizerJSON])
        #expect(jsonOnly.lowercase == false && jsonOnly.tokenizeChineseCharacters == false)
        #expect(jsonOnly.maxInputCharactersPerWord == 50 && jsonOnly.modelMaxLength == nil)

        // With tokenizer_config.json, tokenizer.json is not read (handle_chinese_chars: false is
        // ignored, as transformers' BertTokenizer ignores it); special_tokens_map.json wins.
        let config = #"""
            {"do_lower_case": true, "model_max_length": 1000000000000000019884624838656,
             "tokenizer_class": "BertTokenizer",
             "cls_token": {"content": "<s>", "lstrip": false}, "sep_token": "[SEP]"}
            """#
        let merged = try configuration([
            "tokenizer.json": tokenizerJSON, "tokenizer_config.json": config,
            "special_tokens_map.json": #"{"sep_token": "[MASK]"}"#,
        ])
        #expect(merged.lowercase == true && merged.tokenizeChineseCharacters == true)
        #expect(merged.maxInputCharactersPerWord == 100 && merged.modelMaxLength == nil)
        #expect(merged.classifierToken == "<s>" && merged.separatorToken == "[MASK]")

        // With added_tokens_decoder in the config, transformers ignores special_tokens_map.json.
        let ignoringMap = try configuration([
            "tokenizer_config.json": #"{"model_max_length": 512, "added_tokens_decoder": {}}"#,
            "special_tokens_map.json": #"{"sep_token": "[MASK]"}"#,
        ])
        #expect(ignoringMap.separatorToken == "[SEP]" && ignoringMap.modelMaxLength == 512)
    }

    @Test func theInstalledMiniLMFolder() throws {
        let directory = try TokenizerFixture.miniLMDirectory()
        let tokenizer = try WordPieceTokenizer(directory: directory)
        #expect(tokenizer.configuration.lowercase && tokenizer.configuration.stripAccents == nil)
        #expect(tokenizer.configuration.modelMaxLength == 512)
        #expect(tokenizer.vocabulary.count == 30522)
        let specialIds: [Int] = [
            tokenizer.paddingTokenId, tokenizer.unknownTokenId, tokenizer.classifierTokenId,
            tokenizer.separatorTokenId, tokenizer.maskTokenId,
        ]
        #expect(specialIds == [0, 100, 101, 102, 103])
        #expect(tokenizer.tokens("unaffable") == ["una", "##ffa", "##ble"])  // as transformers gives
    }
}
