// The WordPiece tokenizer against Hugging Face's BertTokenizer on the real MiniLM vocabulary
// (Fixtures/tokenizer_cases.json, made by make_tokenizer_fixture.py).
import Encoders
import Foundation
import Testing

struct TokenizerCase: Decodable {
    let text: String
    let pair: String?
    let max_length: Int
    let ids: [Int32]
    let token_type_ids: [Int32]?
}

@Suite struct TokenizerTests {
    @Test func matchesHuggingFaceOnTrickyText() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let tokenizer = try WordPieceTokenizer(folder: folder)
        struct Fixture: Decodable { let cases: [TokenizerCase] }
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: encoderFixtures.appendingPathComponent("tokenizer_cases.json")))
        var mismatches = 0
        for c in fixture.cases {
            let encoding = tokenizer.encode(c.text, pair: c.pair, maxLength: c.max_length)
            let typesMatch = c.token_type_ids.map { $0 == encoding.tokenTypeIds } ?? true
            if encoding.ids != c.ids || !typesMatch {
                mismatches += 1
                print("mismatch for \(c.text.debugDescription)\(c.pair.map { " + \($0.debugDescription)" } ?? "") (max \(c.max_length)):\n  ours      \(encoding.ids)\n  reference \(c.ids)")
            }
        }
        print("tokenizer: \(fixture.cases.count - mismatches) of \(fixture.cases.count) cases identical to Hugging Face")
        #expect(mismatches == 0)
    }

    @Test func wordPieceSplitsAndUnknowns() throws {
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "runn", "##ing", ",", "hello"]
        let tokenizer = try WordPieceTokenizer(vocabulary: vocabulary)
        #expect(tokenizer.tokenize("unaffable running, Hello") == ["un", "##aff", "##able", "runn", "##ing", ",", "hello"])
        #expect(tokenizer.tokenize("unknownword") == ["[UNK]"])
        #expect(tokenizer.encode("hello", pair: "hello").tokenTypeIds == [0, 0, 0, 1, 1])
    }

    @Test func badVocabulariesAreClearErrors() {
        #expect(throws: EncoderError.self) { try WordPieceTokenizer(vocabulary: ["[UNK]", "[CLS]"]) }
        do {
            _ = try WordPieceTokenizer(vocabulary: ["[UNK]", "[CLS]", "[SEP]", "a", "a"], source: "vocab.txt")
            Issue.record("duplicate token accepted")
        } catch {
            #expect("\(error)".contains("vocab.txt: line 5"))
        }
    }
}
