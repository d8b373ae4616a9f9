// JSON Lines records: one object per line, {"text": ..., "label": ..., "text_pair": ...}, other
// keys ignored, blank lines skipped; a column named twice in one object is refused. Deliberately
// strict about types: a number where text belongs is an error rather than silently stringified,
// since it usually means a shifted column.

import Foundation

/// Turns a JSON Lines file's lines into examples.
struct JSONLinesParser {
    let file: String
    let columns: TextColumns
    private let decoder = JSONDecoder()
    /// The first label's JSON type and where it was: labels that mix strings and integers, in a
    /// file or across a dataset's files, are refused, since "1" and 1 would otherwise be one class
    /// without anyone saying so.
    private let firstLabel = FirstLabel()

    final class FirstLabel {
        var kind: LabelKind?
    }

    /// The keys an example reads.
    private let readKeys: Set<String>

    /// `labelKind`, the train file's, when this file is another split's.
    init(file: String, columns: TextColumns, labelKind: LabelKind? = nil) {
        self.file = file
        self.columns = columns
        readKeys = Set([columns.text, columns.label] + (columns.textPair.map { [$0] } ?? []))
        firstLabel.kind = labelKind
    }

    /// The first label's type and place, once a label has been read.
    var labelKind: LabelKind? { firstLabel.kind }

    /// The next non-blank line's example, or nil at the end of the file.
    func next(from lines: LineReader) throws(DatasetError) -> ParsedExample? {
        while let bytes = try lines.nextLine() {
            let line = lines.lineNumber
            guard String(validating: bytes, as: UTF8.self) != nil else {
                throw .invalidUTF8(file: file, line: line)
            }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                continue
            }
            let object = try decodeObject(bytes, line: line)
            if let key = JSONObjectKeys.repeated(in: bytes, among: readKeys) {
                throw .invalidJSON(file: file, line: line, detail: "\"\(key)\" appears twice in the object; which value is meant is ambiguous")
            }
            return ParsedExample(
                line: line,
                text: try text(object, key: columns.text, line: line),
                textPair: try textPair(object, line: line),
                label: try label(object, line: line))
        }
        return nil
    }

    private func decodeObject(_ bytes: [UInt8], line: Int) throws(DatasetError) -> [String: JSONFieldValue] {
        do {
            return try decoder.decode([String: JSONFieldValue].self, from: Data(bytes))
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
            throw .invalidJSON(file: file, line: line, detail: "expected an object {…}, found another JSON value")
        } catch DecodingError.dataCorrupted(let context) {
            let detail = context.underlyingError.map { "\($0)" } ?? context.debugDescription
            throw .invalidJSON(file: file, line: line, detail: detail)
        } catch {
            throw .invalidJSON(file: file, line: line, detail: "\(error)")
        }
    }

    private func text(_ object: [String: JSONFieldValue], key: String, line: Int) throws(DatasetError) -> String {
        guard let value = object[key] else {
            throw .missingKey(file: file, line: line, key: key)
        }
        guard case .string(let text) = value else {
            throw .wrongType(file: file, line: line, key: key, expected: "a string", found: value.summary)
        }
        return text
    }

    private func textPair(_ object: [String: JSONFieldValue], line: Int) throws(DatasetError) -> String? {
        guard let key = columns.textPair, let value = object[key] else { return nil }
        switch value {
        case .null: return nil
        case .string(let text): return text
        default:
            throw .wrongType(file: file, line: line, key: key, expected: "a string or null", found: value.summary)
        }
    }

    private func label(_ object: [String: JSONFieldValue], line: Int) throws(DatasetError) -> String {
        let key = columns.label
        guard let value = object[key] else {
            throw .missingKey(file: file, line: line, key: key)
        }
        let label: String, integer: Bool
        switch value {
        case .string(let text) where !text.isEmpty: (label, integer) = (text, false)
        case .integer(let number): (label, integer) = (String(number), true)
        default:
            throw .wrongType(
                file: file, line: line, key: key, expected: "a non-empty string or an integer", found: value.summary)
        }
        if let first = firstLabel.kind, first.integer != integer {
            let place = first.file == file ? "on line \(first.line)" : "in \(first.file):\(first.line)"
            throw .wrongType(file: file, line: line, key: key, expected: first.integer ? "an integer, as \(place)" : "a string, as \(place)",
                             found: value.summary)
        }
        if firstLabel.kind == nil { firstLabel.kind = LabelKind(integer: integer, file: file, line: line) }
        return label
    }
}

/// Whether a JSON Lines file's labels are integers or strings, as its first label says.
public struct LabelKind: Sendable, Equatable {
    public var integer: Bool
    public var file: String
    public var line: Int
}

/// A JSON value as far as an example needs to tell it apart.
enum JSONFieldValue: Decodable {
    case string(String)
    case integer(Int)
    case number(Double)
    case boolean(Bool)
    case null
    /// An array or an object.
    case composite
    /// A value the decoder cannot read though the line parses: a string holding a raw control
    /// character or a lone surrogate escape, or a number beyond a Double.
    case unreadable

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .boolean(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if (try? container.decode([JSONFieldValue].self)) != nil || (try? container.decode([String: JSONFieldValue].self)) != nil {
            self = .composite
        } else {
            self = .unreadable
        }
    }

    /// What was found, for a wrong-type message.
    var summary: String {
        switch self {
        case .string(let value): return value.isEmpty ? "an empty string" : "a string"
        case .integer(let value): return "the number \(value)"
        case .number(let value): return "the number \(value)"
        case .boolean(let value): return "\(value)"
        case .null: return "null"
        case .composite: return "an array or object"
        case .unreadable: return "a value JSON does not allow (a raw control character or a lone surrogate escape in a string, or a number out of range)"
        }
    }
}

/// A JSON value with its arrays and objects kept, to find an unreadable value inside them.
private indirect enum JSONTree: Decodable {
    case value(JSONFieldValue)
    case array([JSONTree])
    case object([String: JSONTree])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let object = try? container.decode([String: JSONTree].self) {
            self = .object(object)
        } else if let array = try? container.decode([JSONTree].self) {
            self = .array(array)
        } else {
            self = .value(try container.decode(JSONFieldValue.self))
        }
    }

    /// The path and description of the first unreadable value, keys in sorted order.
    func firstUnreadable(at path: String) -> (key: String, found: String)? {
        switch self {
        case .value(let value):
            if case .unreadable = value { return (path, value.summary) }
            return nil
        case .array(let items):
            return items.indices.lazy.compactMap { items[$0].firstUnreadable(at: "\(path)[\($0)]") }.first
        case .object(let fields):
            return fields.keys.sorted().lazy.compactMap { fields[$0]!.firstUnreadable(at: path.isEmpty ? $0 : "\(path).\($0)") }.first
        }
    }
}

/// The keys of JSON objects, as the decoder does not report them: a key given twice.
public enum JSONObjectKeys {
    /// Where an object that JSONSerialization refuses still parses as one, the first of its keys
    /// (in sorted order) whose value cannot be read, with what it holds: a number out of range
    /// (1e400), a raw control character or a lone surrogate escape in a string. Nil for anything
    /// else (not an object, not JSON at all).
    /// Values inside arrays and objects are found too, named by their path (`meta.x`, `list[2]`).
    public static func unreadableValue(in bytes: [UInt8]) -> (key: String, found: String)? {
        guard let object = try? JSONDecoder().decode([String: JSONTree].self, from: Data(bytes)) else { return nil }
        return JSONTree.object(object).firstUnreadable(at: "")
    }

    /// `unreadableValue` in any JSON document (an array at the top, say: `[1].set.dropout`).
    public static func unreadableValue(inDocument bytes: [UInt8]) -> (key: String, found: String)? {
        (try? JSONDecoder().decode(JSONTree.self, from: Data(bytes)))?.firstUnreadable(at: "")
    }

    /// The first of `keys` that the object on this line names twice, if any. The decoder keeps one
    /// of the values without a word (and other JSON readers keep the other), so a repeated column
    /// is refused. `bytes` is an object the decoder has accepted; only its top-level keys count.
    public static func repeated(in bytes: [UInt8], among keys: Set<String>) -> String? {
        firstRepeated(in: bytes) { depth, key in depth == 1 && keys.contains(key) }
    }

    /// The first key that any object in the document `bytes` names twice, at any depth, if any.
    /// `bytes` is a document the decoder has accepted.
    public static func repeatedAnywhere(in bytes: [UInt8]) -> String? {
        firstRepeated(in: bytes) { _, _ in true }
    }

    /// The first key, among those `counts(depth, key)` accepts (depth 1 is the outermost), that
    /// an object names twice.
    private static func firstRepeated(in bytes: [UInt8], where counts: (Int, String) -> Bool) -> String? {
        // One entry per open object or array: the object's keys so far (nil for an array).
        var open: [Set<String>?] = []
        var expectingKey = false
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "\""):
                let end = closingQuote(bytes, of: i)
                if expectingKey, let last = open.indices.last, open[last] != nil {
                    if let key = decodedKey(bytes, from: i, to: end), counts(open.count, key),
                       !open[last]!.insert(key).inserted { return key }
                    expectingKey = false
                }
                i = end
            case UInt8(ascii: "{"):
                open.append([])
                expectingKey = true
            case UInt8(ascii: "["):
                open.append(nil)
                expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = open.popLast()
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = open.last.map { $0 != nil } ?? false
            default: break
            }
            i += 1
        }
        return nil
    }

    /// The number the object on this line holds under the top-level `key`, as written ("1e2",
    /// "-0.50"); nil when the key holds something else or is not there. `bytes` is an object the
    /// decoder has accepted.
    public static func numberText(of key: String, in bytes: [UInt8]) -> String? {
        var depth = 0, expectingKey = false, i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "\""):
                let end = closingQuote(bytes, of: i)
                if expectingKey && depth == 1 && decodedKey(bytes, from: i, to: end) == key {
                    // The value starts after the colon and any white space.
                    var start = end + 1
                    while start < bytes.count && " \t\r\n:".utf8.contains(bytes[start]) { start += 1 }
                    var stop = start
                    while stop < bytes.count && "+-.0123456789eE".utf8.contains(bytes[stop]) { stop += 1 }
                    return stop > start ? String(decoding: bytes[start..<stop], as: UTF8.self) : nil
                }
                expectingKey = false
                i = end
            case UInt8(ascii: "{"):
                depth += 1
                expectingKey = true
            case UInt8(ascii: "["):
                depth += 1
                expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = true
            default: break
            }
            i += 1
        }
        return nil
    }

    /// Where the string whose opening quote is at `start` ends: its closing quote, past escapes.
    private static func closingQuote(_ bytes: [UInt8], of start: Int) -> Int {
        var end = start + 1
        while end < bytes.count && bytes[end] != UInt8(ascii: "\"") {
            end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1
        }
        return end
    }

    /// The key whose quotes are at `start` and `end`: a key written with escapes ("te\u0078t")
    /// is still "text".
    private static func decodedKey(_ bytes: [UInt8], from start: Int, to end: Int) -> String? {
        let raw = bytes[(start + 1)..<min(end, bytes.count)]
        return raw.contains(UInt8(ascii: "\\"))
            ? (try? JSONDecoder().decode(String.self, from: Data(bytes[start...min(end, bytes.count - 1)])))
            : String(decoding: raw, as: UTF8.self)
    }
}
