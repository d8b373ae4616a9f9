// What every extractor shares: examples go in fixed chunks of consecutive indices, each chunk
// committed in one transaction with the progress that covers it, so a killed run resumes at a
// chunk boundary and recomputes exactly what it lost; the work inside a chunk runs in parallel,
// one batch per core, with single-threaded BLAS.
import ActivationStore
import Dispatch
import Encoders
import Foundation
import OneDNN
import TensorCore

/// What to keep and how to store and batch it: the options every extractor shares.
public struct CacheOptions: Sendable {
    /// "all", a list "0,3,6" or ranges "0-6" (0 is the embedding output).
    public var layers = "all"
    public var tokens = TokenPolicy.all
    public var storage = StorageType.bf16
    public var zstdLevel = 1
    public var shuffle = true
    /// Examples per committed transaction (what a killed run recomputes at most).
    public var chunkSize = 1024
    /// Tokens per forward batch.
    public var batchTokens = 2048
    /// Batches computed at once (each on one core); nil: every core.
    public var threads: Int? = nil
    /// Extra per-block streams (.attention, .mlp) stored for every kept layer ≥ 1, same rows as
    /// the hidden states.
    public var streams: [ActivationStore.Stream] = []
    /// LST reductions r whose pruned side-block init is stored (blob "lst.r{r}"); empty: none.
    public var lstReductions: [Int] = [8]
    /// How many top blocks' full weights to store (blob "top_blocks"); 0: none.
    public var topBlocks = 2
    /// Extract only this part of every split (ShardInfo says which); nil: everything.
    public var shard: Shard? = nil
    /// The arithmetic of the encoder's dense products (recorded in the settings).
    public var compute = ComputePath.f32

    public init() {}

    /// What a shard's manifest records for these split sizes (nil when not sharded).
    func shardInfo(splitCounts: [String: Int]) -> ShardInfo? {
        shard.map { ShardInfo($0, chunkSize: chunkSize, splitCounts: splitCounts) }
    }

    /// The streams in record order (by stream code), without duplicates.
    var orderedStreams: [ActivationStore.Stream] { Array(Set(streams)).sorted { $0.rawValue < $1.rawValue } }

    /// Checks the stream and blob flags that do not depend on the backbone.
    func validate() throws {
        guard (1...22).contains(zstdLevel) else { throw ExtractError("--zstd-level \(zstdLevel): zstd levels are 1...22") }
        if streams.contains(.hidden) { throw ExtractError("--streams: hidden states are always stored; name only attn, mlp") }
        if !streams.isEmpty && storage == .int8 {
            throw ExtractError("--streams with --dtype int8: int8 scales are calibrated per layer of the hidden states only; use f32, f16 or bf16")
        }
        if let bad = lstReductions.first(where: { $0 < 1 }) { throw ExtractError("--lst-reductions \(bad): a reduction is at least 1") }
        if topBlocks < 0 { throw ExtractError("--top-blocks \(topBlocks): must be 0 (none) or more") }
    }

    /// The layers to keep, from `layers`; refused where streams are asked for but no kept layer
    /// has any (layer 0, the embedding output, has no attention or FFN branch).
    func keptLayers(layerCount: Int) throws -> [Int] {
        let kept = try LayerSelection.parse(layers, layerCount: layerCount)
        if !streams.isEmpty && !kept.contains(where: { $0 >= 1 }) {
            throw ExtractError("--streams \(orderedStreams.map(\.name).joined(separator: ",")) with --layers \(layers): streams are stored for "
                               + "layers 1 and up only (layer 0 is the embedding output, with no attention or FFN branch)")
        }
        return kept
    }

    /// What the manifest records of the int8 calibration: the examples it reads (see `runChunks`).
    var int8Calibration: Int? { storage == .int8 ? chunkSize : nil }

    /// The blob names these options ask for, in storage order.
    var blobNames: [String] {
        Array(Set(lstReductions)).sorted().map { "lst.r\($0)" } + (topBlocks > 0 ? ["top_blocks"] : [])
    }

    /// The blobs computed from the backbone's weights; errors name the flag.
    func blobs(_ backbone: BackboneBlocks) throws -> [BlobContent] {
        var out: [WeightBlob] = []
        for r in Array(Set(lstReductions)).sorted() {
            // The default, 8, does not fit every backbone (a tiny test model's 8 channels over 4 heads).
            do { out.append(try SideBlobs.lst(backbone, reduction: r)) } catch {
                throw ExtractError("--lst-reductions \(r): \(error); give reductions this backbone allows, or --lst-reductions none to store no LST blob")
            }
        }
        if topBlocks > 0 {
            do { out.append(try SideBlobs.topBlocks(backbone, count: topBlocks)) } catch { throw ExtractError("--top-blocks \(topBlocks): \(error)") }
        }
        return out.map { BlobContent(name: $0.name, tensors: $0.tensors, metadata: $0.metadata) }
    }
}

/// Parses `--streams`: "none" or a comma list of "attn", "mlp".
public enum StreamSelection {
    public static func parse(_ text: String) throws -> [ActivationStore.Stream] {
        if text == "none" || text.isEmpty { return [] }
        return try text.split(separator: ",", omittingEmptySubsequences: false).map { part in
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let stream = ActivationStore.Stream(name: name), stream != .hidden else {
                throw ExtractError("--streams \"\(text)\": \"\(name)\" is not a stream (attn, mlp, or none)")
            }
            return stream
        }
    }
}

/// Parses `--lst-reductions`: "none" or a comma list of positive integers.
public enum ReductionSelection {
    public static func parse(_ text: String) throws -> [Int] {
        if text == "none" || text.isEmpty { return [] }
        return try text.split(separator: ",", omittingEmptySubsequences: false).map { part in
            guard let r = Int(part.trimmingCharacters(in: .whitespaces)), r >= 1 else {
                throw ExtractError("--lst-reductions \"\(text)\": \"\(part)\" is not a positive integer (or use none)")
            }
            return r
        }
    }
}

/// The (layer, stream) of each block of a record, in the order extractors produce them: the
/// hidden state of every kept layer, then each extra stream for every kept layer ≥ 1.
func blockKeys(_ settings: ExtractionSettings) -> [(layer: Int, stream: ActivationStore.Stream)] {
    let streams = (settings.streams ?? []).compactMap { ActivationStore.Stream(name: $0) }
    return settings.layers.map { ($0, .hidden) } + streams.flatMap { stream in settings.layers.filter { $0 >= 1 }.map { ($0, stream) } }
}

/// The encoder output one block key names.
func tensor(_ outputs: EncoderOutputs, _ key: (layer: Int, stream: ActivationStore.Stream)) -> Tensor {
    switch key.stream {
    case .hidden: outputs.hidden[key.layer]!
    case .attention: outputs.streams[.attention]![key.layer]!
    case .mlp: outputs.streams[.mlp]![key.layer]!
    }
}

/// The encoder streams the settings ask for.
func encoderStreams(_ settings: ExtractionSettings) -> Set<EncoderStream> {
    Set((settings.streams ?? []).compactMap { name -> EncoderStream? in
        switch ActivationStore.Stream(name: name) {
        case .attention: .attention
        case .mlp: .mlp
        default: nil
        }
    })
}

/// One example's activations, ready to encode: `rows` × width values per block key (blockKeys).
struct ExampleActivations: Sendable {
    let index: Int
    let label: Int?
    let rows: Int
    let blocks: [[Float]]
}

/// How an extractor computes one split: how a chunk is cut into batches, what a batch computes,
/// and how many tokens a chunk puts through the encoder.
struct SplitWork: Sendable {
    let batches: @Sendable (Range<Int>) -> [[Int]]
    let compute: @Sendable ([Int]) throws -> [ExampleActivations]
    let tokens: @Sendable (Range<Int>) -> Int
}

/// Opens (or resumes) the cache at `output` and fills every incomplete split (a shard: its part of
/// each); `prepare` loads a split. For int8 storage, per-layer, per-channel scales are calibrated
/// first on the first chunk of the first split (deterministically, so a resumed run that lost them
/// computes the same, and every shard computes the scales an unsharded run does, so shards merge).
func runChunks(output: String, settings: ExtractionSettings, blobs: [BlobContent], chunkSize: Int, threads: Int?,
               report: (ExtractionProgress) -> Void, prepare: (String) throws -> SplitWork) throws -> ActivationCache {
    let cache = try ActivationCache.openForWriting(path: output, settings: settings, blobs: blobs)
    keepFreedMemory()
    let workers = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
    let previousThreads = BLAS.threadCount
    BLAS.setThreadCount(1)
    defer { BLAS.setThreadCount(previousThreads) }
    var scales: [Int: [Float]] = [:]
    if settings.storage == .int8 {
        if let stored = try cache.int8Scales() {
            scales = stored
        } else if let first = settings.splits.first {
            let work = try prepare(first)
            let chunk = 0..<min(chunkSize, settings.splitCounts[first] ?? 0)
            let examples = try parallelMap(work.batches(chunk), workers: workers, work.compute).flatMap { $0 }
            scales = Int8Calibration.scales(layers: settings.layers, width: settings.backbone.hiddenSize,
                                            blocks: examples.map(\.blocks))
            try cache.storeInt8Scales(scales)
        }
    }
    precondition(settings.shard == nil || settings.shard?.chunkSize == chunkSize, "runChunks: the shard was planned with another chunk size")
    for name in settings.splits {
        var state = try cache.progress(of: name)
        if state.complete { continue }
        // A shard fills its part of the split (whole chunks, so the batches are an unsharded
        // run's); its progress counts from the start of that part.
        let part = settings.heldRange(of: name)
        let work = try prepare(name)
        let resumedFrom = state.written
        var tokens = 0
        let started = ContinuousClock.now
        let keys = blockKeys(settings), width = settings.backbone.hiddenSize
        let scalesNow = scales
        if part.isEmpty {
            state.complete = true
            try cache.append(split: name, records: [], progress: state)
            report(ExtractionProgress(split: name, done: 0, total: 0, tokens: 0, seconds: 0, resumedFrom: 0))
            continue
        }
        // Each chunk's append runs while the next chunk computes; a chunk is reported once it is
        // on disk.
        let writer = ChunkWriter()
        defer { try? writer.finish() }
        var onItsWay: (progress: SplitProgress, tokens: Int)?
        func reportWritten() throws {
            try writer.finish()
            guard let (written, tokens) = onItsWay else { return }
            report(ExtractionProgress(split: name, done: written.written, total: part.count, tokens: tokens,
                                      seconds: (ContinuousClock.now - started).inSeconds, resumedFrom: resumedFrom))
            onItsWay = nil
        }
        // Chunks as an uninterrupted run cuts them; their batches go to the workers with no pause
        // between chunks (a chunk of a few batches would otherwise leave a core idle at its end).
        let chunks = stride(from: part.lowerBound + state.written, to: part.upperBound, by: chunkSize).map {
            $0..<min($0 + chunkSize, part.upperBound)
        }
        // One encoder (a zstd context and its buffers) per worker thread, kept for all its batches.
        let encoders = PerWorker((0..<max(1, workers)).map { _ in
            RecordEncoder(storage: settings.storage, zstdLevel: Int32(settings.zstdLevel), shuffle: settings.shuffle, int8Scales: scalesNow)
        })
        let pipeline = ChunkPipeline(batches: chunks.map(work.batches), workers: workers) { batch, worker in
            let encoder = encoders.values[worker]
            return try work.compute(batch).map { example in
                (index: example.index, bytes: try withBlockPointers(example.blocks) { pointers in
                    try encoder.encode(key: ActivationCache.keyName(split: name, index: example.index), label: example.label,
                                       rows: example.rows, width: width,
                                       blocks: zip(keys, pointers).map { RecordEncoder.Block(layer: $0.layer, stream: $0.stream, values: $1) })
                })
            }
        }
        defer { pipeline.stop() }
        for (position, chunk) in chunks.enumerated() {
            var records = try pipeline.take(position).flatMap { $0 }
            records.sort { $0.index < $1.index }
            tokens += work.tokens(chunk)
            state.written = chunk.upperBound - part.lowerBound
            state.complete = state.written == part.count
            try reportWritten()
            let (sorted, progress) = (records, state)
            writer.submit { try cache.append(split: name, records: sorted, progress: progress) }
            onItsWay = (state, tokens)
        }
        try reportWritten()
    }
    return cache
}

/// Computes the batches of consecutive chunks on `workers` threads while the caller takes whole
/// chunks in order. A thread that finishes one chunk's last batch starts on the next chunk; at most
/// one chunk past the one being taken is started, which bounds what is held. After a failed batch
/// no more are started and `take` throws its error.
private final class ChunkPipeline<R: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    /// Every batch, chunk by chunk; `firstBatch[c]` is chunk c's first.
    private let batches: [[Int]]
    private let chunkOf: [Int]
    private let firstBatch: [Int]
    // Guarded by `condition`.
    private var results: [R?]
    private var pending: [Int]
    private var next = 0
    private var taken = 0
    private var failure: (any Error)?
    private var stopped = false
    private let threads = DispatchGroup()

    /// `transform(batch, worker)` runs on worker thread `worker` (0..<max(1, workers)).
    init(batches perChunk: [[[Int]]], workers: Int, _ transform: @escaping @Sendable ([Int], Int) throws -> R) {
        batches = perChunk.flatMap { $0 }
        chunkOf = perChunk.enumerated().flatMap { chunk, its in Array(repeating: chunk, count: its.count) }
        firstBatch = perChunk.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        results = Array(repeating: nil, count: batches.count)
        pending = perChunk.map(\.count)
        // Threads of their own: a pooled thread waiting for the next chunk could starve the pool.
        for worker in 0..<max(1, workers) {
            threads.enter()
            Thread { [self] in
                while let i = claim() { done(i, Result { try transform(batches[i], worker) }) }
                threads.leave()
            }.start()
        }
    }

    private func claim() -> Int? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if stopped || failure != nil || next == batches.count { return nil }
            if chunkOf[next] <= taken + 1 {
                next += 1
                return next - 1
            }
            condition.wait()
        }
    }

    private func done(_ i: Int, _ result: Result<R, any Error>) {
        condition.lock()
        defer { condition.unlock() }
        switch result {
        case .success(let value): results[i] = value
        case .failure(let error): failure = failure ?? error
        }
        pending[chunkOf[i]] -= 1
        condition.broadcast()
    }

    /// Chunk `chunk`'s results in batch order, once all are computed; chunks are taken in order.
    func take(_ chunk: Int) throws -> [R] {
        condition.lock()
        defer { condition.unlock() }
        precondition(chunk == taken, "ChunkPipeline: chunk \(chunk) taken out of order")
        while pending[chunk] > 0 && failure == nil { condition.wait() }
        if let failure { throw failure }
        let range = firstBatch[chunk]..<firstBatch[chunk + 1]
        let out = range.map { results[$0]! }
        for i in range { results[i] = nil }
        taken += 1
        condition.broadcast()
        return out
    }

    /// Starts no more batches and waits for the threads to finish theirs.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
        threads.wait()
    }
}

/// Values indexed by worker thread, each used by its own thread only.
private struct PerWorker<T>: @unchecked Sendable {
    let values: [T]
    init(_ values: [T]) { self.values = values }
}

/// Runs appends one after another on a queue of their own, so the next chunk computes meanwhile.
/// After a failed append the later ones are dropped, and `finish` throws its error.
private final class ChunkWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "sidecar.extract.append")
    /// Only touched on `queue`.
    private var failure: (any Error)?

    func submit(_ append: @escaping @Sendable () throws -> Void) {
        queue.async { [self] in
            guard failure == nil else { return }
            do { try append() } catch { failure = error }
        }
    }

    /// Waits for every submitted append; throws the first failure.
    func finish() throws {
        try queue.sync { if let failure { throw failure } }
    }
}

/// Symmetric int8 scales per layer and channel: the largest |value| seen in calibration / 127.
/// Values beyond it are clipped when stored. Per channel because BERT has outlier channels (per
/// token scales lost 0.66 points on a probe, per channel none).
enum Int8Calibration {
    static func scales(layers: [Int], width: Int, blocks: [[[Float]]]) -> [Int: [Float]] {
        var out: [Int: [Float]] = [:]
        for (position, layer) in layers.enumerated() {
            var maxima = [Float](repeating: 0, count: width)
            for example in blocks {
                let values = example[position]
                for (i, v) in values.enumerated() { maxima[i % width] = max(maxima[i % width], abs(v)) }
            }
            out[layer] = maxima.map { $0 > 0 ? $0 / 127 : 1 }
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
