// The settings of a BERT WordPiece tokenizer and how they are read from a Hugging Face model folder
// (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`), plus the loading errors.
// Deliberately tolerant of the many keys those files carry that do not change BERT tokenisation,
// and strict about the ones that would (a non-BERT normaliser is an error, not a silent mismatch).
import Foundation

/// Settings of a BERT WordPiece tokenizer. The defaults are BERT uncased's.
///
/// Loading a folder follows transformers (4.x and 5.x alike):
/// - with `tokenizer_config.json`, `BertTokenizer` builds its normaliser from that file's keys and
///   these defaults for the keys it lacks; `tokenizer.json` is not consulted;
/// - without it, `AutoTokenizer` runs `tokenizer.json` as saved, so its BERT settings are used;
/// - `special_tokens_map.json` then overrides the special tokens, unless `tokenizer_config.json`
///   has `added_tokens_decoder` (transformers ignores the map then).
public struct TokenizerConfiguration: Sendable, Equatable {
    /// Lower-case the text (`do_lower_case`; `normalizer.lowercase`).
    public var lowercase = true
    /// Strip accents; nil follows `lowercase`, as in the original BERT (`strip_accents`).
    public var stripAccents: Bool? = nil
    /// Make each CJK ideograph its own word (`tokenize_chinese_chars`; `normalizer.handle_chinese_chars`).
    public var tokenizeChineseCharacters = true
    /// Remove control characters and map whitespace to spaces (`normalizer.clean_text`).
    public var cleanText = true
    /// The longest input the model accepts (`model_max_length`); nil when the folder gives none.
    public var modelMaxLength: Int? = nil
    /// Words longer than this many scalars become the unknown token (`model.max_input_chars_per_word`).
    public var maxInputCharactersPerWord = 100
    /// Prefix of a piece that continues a word (`model.continuing_subword_prefix`).
    public var continuingSubwordPrefix = "##"
    /// Stands for a word WordPiece cannot cover (`unk_token`).
    public var unknownToken = "[UNK]"
    /// Opens every sequence (`cls_token`).
    public var classifierToken = "[CLS]"
    /// Ends each segment (`sep_token`).
    public var separatorToken = "[SEP]"
    /// Padding, never emitted by `encode` but part of the vocabulary (`pad_token`).
    public var paddingToken = "[PAD]"
    /// The masked-language-model token (`mask_token`).
    public var maskToken = "[MASK]"

    public init() {}

    /// BERT uncased: lower-case, strip accents, split CJK, clean, the usual special tokens.
    public static let bertUncased = TokenizerConfiguration()

    /// The basic tokenizer these settings describe.
    public var basicTokenizer: BasicTokenizer {
        BasicTokenizer(
            lowercase: lowercase, stripAccents: stripAccents,
            tokenizeChineseCharacters: tokenizeChineseCharacters, cleanText: cleanText)
    }

    /// The special tokens by their `tokenizer_config.json` key, in a fixed order.
    var specialTokens: [(key: String, token: String)] {
        [
            ("unk_token", unknownToken), ("cls_token", classifierToken), ("sep_token", separatorToken),
            ("pad_token", paddingToken), ("mask_token", maskToken),
        ]
    }

    /// Reads the settings from a model folder; each file is optional.
    public init(directory: URL) throws(TokenizerError) {
        self.init()
        let configFile = directory.appendingPathComponent("tokenizer_config.json")
        var hasAddedTokensDecoder = false
        if let json = try Self.readJSONObject(configFile) {
            try applyTokenizerConfig(json, path: configFile.path)
            hasAddedTokensDecoder = json["added_tokens_decoder"] != nil
        } else {
            let tokenizerFile = directory.appendingPathComponent("tokenizer.json")
            if let sections = try Self.readJSON(tokenizerFile, as: TokenizerJSONSections.self) {
                try applyTokenizerJSON(sections.dictionary, path: tokenizerFile.path)
            }
        }
        let mapFile = directory.appendingPathComponent("special_tokens_map.json")
        if !hasAddedTokensDecoder, let json = try Self.readJSONObject(mapFile) {
            try applySpecialTokens(json, path: mapFile.path)
        }
    }

    /// Tokenizer classes that are BERT's WordPiece with BERT's `[CLS] a [SEP] b [SEP]` layout.
    /// Others (MPNet's `<s> a </s></s> b </s>`, for one) would tokenise differently, so they are refused.
    static let bertTokenizerClasses: Set<String> = [
        "BertTokenizer", "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast",
        "ElectraTokenizer", "ElectraTokenizerFast",
    ]

    // MARK: The three files.

    /// `tokenizer.json`: the fast tokenizer's pipeline. Only the BERT components are accepted.
    private mutating func applyTokenizerJSON(_ json: [String: JSONValue], path: String) throws(TokenizerError) {
        if let normalizer = try Self.object(json, "normalizer", path: path) {
            let type = try Self.string(normalizer, "type", path: path, key: "normalizer.type")
            guard type == "BertNormalizer" else {
                throw .unsupported(path: path, key: "normalizer.type", value: type ?? "null")
            }
            cleanText = try Self.bool(normalizer, "clean_text", path: path, key: "normalizer.clean_text") ?? cleanText
            tokenizeChineseCharacters =
                try Self.bool(normalizer, "handle_chinese_chars", path: path, key: "normalizer.handle_chinese_chars")
                ?? tokenizeChineseCharacters
            stripAccents = try Self.bool(normalizer, "strip_accents", path: path, key: "normalizer.strip_accents")
            lowercase = try Self.bool(normalizer, "lowercase", path: path, key: "normalizer.lowercase") ?? lowercase
        }
        if let preTokenizer = try Self.object(json, "pre_tokenizer", path: path) {
            let type = try Self.string(preTokenizer, "type", path: path, key: "pre_tokenizer.type")
            guard type == "BertPreTokenizer" else {
                throw .unsupported(path: path, key: "pre_tokenizer.type", value: type ?? "null")
            }
        }
        if let model = try Self.object(json, "model", path: path) {
            let type = try Self.string(model, "type", path: path, key: "model.type")
            guard type == nil || type == "WordPiece" else {
                throw .unsupported(path: path, key: "model.type", value: type ?? "null")
            }
            unknownToken = try Self.string(model, "unk_token", path: path, key: "model.unk_token") ?? unknownToken
            continuingSubwordPrefix =
                try Self.string(model, "continuing_subword_prefix", path: path, key: "model.continuing_subword_prefix")
                ?? continuingSubwordPrefix
            if let maxCharacters = try Self.integer(
                model, "max_input_chars_per_word", path: path, key: "model.max_input_chars_per_word")
            {
                maxInputCharactersPerWord = maxCharacters
            }
        }
    }

    /// `tokenizer_config.json`: the arguments transformers passes to `BertTokenizer`.
    private mutating func applyTokenizerConfig(_ json: [String: JSONValue], path: String) throws(TokenizerError) {
        if let tokenizerClass = try Self.string(json, "tokenizer_class", path: path),
            !Self.bertTokenizerClasses.contains(tokenizerClass)
        {
            throw .unsupported(path: path, key: "tokenizer_class", value: tokenizerClass)
        }
        lowercase = try Self.bool(json, "do_lower_case", path: path) ?? lowercase
        stripAccents = try Self.bool(json, "strip_accents", path: path)
        tokenizeChineseCharacters =
            try Self.bool(json, "tokenize_chinese_chars", path: path) ?? tokenizeChineseCharacters
        switch json["model_max_length"] {
        case nil, .null?: break
        case .number(let value)? where value >= 1:
            // transformers writes "no limit" as 1e30; anything past Int32 is no limit in practice.
            modelMaxLength = value < Double(Int32.max) ? Int(value) : nil
        default:
            throw .invalidValue(path: path, key: "model_max_length", expected: "a positive integer")
        }
        try applySpecialTokens(json, path: path)
    }

    /// The special tokens, as plain strings or as `{"content": ...}` objects.
    private mutating func applySpecialTokens(_ json: [String: JSONValue], path: String) throws(TokenizerError) {
        func token(_ key: String) throws(TokenizerError) -> String? {
            switch json[key] {
            case nil, .null?: return nil
            case .string(let string)?: return string
            case .object(let object)?:
                if case .string(let content)? = object["content"] { return content }
            default: break
            }
            throw .invalidValue(path: path, key: key, expected: "a string or an object with a string \"content\"")
        }
        unknownToken = try token("unk_token") ?? unknownToken
        classifierToken = try token("cls_token") ?? classifierToken
        separatorToken = try token("sep_token") ?? separatorToken
        paddingToken = try token("pad_token") ?? paddingToken
        maskToken = try token("mask_token") ?? maskToken
    }

    // MARK: JSON helpers that name the file and key in their errors.

    /// The top-level object of a JSON file, or nil when the file does not exist.
    static func readJSONObject(_ url: URL) throws(TokenizerError) -> [String: JSONValue]? {
        guard let parsed = try readJSON(url, as: JSONValue.self) else { return nil }
        guard case .object(let object) = parsed else {
            throw .invalidJSON(path: url.path, reason: "the top level is not an object")
        }
        return object
    }

    /// A JSON file decoded as `type`, or nil when the file does not exist.
    static func readJSON<Value: Decodable>(_ url: URL, as type: Value.Type) throws(TokenizerError) -> Value? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw .unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw .invalidJSON(path: url.path, reason: String(describing: error))
        }
    }

    /// The parts of `tokenizer.json` that matter here; skipping `model.vocab` (tens of thousands
    /// of entries) makes loading several times faster.
    private struct TokenizerJSONSections: Decodable {
        var normalizer: JSONValue?
        var pre_tokenizer: JSONValue?
        var model: Model?

        struct Model: Decodable {
            var type: JSONValue?
            var unk_token: JSONValue?
            var continuing_subword_prefix: JSONValue?
            var max_input_chars_per_word: JSONValue?
        }

        /// The same keys as a JSON object, for the key-naming accessors below.
        var dictionary: [String: JSONValue] {
            var json: [String: JSONValue] = [:]
            json["normalizer"] = normalizer
            json["pre_tokenizer"] = pre_tokenizer
            if let model {
                var section: [String: JSONValue] = [:]
                section["type"] = model.type
                section["unk_token"] = model.unk_token
                section["continuing_subword_prefix"] = model.continuing_subword_prefix
                section["max_input_chars_per_word"] = model.max_input_chars_per_word
                json["model"] = .object(section)
            }
            return json
        }
    }

    private static func object(_ json: [String: JSONValue], _ key: String, path: String) throws(TokenizerError)
        -> [String: JSONValue]?
    {
        switch json[key] {
        case nil, .null?: return nil
        case .object(let object)?: return object
        default: throw .invalidValue(path: path, key: key, expected: "an object or null")
        }
    }

    private static func string(_ json: [String: JSONValue], _ name: String, path: String, key: String? = nil)
        throws(TokenizerError) -> String?
    {
        switch json[name] {
        case nil, .null?: return nil
        case .string(let string)?: return string
        default: throw .invalidValue(path: path, key: key ?? name, expected: "a string")
        }
    }

    private static func bool(_ json: [String: JSONValue], _ name: String, path: String, key: String? = nil)
        throws(TokenizerError) -> Bool?
    {
        switch json[name] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        default: throw .invalidValue(path: path, key: key ?? name, expected: "true, false or null")
        }
    }

    private static func integer(_ json: [String: JSONValue], _ name: String, path: String, key: String? = nil)
        throws(TokenizerError) -> Int?
    {
        switch json[name] {
        case nil, .null?: return nil
        case .number(let value)? where value >= 1 && value == value.rounded() && value < Double(Int32.max):
            return Int(value)
        default: throw .invalidValue(path: path, key: key ?? name, expected: "a positive integer")
        }
    }
}

/// A parsed JSON value; keeps booleans and numbers apart, which `JSONSerialization` does not on Linux.
enum JSONValue: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}

/// Why a tokenizer could not be loaded. Each message names the file and the line or key at fault.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case missingFile(path: String)
    case unreadableFile(path: String, reason: String)
    case emptyVocabulary(path: String)
    case invalidUTF8(path: String, line: Int)
    case duplicateToken(path: String, token: String, line: Int, firstLine: Int)
    case specialTokenNotInVocabulary(path: String, key: String, token: String)
    case invalidJSON(path: String, reason: String)
    case invalidValue(path: String, key: String, expected: String)
    case unsupported(path: String, key: String, value: String)

    public var description: String {
        switch self {
        case .missingFile(let path):
            return "\(path): no such file; a BERT model folder needs vocab.txt (one token per line)"
        case .unreadableFile(let path, let reason):
            return "\(path): cannot read the file (\(reason))"
        case .emptyVocabulary(let path):
            return "\(path): the vocabulary is empty; expected one token per line"
        case .invalidUTF8(let path, let line):
            return "\(path):\(line): not valid UTF-8; the vocabulary must be UTF-8 text"
        case .duplicateToken(let path, let token, let line, let firstLine):
            return "\(path):\(line): token \(token.debugDescription) already appears on line \(firstLine);"
                + " every token needs its own line and id"
        case .specialTokenNotInVocabulary(let path, let key, let token):
            return "\(path): the special token \(key) = \(token.debugDescription) is not in the vocabulary;"
                + " add it to vocab.txt or fix \(key) in tokenizer_config.json"
        case .invalidJSON(let path, let reason):
            return "\(path): not valid JSON (\(reason))"
        case .invalidValue(let path, let key, let expected):
            return "\(path): key \"\(key)\" must be \(expected)"
        case .unsupported(let path, let key, let value):
            return "\(path): \"\(key)\" is \(value.debugDescription), but only BERT WordPiece tokenizers"
                + " (BertTokenizer; BertNormalizer, BertPreTokenizer, WordPiece) are supported"
        }
    }
}
