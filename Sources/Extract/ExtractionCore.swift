// What every extractor shares: examples go in fixed chunks of consecutive indices, each chunk
// committed in one transaction with the progress that covers it, so a killed run resumes at a
// chunk boundary and recomputes exactly what it lost; the work inside a chunk runs in parallel,
// one batch per core, with single-threaded BLAS.
import ActivationStore
import Dispatch
import Foundation
import TensorCore

/// Encodes the records of a chunk of one split: (records, tokens through the encoder).
typealias ChunkEncoder = (_ chunk: Range<Int>, _ workers: Int) throws -> (records: [(index: Int, bytes: [UInt8])], tokens: Int)

/// Opens (or resumes) the cache at `output` and fills every incomplete split; `prepare` loads a
/// split and returns what encodes its chunks.
func runChunks(output: String, settings: ExtractionSettings, chunkSize: Int, threads: Int?,
               report: (ExtractionProgress) -> Void, prepare: (String) throws -> ChunkEncoder) throws -> ActivationCache {
    let cache = try ActivationCache.openForWriting(path: output, settings: settings)
    let workers = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
    let previousThreads = BLAS.threadCount
    BLAS.setThreadCount(1)
    defer { BLAS.setThreadCount(previousThreads) }
    for name in settings.splits {
        var state = try cache.progress(of: name)
        if state.complete { continue }
        let total = settings.splitCounts[name] ?? 0
        let encodeChunk = try prepare(name)
        let resumedFrom = state.written
        var tokens = 0
        let started = ContinuousClock.now
        while state.written < total {
            let chunk = state.written..<min(state.written + chunkSize, total)
            var (records, chunkTokens) = try encodeChunk(chunk, workers)
            records.sort { $0.index < $1.index }
            tokens += chunkTokens
            state.written = chunk.upperBound
            state.complete = state.written == total
            try cache.append(split: name, records: records, progress: state)
            let elapsed = ContinuousClock.now - started
            report(ExtractionProgress(split: name, done: state.written, total: total, tokens: tokens,
                                      seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
                                      resumedFrom: resumedFrom))
        }
    }
    return cache
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
