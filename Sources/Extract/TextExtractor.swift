// Stage one for text: read a dataset, tokenise, run the frozen BERT encoder once, and hand each
// example's kept layers to the shared chunked writer (ExtractionCore.swift). Within a chunk,
// examples are sorted by length and packed into batches of about `batchTokens` tokens, so no
// padding is computed.
import ActivationStore
import Datasets
import Encoders
import Dispatch
import Foundation
import TensorCore

/// What to extract and how to store it.
public struct TextExtractionRequest: Sendable {
    public var dataset: String
    public var format: TextFormat?
    public var columns = TextColumns()
    /// "minilm" or a Hugging Face model folder.
    public var backbone = "minilm"
    public var output: String
    public var maxLength = 128
    public var options = CacheOptions()

    public init(dataset: String, output: String) {
        self.dataset = dataset
        self.output = output
    }
}

/// Progress of an extraction, reported after each committed chunk.
public struct ExtractionProgress: Sendable {
    public var split: String
    public var done: Int
    public var total: Int
    /// Tokens through the encoder in this run, and the seconds it took.
    public var tokens: Int
    public var seconds: Double
    public var resumedFrom: Int
}

public final class TextExtractor: Sendable {
    public let request: TextExtractionRequest
    public let settings: ExtractionSettings
    let encoder: BertEncoder
    let tokenizer: WordPieceTokenizer
    public let source: TextDatasetSource
    let labels: LabelMap
    let blobs: [BlobContent]
    /// Every split's examples, parsed once at start-up (where a bad line or label is found before
    /// anything is written) and extracted from the same array.
    let examples: [String: [TextExample]]

    /// Loads the backbone and checks the dataset; nothing is written yet.
    public init(_ request: TextExtractionRequest) throws {
        self.request = request
        try request.options.validate()
        guard request.maxLength >= 3 else { throw ExtractError("--max-length \(request.maxLength): must be at least 3 ([CLS] and two [SEP] for pairs)") }
        let folder = try BackboneFolder.resolve(request.backbone)
        encoder = try BertEncoder(folder: folder, compute: request.options.compute)
        tokenizer = try WordPieceTokenizer(directory: folder)
        guard request.maxLength <= encoder.config.maxPositions else {
            throw ExtractError("--max-length \(request.maxLength) exceeds the backbone's \(encoder.config.maxPositions) positions")
        }
        source = try TextDatasetSource(directory: request.dataset, format: request.format, columns: request.columns)
        labels = try source.labelMap()
        try ExtractError.requireTwoLabels(labels, in: source.path(of: .train))
        let layers = try request.options.keptLayers(layerCount: encoder.config.layerCount)

        var files: [DatasetFile] = []
        var counts: [String: Int] = [:]
        var examples: [String: [TextExample]] = [:]
        for split in source.splits {
            let path = source.path(of: split)
            let data = try Data(contentsOf: URL(userPath: path), options: .alwaysMapped)
            let hash = data.withUnsafeBytes { XXHash64.hash($0) }
            files.append(DatasetFile(split: split.rawValue, name: (path as NSString).lastPathComponent, bytes: data.count, hash: String(hash, radix: 16)))
            // With the label map: a val or test label unknown to train stops here, before anything is written.
            let parsed = try source.examples(split, labels: labels)
            examples[split.rawValue] = parsed
            counts[split.rawValue] = parsed.count
        }
        self.examples = examples
        let identity = try BackboneFiles(folder: folder).identity(
            name: request.backbone == "minilm" ? "all-MiniLM-L6-v2" : folder.lastPathComponent, architecture: "bert",
            hiddenSize: encoder.config.hiddenSize, layerCount: encoder.config.layerCount)
        let t = tokenizer.configuration
        settings = ExtractionSettings(
            backbone: identity,
            preprocessing: ["tokenizer": "wordpiece", "max_length": String(request.maxLength), "lowercase": String(t.lowercase),
                            "strip_accents": t.stripAccents.map(String.init) ?? "default", "text_column": request.columns.text,
                            "label_column": request.columns.label, "text_pair_column": request.columns.textPair ?? "",
                            "format": source.format.rawValue, "vocabulary": try BackboneFiles.vocabularyHash(folder: folder)],
            datasetFiles: files, layers: layers, tokens: request.options.tokens, storage: request.options.storage, zstdLevel: request.options.zstdLevel,
            shuffle: request.options.shuffle, labels: labels.names, splits: source.splits.map(\.rawValue), splitCounts: counts,
            streams: request.options.orderedStreams.map(\.name), maxTokens: request.maxLength,
            pooling: "mean", blobs: request.options.blobNames, shard: request.options.shardInfo(splitCounts: counts),
            compute: request.options.compute.rawValue, int8Calibration: request.options.int8Calibration)
        blobs = try request.options.blobs(encoder.sideBlocks)
    }

    /// Extracts every split, resuming where an earlier run stopped. Returns the opened cache.
    @discardableResult
    public func run(progress report: (ExtractionProgress) -> Void = { _ in }) throws -> ActivationCache {
        try runChunks(output: request.output, settings: settings, blobs: blobs, chunkSize: request.options.chunkSize, threads: request.options.threads, report: report) { name in
            let examples = self.examples[name]!
            let encodings = examples.map { tokenizer.encode($0.text, pair: $0.textPair, maxLength: request.maxLength) }
            return SplitWork(batches: { self.batches($0, encodings) },
                             compute: { try self.activations($0, encodings, examples) },
                             tokens: { $0.reduce(0) { $0 + encodings[$1].ids.count } })
        }
    }

    /// Indices of a chunk sorted by length (ties by index) and cut into batches of about
    /// `batchTokens` tokens. Deterministic, so a resumed chunk is computed exactly as before.
    func batches(_ chunk: Range<Int>, _ encodings: [Encoding]) -> [[Int]] {
        let order = chunk.sorted { (encodings[$0].ids.count, $0) < (encodings[$1].ids.count, $1) }
        var out: [[Int]] = [], current: [Int] = [], tokens = 0
        for i in order {
            let n = encodings[i].ids.count
            if !current.isEmpty && tokens + n > request.options.batchTokens {
                out.append(current)
                current = []
                tokens = 0
            }
            current.append(i)
            tokens += n
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Runs one packed batch through the encoder; each example's kept rows per layer.
    private func activations(_ batch: [Int], _ encodings: [Encoding], _ examples: [TextExample]) throws -> [ExampleActivations] {
        let segments = Segments(lengths: batch.map { encodings[$0].ids.count })
        let ids = batch.flatMap { encodings[$0].ids.map(Int32.init) }, types = batch.flatMap { encodings[$0].tokenTypeIds.map(Int32.init) }
        let outputs = try encoder.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: Set(settings.layers),
                                               streams: encoderStreams(settings))
        let width = encoder.config.hiddenSize, keys = blockKeys(settings)
        return batch.enumerated().map { position, index in
            let range = segments.range(position)
            let blocks = keys.map { TokenPooling.rows(of: tensor(outputs, $0), range: range, width: width, policy: request.options.tokens) }
            return ExampleActivations(index: index, label: examples[index].labelID, rows: blocks[0].count / width, blocks: blocks)
        }
    }
}

