// Parity of WordPieceTokenizer with Hugging Face's BertTokenizer on the real all-MiniLM-L6-v2
// vocabulary: every case in Fixtures/tokenizer_fixture.json (written by make_tokenizer_fixture.py),
// and the basic tokenisation of every Unicode code point, compared through per-block hashes.
import Foundation
import Testing

@testable import Encoders

/// The committed fixture and the model folder it was generated from.
enum TokenizerFixture {
    struct Case: Decodable {
        var name: String
        var config: String
        var text: String
        var pair: String?
        var max_length: Int
        var ids: [Int]
        var token_type_ids: [Int]
        var tokens: [String]
    }

    struct CodePointHashes: Decodable {
        var block_size: Int
        var uncased: [String]
    }

    struct File: Decodable {
        var reference: String
        var configurations: [String: [String: Bool]]
        var cases: [Case]
        var code_point_hashes: CodePointHashes
    }

    static let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().appendingPathComponent("Fixtures/tokenizer_fixture.json")

    static func load() throws -> File {
        try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }

    /// The all-MiniLM-L6-v2 folder, found as `--backbone minilm` finds it.
    static func miniLMDirectory() throws -> URL {
        try BackboneFolder.resolve("minilm")
    }

    /// The tokenizer for a fixture configuration: the folder's own settings, then the overrides
    /// the generator passed to transformers.
    static func tokenizer(_ config: String, overrides: [String: Bool], directory: URL) throws -> WordPieceTokenizer {
        if overrides.isEmpty { return try WordPieceTokenizer(directory: directory) }
        var configuration = try TokenizerConfiguration(directory: directory)
        for (key, value) in overrides {
            switch key {
            case "do_lower_case": configuration.lowercase = value
            case "strip_accents": configuration.stripAccents = value
            case "tokenize_chinese_chars": configuration.tokenizeChineseCharacters = value
            default: Issue.record("configuration \(config): unknown override \(key)")
            }
        }
        let vocabulary = try Vocabulary(contentsOf: directory.appendingPathComponent("vocab.txt"))
        return try WordPieceTokenizer(vocabulary: vocabulary, configuration: configuration)
    }
}

/// 64-bit FNV-1a, the hash the generator uses for the code-point blocks.
struct FNV1a64 {
    var state: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func combine(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            state ^= UInt64(byte)
            state = state &* 0x0000_0100_0000_01B3
        }
    }
}

@Suite struct TokenizerParityTests {
    @Test func fixtureCasesMatchHuggingFace() throws {
        let fixture = try TokenizerFixture.load()
        let directory = try TokenizerFixture.miniLMDirectory()
        var tokenizers: [String: WordPieceTokenizer] = [:]
        for (name, overrides) in fixture.configurations {
            tokenizers[name] = try TokenizerFixture.tokenizer(name, overrides: overrides, directory: directory)
        }
        #expect(tokenizers["uncased"]?.vocabulary.count == 30522)

        var mismatches = 0
        for testCase in fixture.cases {
            let tokenizer = try #require(tokenizers[testCase.config], "no configuration \(testCase.config)")
            let encoding = tokenizer.encode(testCase.text, pair: testCase.pair, maxLength: testCase.max_length)
            if encoding.ids != testCase.ids || encoding.tokenTypeIds != testCase.token_type_ids {
                mismatches += 1
                let tokens = encoding.ids.map { tokenizer.vocabulary.tokens[$0] }
                print(
                    """
                    MISMATCH [\(testCase.config)] \(testCase.name): \(testCase.text.debugDescription)\
                    \(testCase.pair.map { " + \($0.debugDescription)" } ?? "") at \(testCase.max_length)
                      expected \(testCase.tokens) types \(testCase.token_type_ids)
                      got      \(tokens) types \(encoding.tokenTypeIds)
                    """)
            }
            #expect(encoding.attentionMask == Array(repeating: 1, count: encoding.ids.count))
        }
        let matching = fixture.cases.count - mismatches
        print("tokenizer parity: \(matching)/\(fixture.cases.count) cases match \(fixture.reference)")
        #expect(mismatches == 0)
    }

    /// Every code point c: the words of "a" + c + "a" (uncased), hashed per block as the generator does.
    /// This one test covers every scalar's cleaning, whitespace, CJK, accent, case and punctuation class.
    @Test func everyCodePointSplitsLikeHuggingFace() throws {
        let fixture = try TokenizerFixture.load()
        let expected = fixture.code_point_hashes.uncased
        let blockSize = fixture.code_point_hashes.block_size
        let basic = BasicTokenizer()
        var mismatchedBlocks: [String] = []
        for (block, expectedHash) in expected.enumerated() {
            var hash = FNV1a64()
            var text: [Unicode.Scalar] = ["a", "a", "a"]
            for value in block * blockSize..<(block + 1) * blockSize {
                guard let scalar = Unicode.Scalar(UInt32(value)) else { continue }  // surrogates
                text[1] = scalar
                var first = true
                basic.forEachWord(in: text[...]) { word in
                    if !first { hash.combine(CollectionOfOne(0x20)) }
                    first = false
                    for scalar in word { hash.combine(UTF8.encode(scalar)!) }
                }
                hash.combine(CollectionOfOne(0x0A))
            }
            let actual = String(hash.state, radix: 16).leftPadded(to: 16)
            if actual != expectedHash {
                mismatchedBlocks.append(String(block * blockSize, radix: 16, uppercase: true))
            }
        }
        if !mismatchedBlocks.isEmpty {
            print("code point blocks (\(blockSize) each) that differ: U+\(mismatchedBlocks.joined(separator: ", U+"))")
        }
        #expect(mismatchedBlocks.isEmpty)
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
