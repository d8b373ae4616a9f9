// BERT's WordPiece tokenizer end to end: special tokens in the raw text, basic tokenisation,
// greedy longest-match-first sub-words, `[CLS] a [SEP] (b [SEP])` with token types, and the
// fast tokenizer's "longest_first" truncation. Output ids equal transformers' `BertTokenizer`
// (the `tokenizers`-backed one); the parity fixture in Tests/EncodersTests pins that.
// Deliberately no padding (the backbone packs sequences), offsets, decoding or training.
import Foundation

/// The model inputs for one sequence or sequence pair, unpadded.
public struct Encoding: Sendable, Equatable {
    /// Token ids, `[CLS]` first.
    public var ids: [Int]
    /// 0 for `[CLS]`, the first segment and its `[SEP]`; 1 for the second segment and its `[SEP]`.
    public var tokenTypeIds: [Int]
    /// All ones: nothing is padding.
    public var attentionMask: [Int]

    public init(ids: [Int], tokenTypeIds: [Int], attentionMask: [Int]) {
        precondition(
            ids.count == tokenTypeIds.count && ids.count == attentionMask.count,
            "encoding lengths differ: ids \(ids.count), token types \(tokenTypeIds.count), mask \(attentionMask.count)")
        self.ids = ids
        self.tokenTypeIds = tokenTypeIds
        self.attentionMask = attentionMask
    }

    /// Number of tokens.
    public var count: Int { ids.count }
}

/// A BERT WordPiece tokenizer, identical in output to Hugging Face's `BertTokenizer(Fast)`.
///
/// WordPiece cuts a word `w` of scalars `w[0..<n]` greedily: from `start = 0`, take the longest
/// `w[start..<end]` in the vocabulary (spelled `##w[start..<end]` when `start > 0`), emit it and
/// continue at `end`. If some `start` has no match, the whole word becomes `[UNK]`; so does a word
/// of more than `maxInputCharactersPerWord` scalars. A trie over scalars finds each longest match
/// in one walk instead of one dictionary probe per candidate end.
public struct WordPieceTokenizer: Sendable {
    /// The settings this tokenizer was built with.
    public let configuration: TokenizerConfiguration
    /// The tokens by id.
    public let vocabulary: Vocabulary
    /// Clean-up, normalisation and word splitting.
    public let basicTokenizer: BasicTokenizer

    public let unknownTokenId: Int
    public let classifierTokenId: Int
    public let separatorTokenId: Int
    public let paddingTokenId: Int
    public let maskTokenId: Int

    /// The special tokens as scalars with their ids, longest first: matched in the raw text.
    private let specialTokens: [(scalars: [Unicode.Scalar], id: Int)]
    /// The trie node after the continuation prefix ("##"); nil when no token starts with it.
    private let continuationNode: Int32?

    /// Builds a tokenizer from a vocabulary and settings.
    ///
    /// - Throws: `TokenizerError.specialTokenNotInVocabulary` when a special token has no id;
    ///   `source` names the file in that message.
    public init(
        vocabulary: Vocabulary, configuration: TokenizerConfiguration = .bertUncased,
        source: String = "vocabulary"
    ) throws(TokenizerError) {
        precondition(
            configuration.maxInputCharactersPerWord > 0,
            "maxInputCharactersPerWord must be positive, got \(configuration.maxInputCharactersPerWord)")
        var ids: [String: Int] = [:]
        for (key, token) in configuration.specialTokens {
            guard let id = vocabulary.id(of: token) else {
                throw .specialTokenNotInVocabulary(path: source, key: key, token: token)
            }
            ids[key] = id
        }
        self.configuration = configuration
        self.vocabulary = vocabulary
        self.basicTokenizer = configuration.basicTokenizer
        unknownTokenId = ids["unk_token"]!
        classifierTokenId = ids["cls_token"]!
        separatorTokenId = ids["sep_token"]!
        paddingTokenId = ids["pad_token"]!
        maskTokenId = ids["mask_token"]!
        // Leftmost-longest matching, as `tokenizers`' added-vocabulary split: longest first.
        specialTokens = configuration.specialTokens
            .map { (Array($0.token.unicodeScalars), ids[$0.key]!) }
            .filter { !$0.0.isEmpty }
            .sorted { $0.0.count > $1.0.count }
        continuationNode = vocabulary.node(
            after: configuration.continuingSubwordPrefix.unicodeScalars, from: Vocabulary.root)
    }

    /// Loads `vocab.txt` and the settings files from a Hugging Face model folder.
    public init(directory: URL) throws(TokenizerError) {
        let vocabularyFile = directory.appendingPathComponent("vocab.txt")
        let vocabulary = try Vocabulary(contentsOf: vocabularyFile)
        let configuration = try TokenizerConfiguration(directory: directory)
        try self.init(vocabulary: vocabulary, configuration: configuration, source: vocabularyFile.path)
    }

    // MARK: Encoding.

    /// `[CLS] text [SEP]`, or `[CLS] text [SEP] pair [SEP]`, truncated to at most `maxLength` ids.
    ///
    /// Truncation is the fast tokenizer's "longest_first" for pairs: with `n1 ≤ n2` tokens and a
    /// budget `m = maxLength − 3`, keep both when `n1 + n2 ≤ m`; else cut the longer to
    /// `max(n1, m − n1)`; if that still exceeds `m`, keep `m / 2` of the shorter and `m − m / 2` of
    /// the longer (the second sequence counts as the longer on a tie). An empty `pair` string means
    /// no pair, as in transformers.
    public func encode(_ text: String, pair: String? = nil, maxLength: Int = 128) -> Encoding {
        let pair = pair.flatMap { $0.isEmpty ? nil : $0 }
        let specialCount = pair == nil ? 2 : 3
        precondition(
            maxLength >= specialCount,
            "maxLength \(maxLength) leaves no room for the \(specialCount) special tokens")
        let budget = maxLength - specialCount
        var first = tokenIds(text)
        guard let pair else {
            if first.count > budget { first.removeLast(first.count - budget) }
            let ids = [classifierTokenId] + first + [separatorTokenId]
            return Encoding(
                ids: ids, tokenTypeIds: Array(repeating: 0, count: ids.count),
                attentionMask: Array(repeating: 1, count: ids.count))
        }
        var second = tokenIds(pair)
        let (firstLength, secondLength) = Self.longestFirstLengths(first.count, second.count, budget: budget)
        first.removeLast(first.count - firstLength)
        second.removeLast(second.count - secondLength)
        let ids = [classifierTokenId] + first + [separatorTokenId] + second + [separatorTokenId]
        return Encoding(
            ids: ids,
            tokenTypeIds: Array(repeating: 0, count: first.count + 2) + Array(repeating: 1, count: second.count + 1),
            attentionMask: Array(repeating: 1, count: ids.count))
    }

    /// The kept lengths of a pair of `n1` and `n2` tokens under `budget` ("longest_first").
    static func longestFirstLengths(_ n1: Int, _ n2: Int, budget: Int) -> (Int, Int) {
        if n1 + n2 <= budget { return (n1, n2) }
        let swapped = n1 > n2
        var shorter = min(n1, n2)
        var longer = shorter > budget ? shorter : max(shorter, budget - shorter)
        if shorter + longer > budget {
            shorter = budget / 2
            longer = shorter + budget % 2
        }
        return swapped ? (longer, shorter) : (shorter, longer)
    }

    /// The WordPiece token strings of `text`, without `[CLS]`/`[SEP]`: for debugging.
    public func tokens(_ text: String) -> [String] {
        tokenIds(text).map { vocabulary.tokens[$0] }
    }

    /// The WordPiece ids of `text`, without `[CLS]`/`[SEP]` and untruncated.
    public func tokenIds(_ text: String) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        // Special tokens are matched in the raw text, before any normalisation; the text between
        // them is tokenised on its own.
        var segmentStart = 0
        var index = 0
        while index < scalars.count {
            if let (length, id) = specialToken(at: index, in: scalars) {
                appendWordPieces(of: scalars[segmentStart..<index], to: &ids)
                ids.append(id)
                index += length
                segmentStart = index
            } else {
                index += 1
            }
        }
        appendWordPieces(of: scalars[segmentStart..<scalars.count], to: &ids)
        return ids
    }

    /// The longest special token starting at `index`, with its length in scalars.
    @inline(__always)
    private func specialToken(at index: Int, in scalars: [Unicode.Scalar]) -> (Int, Int)? {
        for (token, id) in specialTokens where token[0] == scalars[index] {
            if index + token.count <= scalars.count && scalars[index..<index + token.count].elementsEqual(token) {
                return (token.count, id)
            }
        }
        return nil
    }

    private func appendWordPieces(of text: ArraySlice<Unicode.Scalar>, to ids: inout [Int]) {
        if text.isEmpty { return }
        basicTokenizer.forEachWord(in: text) { word in appendWordPieces(ofWord: word, to: &ids) }
    }

    /// Greedy longest-match-first over one word; the whole word is `[UNK]` if any position fails.
    func appendWordPieces(ofWord word: ArraySlice<Unicode.Scalar>, to ids: inout [Int]) {
        if word.count > configuration.maxInputCharactersPerWord {
            ids.append(unknownTokenId)
            return
        }
        let firstPiece = ids.count
        var start = word.startIndex
        while start < word.endIndex {
            guard var node = start == word.startIndex ? Vocabulary.root : continuationNode else {
                ids.removeLast(ids.count - firstPiece)
                ids.append(unknownTokenId)
                return
            }
            var matchEnd = start
            var matchId: Int32 = -1
            var position = start
            while position < word.endIndex, let next = vocabulary.child(of: node, word[position]) {
                node = next
                position += 1
                if let id = vocabulary.tokenId(at: node) {
                    matchEnd = position
                    matchId = id
                }
            }
            if matchEnd == start {
                ids.removeLast(ids.count - firstPiece)
                ids.append(unknownTokenId)
                return
            }
            ids.append(Int(matchId))
            start = matchEnd
        }
    }
}
