// BERT's WordPiece tokenizer, matching Hugging Face's BertTokenizer: basic tokenisation (clean
// text, CJK splitting, lower-casing and accent stripping, punctuation splitting) then greedy
// longest-match-first WordPiece. Works per Unicode code point, as BERT does, never per Character.
// Not a general tokenizer framework: BPE/SentencePiece models are out of scope.
import Foundation

/// Token ids of one encoded text (or text pair), ready for a BERT encoder. No padding: the
/// encoder packs sequences.
public struct Encoding: Sendable, Equatable {
    public var ids: [Int32]
    public var tokenTypeIds: [Int32]
}

/// A BERT WordPiece tokenizer loaded from a model folder.
public struct WordPieceTokenizer: Sendable {
    public struct Settings: Sendable, Equatable {
        public var lowercase = true
        /// nil: strip accents exactly when lower-casing (Hugging Face's default).
        public var stripAccents: Bool? = nil
        public var splitChineseCharacters = true
        public var unknownToken = "[UNK]", classToken = "[CLS]", separatorToken = "[SEP]"
        public var paddingToken = "[PAD]", maskToken = "[MASK]"
        public var maxCharactersPerWord = 100
        public init() {}
    }

    public let settings: Settings
    private let vocabulary: [String: Int32]
    public let tokens: [String]
    let unknownId: Int32, classId: Int32, separatorId: Int32
    private let specialTokens: [String]

    /// Builds a tokenizer from a vocabulary (id = position) and settings.
    public init(vocabulary tokens: [String], settings: Settings = Settings(), source: String = "vocabulary") throws {
        var vocabulary: [String: Int32] = [:]
        for (id, token) in tokens.enumerated() {
            guard vocabulary[token] == nil else {
                throw EncoderError("\(source): line \(id + 1): token \"\(token)\" appears twice")
            }
            vocabulary[token] = Int32(id)
        }
        func id(_ token: String) throws -> Int32 {
            guard let id = vocabulary[token] else { throw EncoderError("\(source): the special token \(token) is not in the vocabulary") }
            return id
        }
        self.tokens = tokens
        self.vocabulary = vocabulary
        self.settings = settings
        unknownId = try id(settings.unknownToken)
        classId = try id(settings.classToken)
        separatorId = try id(settings.separatorToken)
        specialTokens = [settings.unknownToken, settings.classToken, settings.separatorToken, settings.paddingToken, settings.maskToken]
            .filter { vocabulary[$0] != nil }
    }

    /// Loads `vocab.txt` and the settings of `tokenizer_config.json` (when present) from a model folder.
    public init(folder: URL) throws {
        let vocabURL = folder.appendingPathComponent("vocab.txt")
        guard let data = FileManager.default.contents(atPath: vocabURL.path) else {
            throw EncoderError("\(vocabURL.path): cannot read the vocabulary")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw EncoderError("\(vocabURL.path): not UTF-8")
        }
        var lines = text.components(separatedBy: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        if lines.last == "" { lines.removeLast() }
        guard !lines.isEmpty else { throw EncoderError("\(vocabURL.path): the vocabulary is empty") }
        var settings = Settings()
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        if let configData = FileManager.default.contents(atPath: configURL.path) {
            guard let config = (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any] else {
                throw EncoderError("\(configURL.path): not a JSON object")
            }
            if let value = config["do_lower_case"] {
                guard let flag = value as? Bool else { throw EncoderError("\(configURL.path): \"do_lower_case\" is not true or false") }
                settings.lowercase = flag
            }
            if let value = config["strip_accents"], !(value is NSNull) {
                guard let flag = value as? Bool else { throw EncoderError("\(configURL.path): \"strip_accents\" is not true, false or null") }
                settings.stripAccents = flag
            }
            if let value = config["tokenize_chinese_chars"] as? Bool { settings.splitChineseCharacters = value }
            for (key, path) in [("unk_token", \Settings.unknownToken), ("cls_token", \.classToken), ("sep_token", \.separatorToken),
                                ("pad_token", \.paddingToken), ("mask_token", \.maskToken)] {
                if let token = config[key] as? String { settings[keyPath: path] = token }
            }
        }
        try self.init(vocabulary: lines, settings: settings, source: vocabURL.path)
    }

    // MARK: Encoding

    /// `[CLS] text [SEP]` or `[CLS] text [SEP] pair [SEP]`, truncated to `maxLength` tokens the
    /// way Hugging Face's tokenizers truncate "longest_first": the longer sequence gives up tokens
    /// until both fit, and when both are long each keeps half the budget (the second the odd one).
    public func encode(_ text: String, pair: String? = nil, maxLength: Int = 128) -> Encoding {
        var first = ids(text)
        var second = pair.map(ids)
        let budget = max(maxLength - (second == nil ? 2 : 3), 0)
        if var pairIds = second {
            if first.count + pairIds.count > budget {
                var (n1, n2) = (first.count, pairIds.count)
                let swapped = n1 > n2
                if swapped { swap(&n1, &n2) }
                n2 = n1 > budget ? n1 : max(n1, budget - n1)
                if n1 + n2 > budget {
                    n1 = budget / 2
                    n2 = n1 + budget % 2
                }
                if swapped { swap(&n1, &n2) }
                first = Array(first.prefix(n1))
                pairIds = Array(pairIds.prefix(n2))
            }
            second = pairIds
        } else if first.count > budget {
            first = Array(first.prefix(budget))
        }
        var ids = [classId] + first + [separatorId]
        var types = [Int32](repeating: 0, count: ids.count)
        if let second {
            ids += second + [separatorId]
            types += [Int32](repeating: 1, count: second.count + 1)
        }
        return Encoding(ids: ids, tokenTypeIds: types)
    }

    /// WordPiece ids of `text`, without special tokens.
    public func ids(_ text: String) -> [Int32] {
        var out: [Int32] = []
        for word in basicTokens(text) {
            if let special = vocabulary[word], specialTokens.contains(word) {
                out.append(special)
            } else {
                wordPiece(Array(word.unicodeScalars), into: &out)
            }
        }
        return out
    }

    /// The WordPiece strings of `text` (for inspection).
    public func tokenize(_ text: String) -> [String] {
        ids(text).map { tokens[Int($0)] }
    }

    /// Greedy longest-match-first: "unaffable" → un, ##aff, ##able; no match anywhere → [UNK].
    private func wordPiece(_ scalars: [Unicode.Scalar], into out: inout [Int32]) {
        if scalars.count > settings.maxCharactersPerWord {
            out.append(unknownId)
            return
        }
        var pieces: [Int32] = []
        var start = 0
        while start < scalars.count {
            var end = scalars.count
            var found: Int32?
            while start < end {
                var candidate = start > 0 ? "##" : ""
                candidate.unicodeScalars.append(contentsOf: scalars[start..<end])
                if let id = vocabulary[candidate] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                out.append(unknownId)
                return
            }
            pieces.append(found)
            start = end
        }
        out.append(contentsOf: pieces)
    }

    // MARK: Basic tokenisation

    /// Splits text into words and punctuation as BERT's BasicTokenizer does; special tokens
    /// written in the text ("[SEP]") stay whole.
    func basicTokens(_ text: String) -> [String] {
        var words: [String] = []
        for (piece, isSpecial) in splitOnSpecialTokens(text) {
            if isSpecial {
                words.append(piece)
                continue
            }
            // NFC after cleaning, as Hugging Face does, so composed and decomposed input agree.
            for word in cleaned(piece).precomposedStringWithCanonicalMapping.split(separator: " ") {
                var token = String(word)
                if settings.lowercase { token = token.lowercased() }
                if settings.stripAccents ?? settings.lowercase { token = strippingAccents(token) }
                words.append(contentsOf: splitOnPunctuation(token))
            }
        }
        return words
    }

    /// Removes control characters and U+FFFD, maps whitespace to spaces, isolates CJK ideographs.
    private func cleaned(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isWhitespace(scalar) {
                out.append(" ")
            } else if settings.splitChineseCharacters && Self.isChineseCharacter(scalar) {
                out.append(" "); out.append(scalar); out.append(" ")
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    private func strippingAccents(_ token: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in token.decomposedStringWithCanonicalMapping.unicodeScalars
        where scalar.properties.generalCategory != .nonspacingMark {
            out.append(scalar)
        }
        return String(out)
    }

    private func splitOnPunctuation(_ token: String) -> [String] {
        var pieces: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in token.unicodeScalars {
            if Self.isPunctuation(scalar) {
                if !current.isEmpty { pieces.append(String(current)); current = .init() }
                pieces.append(String(scalar))
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { pieces.append(String(current)) }
        return pieces
    }

    private func splitOnSpecialTokens(_ text: String) -> [(String, Bool)] {
        guard specialTokens.contains(where: { text.contains($0) }) else { return [(text, false)] }
        var parts: [(String, Bool)] = []
        var rest = Substring(text)
        while let (range, token) = specialTokens.compactMap({ t in rest.range(of: t).map { ($0, t) } }).min(by: { $0.0.lowerBound < $1.0.lowerBound }) {
            parts.append((String(rest[..<range.lowerBound]), false))
            parts.append((token, true))
            rest = rest[range.upperBound...]
        }
        parts.append((String(rest), false))
        return parts
    }

    // BERT's character classes (tokenization_bert.py).

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == " " || s == "\t" || s == "\n" || s == "\r" || s.properties.generalCategory == .spaceSeparator
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isChineseCharacter(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }
}
