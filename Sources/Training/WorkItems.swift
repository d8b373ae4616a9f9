// The work items of one step (each head's parts, then the next batch's decoding) run on the cores,
// and the eval-mode pass over a split built on them, shared by training's evaluations and
// `sidecar eval`.
import Dispatch
import Foundation
import SideNetworks
import TensorCore

/// Runs `body(k)` for k in 0..<count on up to `workers` threads, each taking the next item not yet
/// taken, so the items listed first start first.
func runItems(_ count: Int, workers: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let workers = min(count, workers)
    if workers <= 1 {
        (0..<count).forEach(body)
        return
    }
    let claimed = Counter()
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
        while let k = claimed.claim(below: count) { body(k) }
    }
}

extension NextBatch {
    /// Batch `indices` decoded now, its parts on up to `workers` threads (a pass's first batch).
    func decodeNow(_ indices: [Int], workers: Int) throws -> [Batch] {
        try start(indices)
        runItems(parts, workers: workers) { self.decode(part: $0) }
        return try take()
    }
}

/// Every example of `dataset`, in batches of `batchSize`, through each of `steps` in eval mode, as
/// training runs: the steps' parts on up to `workers` threads, the next batch decoded in their
/// gaps. `collect(i, logits, labels)` gets step i's logits for each non-empty part, in batch order
/// (every step's parts of a batch before the next batch's), and `batchDone` follows each batch's
/// last; returns every example's label in that order. `stop` runs before each batch and may throw.
func predictSplit(_ dataset: CacheDataset, steps: [ShardedStep], batchSize: Int, workers: Int,
                  stop: () throws -> Void = {}, collect: (Int, Tensor, [Int]) -> Void,
                  batchDone: () -> Void = {}) throws -> [Int] {
    let size = max(1, min(batchSize, dataset.count))  // $0 + batchSize must not overflow
    let batches = stride(from: 0, to: dataset.count, by: size).map { Array($0..<min($0 + size, dataset.count)) }
    let partCounts = Set(steps.map(\.parts))
    let next = try NextBatch(dataset: dataset, parts: max(partCounts.max() ?? 1, workers))
    let items = steps.indices.flatMap { i in (0..<steps[i].parts).map { (i, $0) } }
    var labels: [Int] = []
    var decoded = batches.isEmpty ? [] : try next.decodeNow(batches[0], workers: workers)
    for done in batches.indices {
        try stop()
        let parts = BatchParts(decoded, partCounts: partCounts)
        labels += parts.labels
        let logits = items.map { _ in PartLogits() }
        let more = done + 1 < batches.count
        if more { try next.start(batches[done + 1]) }
        runItems(items.count + (more ? next.parts : 0), workers: workers) { k in
            guard k < items.count else { return next.decode(part: k - items.count) }
            let (i, part) = items[k], rows = parts.part(part, of: steps[i].parts)
            if rows.count > 0 { logits[k].logits = steps[i].predict(part: part, rows) }
        }
        for (k, (i, part)) in items.enumerated() {
            if let out = logits[k].logits { collect(i, out, parts.part(part, of: steps[i].parts).labels) }
        }
        batchDone()
        if more { decoded = try next.take() }
    }
    return labels
}

/// The logits of one part of one batch for one head, written by the one thread that runs it.
final class PartLogits: @unchecked Sendable {
    var logits: Tensor?
}

/// Hands out indices to worker threads.
final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()

    func claim(below limit: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}
