// A WordPiece vocabulary: `vocab.txt` parsed into tokens by id, plus a trie over Unicode scalars for
// the greedy longest-match lookup. Tokens are compared scalar by scalar, exactly as Python and Rust
// compare strings; Swift's `String ==` would merge canonically equivalent tokens ("é" and "e\u{301}").
// Deliberately not a general string map: no merges, scores or byte fallback.
import Foundation

/// The tokens of a WordPiece model, by id, with a scalar trie for prefix lookups.
public struct Vocabulary: Sendable {
    /// The tokens; a token's id is its index.
    public let tokens: [String]
    /// Trie edges: `(node << 21) | scalar` → child node. One flat table for all nodes.
    private var edges: [UInt64: Int32] = [:]
    /// The token id that ends at each node, or -1. Node 0 is the root (the empty string).
    private var tokenIdAtNode: [Int32] = [-1]

    /// Builds the vocabulary from tokens in id order; `source` names the file in errors.
    ///
    /// - Throws: `TokenizerError.emptyVocabulary` for no tokens, `.duplicateToken` when a token
    ///   repeats (lines are 1-based: token id + 1).
    public init(tokens: [String], source: String = "vocabulary") throws(TokenizerError) {
        guard !tokens.isEmpty else { throw .emptyVocabulary(path: source) }
        precondition(tokens.count < Int(Int32.max), "vocabulary of \(tokens.count) tokens is too large")
        self.tokens = tokens
        for (id, token) in tokens.enumerated() {
            var node: Int32 = 0
            for scalar in token.unicodeScalars {
                let key = Self.edgeKey(node, scalar)
                if let child = edges[key] {
                    node = child
                } else {
                    let child = Int32(tokenIdAtNode.count)
                    tokenIdAtNode.append(-1)
                    edges[key] = child
                    node = child
                }
            }
            let existing = tokenIdAtNode[Int(node)]
            if existing >= 0 {
                throw .duplicateToken(path: source, token: token, line: id + 1, firstLine: Int(existing) + 1)
            }
            tokenIdAtNode[Int(node)] = Int32(id)
        }
    }

    /// Reads `vocab.txt`: one token per line, id = line number − 1, in UTF-8.
    ///
    /// Lines end at "\n", "\r\n" or "\r" (Python's universal newlines, as Hugging Face reads it);
    /// a final line terminator does not start another token.
    public init(contentsOf url: URL) throws(TokenizerError) {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw FileManager.default.fileExists(atPath: path)
                ? .unreadableFile(path: path, reason: error.localizedDescription) : .missingFile(path: path)
        }
        var tokens: [String] = []
        var lineStart = data.startIndex
        var index = data.startIndex
        var lineNumber = 1
        while index < data.endIndex {
            let byte = data[index]
            if byte == 0x0A || byte == 0x0D {
                guard let token = String(validating: data[lineStart..<index], as: UTF8.self) else {
                    throw .invalidUTF8(path: path, line: lineNumber)
                }
                tokens.append(token)
                lineNumber += 1
                if byte == 0x0D && index + 1 < data.endIndex && data[index + 1] == 0x0A { index += 1 }
                lineStart = index + 1
            }
            index += 1
        }
        if lineStart < data.endIndex {
            guard let token = String(validating: data[lineStart...], as: UTF8.self) else {
                throw .invalidUTF8(path: path, line: lineNumber)
            }
            tokens.append(token)
        }
        try self.init(tokens: tokens, source: path)
    }

    /// Number of tokens.
    public var count: Int { tokens.count }

    /// The id of `token`, compared scalar by scalar; nil when absent.
    public func id(of token: String) -> Int? {
        guard let node = node(after: token.unicodeScalars, from: 0) else { return nil }
        let id = tokenIdAtNode[Int(node)]
        return id >= 0 ? Int(id) : nil
    }

    // MARK: Trie walking, for WordPiece.

    /// The root node: prefixes of every token.
    static let root: Int32 = 0

    @inline(__always)
    private static func edgeKey(_ node: Int32, _ scalar: Unicode.Scalar) -> UInt64 {
        UInt64(UInt32(bitPattern: node)) << 21 | UInt64(scalar.value)
    }

    /// The child of `node` along `scalar`, or nil.
    @inline(__always)
    func child(of node: Int32, _ scalar: Unicode.Scalar) -> Int32? {
        edges[Self.edgeKey(node, scalar)]
    }

    /// The node reached from `start` along `scalars`, or nil when no token has that prefix.
    func node(after scalars: some Sequence<Unicode.Scalar>, from start: Int32) -> Int32? {
        var node = start
        for scalar in scalars {
            guard let next = child(of: node, scalar) else { return nil }
            node = next
        }
        return node
    }

    /// The id of the token that ends exactly at `node`, or nil.
    @inline(__always)
    func tokenId(at node: Int32) -> Int32? {
        let id = tokenIdAtNode[Int(node)]
        return id >= 0 ? id : nil
    }
}
