// `sidecar predict`: a trained head on raw inputs, end to end through the frozen backbone,
// streaming one output line per input.
import ArgumentParser
import Foundation
import OneDNN
import Predict
import Training

extension InputFormat: ExpressibleByArgument {}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run the frozen backbone and a trained head, or an ensemble of several, on raw inputs: one line of output per input.",
        discussion: """
            Inputs: plain-text lines, JSON Lines ({"text": ..., optional "text_pair" and "id"; the keys the \
            training dataset used}), CSV or TSV with a header (the text and pair columns the training \
            dataset used; other columns are ignored), an image file, or a folder of images (walked in \
            sorted order, hidden files and folders left out, as extract walks a class folder). Inputs \
            go through the backbone in batches and the output streams in input order; memory does not grow \
            with the input. The backbone must be the one the head was trained on (its config and weights \
            hashes are recorded in the head); it runs only up to the deepest layer the head reads. Blank \
            text lines are skipped (--json output carries each input's line number). Several --head flags \
            predict with their ensemble, as eval scores it: the mean of their class probabilities, the \
            backbone run once for all of them (they must have been trained on the same backbone and \
            features; the first head's dataset settings read the inputs).
            """)

    @Option(name: .customLong("head"),
            help: "The head: a folder written by sidecar fit, or a .safetensors file written by sidecar export (repeat for an ensemble).")
    var heads: [String]

    @Option(help: "The backbone (\"minilm\" or a folder); default: the built-in MiniLM when the head was trained on it.")
    var backbone: String?

    @Option(help: "Inputs: a text, .jsonl, .csv or .tsv file, an image, a folder of images, or - for standard input.")
    var input: String

    @Option(help: "Input format when not told by the path: text, jsonl, csv, tsv, image.")
    var format: InputFormat?

    @Flag(help: "One JSON object per input: line or file, id, label, probability, top_k.")
    var json = false

    @Option(parsing: .unconditional, help: "Show the K most probable labels.")
    var topK = 1

    @Flag(help: "With --json: include the raw logits.")
    var logits = false

    @Option(parsing: .unconditional, help: "Inputs per forward batch.")
    var batchSize = 32

    @Option(help: "Arithmetic of the backbone's dense products: f32, bf16 or auto (see extract --help); default: the path the head's cache was extracted with, and another is refused unless --force (an ensemble's heads share one path, or run on the one named with --force).")
    var compute: String?

    @Flag(help: "Run even if the backbone or --compute differs from the one the head was trained on.")
    var force = false

    func validate() throws {
        try EvalCommand.checkHeads(heads)
        if topK < 1 { throw ValidationError("--top-k must be at least 1, got \(topK)") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        if logits && !json { throw ValidationError("--logits goes with --json") }
        if let compute {
            do { _ = try ComputePath.parse(compute) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() throws {
        let predictor = try Predictor(heads: heads, backbone: backbone, force: force, compute: try compute.map { try ComputePath.parse($0) },
                                      computeFlag: compute)
        try checkAddressSpace("sidecar predict")
        let settings = try predictor.trained.extraction()
        let pairKey = settings.preprocessing["text_pair_column"].flatMap { $0.isEmpty ? nil : $0 }
        let inputs = try PredictInputs(path: input, format: format, textKey: settings.preprocessing["text_column"] ?? "text", pairKey: pairKey,
                                       alphaOnWhite: predictor.runner.imageAlphaOnWhite)
        if inputs.isImages != predictor.runner.takesImages {
            throw CommandError("--input \(input): \(inputs.isImages ? "images" : "text"), but the head's backbone reads \(predictor.runner.takesImages ? "images" : "text")")
        }
        let labels = predictor.labels
        let k = min(topK, labels.count)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var predicted = 0
        while true {
            let batch = try inputs.next(batchSize)
            if batch.isEmpty { break }
            predicted += batch.count
            let out = try predictor.logits(batch.map(\.input))
            let classes = out.shape[1]
            // Finite weights can still overflow: such logits had printed "-nan" with exit status 0.
            for (b, item) in batch.enumerated() where out.scalars[(b * classes)..<((b + 1) * classes)].contains(where: { !$0.isFinite }) {
                throw CommandError("--input \(input), \(item.file ?? "line \(item.line ?? b + 1)"): the logits are not finite (NaN or "
                                   + "infinite), so the head's weights overflow on this input: the head is damaged or diverged in training")
            }
            var text = ""
            for (b, item) in batch.enumerated() {
                let row = out.scalars[(b * classes)..<((b + 1) * classes)]
                let probabilities = softmax(row)
                let order = probabilities.indices.sorted { (probabilities[$0], -$0) > (probabilities[$1], -$1) }.prefix(k)
                if json {
                    let line = PredictionLine(
                        line: item.line, file: item.file, id: item.id, label: labels[order.first!], probability: probabilities[order.first!],
                        topK: order.map { .init(label: labels[$0], probability: probabilities[$0]) },
                        logits: logits ? Array(row) : nil)
                    text += String(decoding: try encoder.encode(line), as: UTF8.self) + "\n"
                } else {
                    // One line per input, whatever the input holds: a line break or a terminal's
                    // escape sequence in a text, a file name or a label is shown as U+FFFD.
                    let ranked = order.map { String(format: "%@\t%.4f", TerminalText.safe(labels[$0]), probabilities[$0]) }.joined(separator: "\t")
                    let what = item.file ?? String((item.text ?? "").prefix(70)).replacingOccurrences(of: "\t", with: " ")
                    text += "\(ranked)\t\(TerminalText.safe(what))\n"
                }
            }
            try standardOutput(text)
        }
        // Said on stderr, so that standard output stays one line per input: an empty file had
        // given no sign that nothing was read.
        if predicted == 0 { standardError("predict: --input \(input) holds no inputs\n") }
    }
}

/// One output line of `predict --json`.
struct PredictionLine: Encodable {
    struct Ranked: Encodable {
        var label: String
        var probability: Double
    }

    var line: Int?
    var file: String?
    var id: InputID?
    var label: String
    var probability: Double
    var topK: [Ranked]
    var logits: [Float]?

    enum CodingKeys: String, CodingKey {
        case line, file, id, label, probability, logits
        case topK = "top_k"
    }
}
