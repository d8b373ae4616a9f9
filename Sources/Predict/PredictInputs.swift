// Raw inputs for `sidecar predict`, read lazily so memory stays constant however long the input:
// plain-text lines, JSON Lines, CSV/TSV with a header, or image files (one file, or a folder
// walked in sorted order).
import Datasets
import Extract
import Foundation

/// One input with where it came from.
public struct PredictInput: Sendable {
    /// 1-based line of a text input, or nil for an image.
    public var line: Int?
    /// The image file, or nil for text.
    public var file: String?
    /// The JSON line's "id", echoed in the output.
    public var id: InputID?
    public var input: BackboneRunner.Input
    /// The text (for the plain output), or nil for an image.
    public var text: String?
}

/// A JSON line's "id" as it was written, a string or a number, so that the output echoes the same
/// JSON value. A number is held as a Decimal (38 digits): an Int64 or a Double had changed ids of
/// 2^63 and more (12345678901234567890 came back as 1.2345678901234567e+19).
public enum InputID: Sendable, Equatable, Codable {
    case string(String)
    case number(Decimal)

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer()
        if let s = try? value.decode(String.self) {
            self = .string(s)
        } else if let n = try? value.decode(Decimal.self) {
            self = .number(n)
        } else {
            throw DecodingError.typeMismatch(InputID.self, .init(codingPath: decoder.codingPath, debugDescription: "not a string or a number"))
        }
    }

    /// Whether two decimal numerals name the same number ("1.50" and "15e-1"); nil when either
    /// is not one.
    static func sameNumber(_ a: String, _ b: String) -> Bool? {
        guard let x = canonical(a), let y = canonical(b) else { return nil }
        return x == y
    }

    /// A numeral as (negative, significant digits, exponent of the last digit); zero is one.
    private static func canonical(_ text: String) -> (Bool, String, Int)? {
        var body = Substring(text), negative = false
        if body.first == "-" || body.first == "+" { negative = body.first == "-"; body = body.dropFirst() }
        let parts = body.split(separator: "e", maxSplits: 1, omittingEmptySubsequences: false).flatMap { $0.split(separator: "E", maxSplits: 1, omittingEmptySubsequences: false) }
        guard (1...2).contains(parts.count), var exponent = parts.count == 2 ? Int(parts[1]) : 0 else { return nil }
        let mantissa = parts[0].split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let fraction = mantissa.count == 2 ? mantissa[1] : ""
        var digits = Substring(String(mantissa[0]) + fraction)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        exponent -= fraction.count
        digits = digits.drop { $0 == "0" }
        if digits.isEmpty { return (false, "0", 0) }
        while digits.last == "0" { digits = digits.dropLast(); exponent += 1 }
        return (negative, String(digits), exponent)
    }

    public func encode(to encoder: any Encoder) throws {
        var out = encoder.singleValueContainer()
        switch self {
        case .string(let s): try out.encode(s)
        case .number(let n): try out.encode(n)
        }
    }
}

public enum InputFormat: String, CaseIterable, Sendable {
    case text, jsonl, csv, tsv, image
}

public final class PredictInputs {
    public let source: String
    private var lines: LineSource?
    private var rows: DelimitedInputs?
    /// The error of a bad input, thrown by the call after the one that returned the inputs before it.
    private var deferred: Error?
    private var images: [String]
    private var nextImage = 0
    private let format: InputFormat
    private let textKey: String
    private let pairKey: String?
    private let alphaOnWhite: Bool

    /// `path` is a file, a folder of images, or "-" for standard input. Without `format`, a folder or
    /// an image file is images, a `.jsonl` file (or standard input whose first line opens with `{`)
    /// is JSON Lines, anything else plain text. JSON lines take their text from `textKey`; images
    /// with transparency are composited onto white with `alphaOnWhite`, as their extraction did.
    public init(path: String, format: InputFormat? = nil, textKey: String = "text", pairKey: String? = nil, alphaOnWhite: Bool = false) throws {
        source = path == "-" ? "standard input" : path
        self.textKey = textKey
        self.pairKey = pairKey
        self.alphaOnWhite = alphaOnWhite
        images = []
        var isDirectory: ObjCBool = false
        if path != "-" && !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            throw PredictError("--input \(path): no such file or folder")
        }
        let ext = (path as NSString).pathExtension.lowercased()
        if isDirectory.boolValue {
            guard format == nil || format == .image else { throw PredictError("--input \(path) is a folder; only images are read from folders") }
            self.format = .image
            images = try Self.imageFiles(under: path)
            guard !images.isEmpty else { throw PredictError("--input \(path): the folder holds no .png, .jpg or .jpeg files") }
        } else if format == .image || (format == nil && ImageFolderSource.imageExtensions.contains(ext)) {
            self.format = .image
            images = [path]
        } else if format == .csv || format == .tsv || (format == nil && (ext == "csv" || ext == "tsv")) {
            // Read as plain lines, a CSV file's header and label column were taken for text.
            self.format = format ?? (ext == "csv" ? .csv : .tsv)
            guard path != "-" else { throw PredictError("--input -: CSV and TSV are read from a file, not standard input") }
            do {
                rows = try DelimitedInputs(path: path, tab: self.format == .tsv, text: textKey, pair: pairKey)
            } catch DatasetError.emptySplit {
                // No header, no rows: no inputs, as for an empty text file (not a dataset's split).
                rows = nil
            } catch { throw PredictError("\(error)") }  // names the file and line
        } else {
            let reader = try LineSource(path: path)
            var chosen = format ?? (ext == "jsonl" ? .jsonl : .text)
            if format == nil && path == "-", let first = try reader.peekNonBlank() {
                chosen = first.drop(while: { $0 == " " || $0 == "\t" }).first == "{" ? .jsonl : .text
            }
            self.format = chosen
            lines = reader
        }
    }

    /// Whether the inputs are images.
    public var isImages: Bool { format == .image }

    /// Up to `count` more inputs; empty at the end. A bad input ends the batch before it: the
    /// inputs read so far come back, and its error is thrown by the next call, so that everything
    /// before a bad line is predicted and printed.
    public func next(_ count: Int) throws -> [PredictInput] {
        if let deferred {
            self.deferred = nil
            throw deferred
        }
        var out: [PredictInput] = []
        do { try read(count, into: &out) } catch {
            guard !out.isEmpty else { throw error }
            deferred = error
        }
        return out
    }

    private func read(_ count: Int, into out: inout [PredictInput]) throws {
        if format == .image {
            while out.count < count && nextImage < images.count {
                let file = images[nextImage]
                nextImage += 1
                let image: RGBImage
                // The decoder's message names the file.
                do { image = try ImageDecoder.decode(file: file, alphaOnWhite: alphaOnWhite) } catch { throw PredictError("\(error)") }
                out.append(PredictInput(line: nil, file: file, id: nil, input: .image(image), text: nil))
            }
            return
        }
        if let rows {
            while out.count < count, let row = try rows.next() {
                out.append(PredictInput(line: row.line, file: nil, id: nil, input: .text(row.text, pair: row.pair), text: row.text))
            }
            return
        }
        guard let lines else { return }
        while out.count < count, let (number, line) = try lines.next() {
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            if format == .text {
                out.append(PredictInput(line: number, file: nil, id: nil, input: .text(line, pair: nil), text: line))
                continue
            }
            let where_ = "\(source):\(number)"
            let (text, pair) = try Self.jsonLineText(line, textKey: textKey, pairKey: pairKey, alsoOnce: ["id"], place: where_)
            struct Identified: Decodable { let id: InputID? }
            let id: InputID?
            // A number is echoed as Decimal holds it: 38 digits from 1e-128 to 1e127. Beyond, an id
            // had come back changed (the 50 digits of a database key), or been refused as no number.
            let written = JSONObjectKeys.numberText(of: "id", in: Array(line.utf8))
            let inexact = "\(where_): \"id\" \(written ?? "") is a number predict cannot echo exactly (more than 38 significant "
                + "digits, or beyond 1e127); give it as a string"
            do { id = try JSONDecoder().decode(Identified.self, from: Data(line.utf8)).id } catch {
                if written != nil { throw PredictError(inexact) }
                throw PredictError("\(where_): \"id\" must be a string or a number")
            }
            if case .number(let n) = id, let written, InputID.sameNumber(written, n.description) == false { throw PredictError(inexact) }
            out.append(PredictInput(line: number, file: nil, id: id, input: .text(text, pair: pair), text: text))
        }
    }

    /// The text (and pair) of one JSON Lines input, read strictly, as `predict` and `tokenize` read
    /// them: an object, the text key present once as a string, the pair key (when given) a string
    /// or null, and the keys in `alsoOnce` not repeated either. `place` ("file:line") starts each message.
    public static func jsonLineText(_ line: String, textKey: String, pairKey: String?, alsoOnce: [String] = [],
                                    place: String) throws -> (text: String, pair: String?) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            if let (key, found) = JSONObjectKeys.unreadableValue(in: Array(line.utf8)) {
                throw PredictError("\(place): \"\(key)\" holds \(found)")
            }
            throw PredictError("\(place): not a JSON object")
        }
        if let key = JSONObjectKeys.repeated(in: Array(line.utf8), among: Set([textKey] + alsoOnce + (pairKey.map { [$0] } ?? []))) {
            throw PredictError("\(place): \"\(key)\" appears twice in the object; which value is meant is ambiguous")
        }
        guard let text = object[textKey] as? String else {
            throw PredictError(object[textKey] == nil ? "\(place): no \"\(textKey)\" key" : "\(place): \"\(textKey)\" is not a string")
        }
        guard let pairKey, let value = object[pairKey], !(value is NSNull) else { return (text, nil) }
        guard let pair = value as? String else { throw PredictError("\(place): \"\(pairKey)\" is not a string") }
        return (text, pair)
    }

    /// The images below `folder` as extract finds them in a class folder: hidden files and
    /// folders (._a.png, .ipynb_checkpoints) left out, and a folder named like an image walked
    /// into, not read.
    static func imageFiles(under folder: String) throws -> [String] {
        let files: [String]
        do { files = try ImageFolderSource.visibleFiles(in: folder) } catch { throw PredictError("--input \(folder): \(error)") }
        return files.filter { ImageFolderSource.imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
            .map { (folder as NSString).appendingPathComponent($0) }
    }
}

/// Lines of a file or of standard input (through Datasets' chunked reader: the same line ends,
/// byte-order mark and UTF-8 check either way), with their numbers.
final class LineSource {
    private let reader: LineReader
    private var number = 0
    private var pending: String?

    init(path: String) throws {
        do { reader = try LineReader(path: path) } catch { throw PredictError("--input \(path): \(error)") }
    }

    /// The first line that is not blank, without consuming it (the lines before it are).
    func peekNonBlank() throws -> String? {
        while true {
            if pending == nil { pending = try read() }
            guard let line = pending, line.allSatisfy({ $0 == " " || $0 == "\t" }) else { return pending }
            pending = nil
            number += 1
        }
    }

    func next() throws -> (Int, String)? {
        let line: String?
        if let p = pending { line = p; pending = nil } else { line = try read() }
        guard let line else { return nil }
        number += 1
        return (number, line)
    }

    private func read() throws -> String? {
        let bytes: [UInt8]?
        do { bytes = try reader.nextLine() } catch { throw PredictError("\(error)") }
        guard let bytes else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw PredictError("\(reader.path):\(number + 1): not valid UTF-8") }
        return text
    }
}

public struct PredictError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
