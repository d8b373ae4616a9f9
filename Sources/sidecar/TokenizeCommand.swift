// `sidecar tokenize`: the WordPiece ids of each input line, to compare with the reference tokenizer.
import ArgumentParser
import Datasets
import Encoders
import Foundation
import Predict

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print {\"ids\": [...]} for each input line (plain text, or JSONL with \"text\" and optional \"text_pair\", as a .jsonl name or else the first line tells).")

    @Option(help: "Backbone whose tokenizer to use: \"minilm\" or a Hugging Face model folder.")
    var backbone = "minilm"

    @Option(parsing: .unconditional, help: "Truncate to this many tokens.")
    var maxLength = 128

    @Option(help: "Input file; - for standard input.")
    var input = "-"

    func validate() throws {
        guard maxLength >= 3 else { throw ValidationError("--max-length \(maxLength): must be at least 3 ([CLS] and two [SEP])") }
    }

    func run() throws {
        let tokenizer = try WordPieceTokenizer(directory: try BackboneFolder.resolve(backbone))
        if input != "-", isFolder(input) == true {
            throw CommandError("--input \(input): is a folder; give a text or JSONL file")
        }
        // The datasets' line reader: lines end at "\n", "\r\n" or "\r" as extraction reads them
        // (a CRLF file had been one line: Swift keeps "\r\n" as one character).
        let lines: LineReader
        do { lines = try LineReader(path: input) } catch { throw CommandError("--input \(input): \(error)") }
        // A .jsonl file is JSON Lines whatever its first line holds, as predict reads it: a broken
        // first line had made every line, the sound ones too, tokenized as text.
        var jsonl: Bool? = input != "-" && URL(fileURLWithPath: input).pathExtension.lowercased() == "jsonl" ? true : nil
        while let bytes = try lines.nextLine() {
            guard let line = String(validating: bytes, as: UTF8.self) else {
                throw CommandError("\(lines.path):\(lines.lineNumber): not valid UTF-8")
            }
            var body = line, pair: String?
            // The first line tells the file's format, as for predict: a text line that happens to be
            // a JSON object is text in a text file. JSON Lines are read strictly, as predict reads
            // them: a line's source had been tokenized as text when "text" was missing or not a string.
            // An object holding a value JSONSerialization refuses (1e400) is JSON Lines too, refused
            // by name below; it had been tokenized as text.
            let isJSONLines = jsonl ?? (line.hasPrefix("{") && ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any]
                                                               || JSONObjectKeys.unreadableValue(in: Array(line.utf8)) != nil))
            jsonl = isJSONLines
            if isJSONLines {
                if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
                do {
                    (body, pair) = try PredictInputs.jsonLineText(line, textKey: "text", pairKey: "text_pair",
                                                                  place: "\(lines.path):\(lines.lineNumber)")
                } catch { throw CommandError("\(error)") }
            }
            let encoding = tokenizer.encode(body, pair: pair, maxLength: maxLength)
            print("{\"ids\": [\(encoding.ids.map(String.init).joined(separator: ", "))]}")
        }
    }
}
