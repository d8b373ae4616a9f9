// Stage one for text: read a dataset, tokenise, run the frozen BERT encoder once, and write each
// example's kept layers to the cache. Examples go in fixed chunks of consecutive indices, each
// chunk committed in one transaction with the progress that covers it, so a killed run resumes at
// a chunk boundary and recomputes exactly what it lost. Within a chunk, examples are sorted by
// length and packed into batches of about `batchTokens` tokens (no padding is computed), and the
// batches run in parallel, one per core, each with single-threaded BLAS: on few cores this keeps
// every core busy through the non-matrix work too, with no thread hand-offs per product.
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
    public var layers = "all"
    public var tokens = TokenPolicy.all
    public var storage = StorageType.bf16
    public var zstdLevel = 1
    public var shuffle = true
    public var maxLength = 128
    /// Examples per committed transaction.
    public var chunkSize = 1024
    /// Tokens per forward batch.
    public var batchTokens = 2048
    /// Batches computed at once (each on one core); nil: every core.
    public var threads: Int? = nil

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
    let source: TextDatasetSource
    let labels: LabelMap

    /// Loads the backbone and checks the dataset; nothing is written yet.
    public init(_ request: TextExtractionRequest) throws {
        self.request = request
        guard (1...22).contains(request.zstdLevel) else { throw ExtractError("--zstd-level \(request.zstdLevel): zstd levels are 1...22") }
        guard request.maxLength >= 3 else { throw ExtractError("--max-length \(request.maxLength): must be at least 3 ([CLS] and two [SEP] for pairs)") }
        let folder = try BackboneFolder.resolve(request.backbone)
        encoder = try BertEncoder(folder: folder)
        tokenizer = try WordPieceTokenizer(directory: folder)
        guard request.maxLength <= encoder.config.maxPositions else {
            throw ExtractError("--max-length \(request.maxLength) exceeds the backbone's \(encoder.config.maxPositions) positions")
        }
        source = try TextDatasetSource(directory: request.dataset, format: request.format, columns: request.columns)
        labels = try source.labelMap()
        let layers = try LayerSelection.parse(request.layers, layerCount: encoder.config.layerCount)

        var files: [DatasetFile] = []
        var counts: [String: Int] = [:]
        for split in source.splits {
            let path = source.path(of: split)
            let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
            let hash = data.withUnsafeBytes { XXHash64.hash($0) }
            files.append(DatasetFile(split: split.rawValue, name: (path as NSString).lastPathComponent, bytes: data.count, hash: String(hash, radix: 16)))
            counts[split.rawValue] = try source.examples(split, labels: nil).count
        }
        let configData = try Data(contentsOf: folder.appendingPathComponent("config.json"))
        let weights = try Data(contentsOf: folder.appendingPathComponent("model.safetensors"), options: .alwaysMapped)
        let identity = BackboneIdentity(
            name: request.backbone == "minilm" ? "all-MiniLM-L6-v2" : folder.lastPathComponent, architecture: "bert",
            hiddenSize: encoder.config.hiddenSize, layerCount: encoder.config.layerCount,
            configHash: String(configData.withUnsafeBytes { XXHash64.hash($0) }, radix: 16),
            weightsHash: String(weights.withUnsafeBytes { XXHash64.hash($0) }, radix: 16), weightsBytes: weights.count)
        let t = tokenizer.configuration
        settings = ExtractionSettings(
            backbone: identity,
            preprocessing: ["tokenizer": "wordpiece", "max_length": String(request.maxLength), "lowercase": String(t.lowercase),
                            "strip_accents": t.stripAccents.map(String.init) ?? "default", "text_column": request.columns.text,
                            "label_column": request.columns.label, "text_pair_column": request.columns.textPair ?? "",
                            "format": source.format.rawValue],
            datasetFiles: files, layers: layers, tokens: request.tokens, storage: request.storage, zstdLevel: request.zstdLevel,
            shuffle: request.shuffle, labels: labels.names, splits: source.splits.map(\.rawValue), splitCounts: counts)
    }

    /// Extracts every split, resuming where an earlier run stopped. Returns the opened cache.
    @discardableResult
    public func run(progress report: (ExtractionProgress) -> Void = { _ in }) throws -> ActivationCache {
        let cache = try ActivationCache.openForWriting(path: request.output, settings: settings)
        let workers = max(1, request.threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let previousThreads = BLAS.threadCount
        BLAS.setThreadCount(1)
        defer { BLAS.setThreadCount(previousThreads) }
        for split in source.splits {
            let name = split.rawValue
            var state = try cache.progress(of: name)
            if state.complete { continue }
            let examples = try source.examples(split, labels: labels)
            let encodings = examples.map { tokenizer.encode($0.text, pair: $0.textPair, maxLength: request.maxLength) }
            let resumedFrom = state.written
            var tokens = 0
            let started = ContinuousClock.now
            while state.written < examples.count {
                let chunk = state.written..<min(state.written + request.chunkSize, examples.count)
                let work = batches(chunk, encodings)
                tokens += chunk.reduce(0) { $0 + encodings[$1].ids.count }
                var records = try parallelMap(work, workers: workers) { batch in
                    try self.encode(batch, encodings, examples,
                                    RecordEncoder(storage: self.request.storage, zstdLevel: Int32(self.request.zstdLevel), shuffle: self.request.shuffle))
                }.flatMap { $0 }
                records.sort { $0.index < $1.index }
                state.written = chunk.upperBound
                state.complete = state.written == examples.count
                try cache.append(split: name, records: records, progress: state)
                let elapsed = ContinuousClock.now - started
                report(ExtractionProgress(split: name, done: state.written, total: examples.count, tokens: tokens,
                                          seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
                                          resumedFrom: resumedFrom))
            }
            if examples.isEmpty {
                try cache.append(split: name, records: [], progress: SplitProgress(written: 0, complete: true))
            }
        }
        return cache
    }

    /// Indices of a chunk sorted by length (ties by index) and cut into batches of about
    /// `batchTokens` tokens. Deterministic, so a resumed chunk is computed exactly as before.
    func batches(_ chunk: Range<Int>, _ encodings: [Encoding]) -> [[Int]] {
        let order = chunk.sorted { (encodings[$0].ids.count, $0) < (encodings[$1].ids.count, $1) }
        var out: [[Int]] = [], current: [Int] = [], tokens = 0
        for i in order {
            let n = encodings[i].ids.count
            if !current.isEmpty && tokens + n > request.batchTokens {
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

    /// Runs one packed batch through the encoder and encodes each example's record.
    private func encode(_ batch: [Int], _ encodings: [Encoding], _ examples: [TextExample], _ recordEncoder: RecordEncoder) throws -> [(index: Int, bytes: [UInt8])] {
        let segments = Segments(lengths: batch.map { encodings[$0].ids.count })
        let ids = batch.flatMap { encodings[$0].ids.map(Int32.init) }, types = batch.flatMap { encodings[$0].tokenTypeIds.map(Int32.init) }
        let layers = settings.layers
        let states = try encoder.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: Set(layers))
        let width = encoder.config.hiddenSize
        var out: [(index: Int, bytes: [UInt8])] = []
        for (position, index) in batch.enumerated() {
            let range = segments.range(position)
            let rows = request.tokens == .all ? range.count : (request.tokens == .clsAndMean ? 2 : 1)
            var blocks: [[Float]] = []
            for layer in layers {
                let state = states[layer]!
                blocks.append(TokenPooling.rows(of: state, range: range, width: width, policy: request.tokens))
            }
            let bytes = try withBlockPointers(blocks) { pointers in
                try recordEncoder.encode(label: examples[index].labelID, rows: rows, width: width,
                                         blocks: zip(layers, pointers).map { RecordEncoder.Block(layer: $0, values: $1) })
            }
            out.append((index, bytes))
        }
        return out
    }
}

/// `transform` applied to every element on up to `workers` threads, results in input order; the
/// first error thrown is rethrown.
func parallelMap<T: Sendable, R: Sendable>(_ items: [T], workers: Int, _ transform: @escaping @Sendable (T) throws -> R) throws -> [R] {
    if workers <= 1 || items.count <= 1 { return try items.map(transform) }
    let board = ResultBoard<R>(count: items.count)
    DispatchQueue.concurrentPerform(iterations: min(workers, items.count)) { _ in
        while let i = board.claim() {
            board.store(Result { try transform(items[i]) }, at: i)
        }
    }
    return try board.results()
}

/// Hands out indices and collects results under a lock (the work items are large, so contention is nil).
private final class ResultBoard<R: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private var slots: [Result<R, Error>?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func claim() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < slots.count else { return nil }
        next += 1
        return next - 1
    }

    func store(_ result: Result<R, Error>, at index: Int) {
        lock.lock()
        slots[index] = result
        lock.unlock()
    }

    func results() throws -> [R] { try slots.map { try $0!.get() } }
}

/// Selects or pools the rows of one example according to the token policy.
enum TokenPooling {
    static func rows(of state: Tensor, range: Range<Int>, width: Int, policy: TokenPolicy) -> [Float] {
        let all = Array(state.scalars[(range.lowerBound * width)..<(range.upperBound * width)])
        func mean() -> [Float] {
            var m = [Float](repeating: 0, count: width)
            for r in 0..<range.count { for j in 0..<width { m[j] += all[r * width + j] } }
            let inv = 1 / Float(max(range.count, 1))
            return m.map { $0 * inv }
        }
        switch policy {
        case .all: return all
        case .cls: return Array(all.prefix(width))
        case .mean: return mean()
        case .clsAndMean: return Array(all.prefix(width)) + mean()
        }
    }
}

/// Calls `body` with buffer pointers to each array (kept alive for the call).
func withBlockPointers<R>(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
    func recurse(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) throws -> R {
        if i == arrays.count { return try body(acc) }
        return try arrays[i].withUnsafeBufferPointer { try recurse(i + 1, acc + [$0]) }
    }
    return try recurse(0, [])
}
