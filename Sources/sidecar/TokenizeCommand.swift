// `sidecar tokenize`: the WordPiece ids of each input line, to compare with the reference tokenizer.
import ArgumentParser
import Encoders
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print {\"ids\": [...]} for each input line (plain text, or JSONL with \"text\" and optional \"text_pair\").")

    @Option(help: "Backbone whose tokenizer to use: \"minilm\" or a Hugging Face model folder.")
    var backbone = "minilm"

    @Option(help: "Truncate to this many tokens.")
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
        guard let handle = input == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: input) else {
            throw CommandError("--input \(input): cannot open the file")
        }
        let data = handle.readDataToEndOfFile()
        guard let text = String(data: data, encoding: .utf8) else { throw CommandError("--input \(input): not UTF-8 text") }
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        for line in lines {
            var body = line, pair: String?
            if line.hasPrefix("{"), let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
               let value = object["text"] as? String {
                body = value
                pair = object["text_pair"] as? String
            }
            let encoding = tokenizer.encode(body, pair: pair, maxLength: maxLength)
            print("{\"ids\": [\(encoding.ids.map(String.init).joined(separator: ", "))]}")
        }
    }
}
