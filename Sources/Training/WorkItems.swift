// The work items of one step (each head's parts, then the next batch's decoding) run on the cores,
// shared by training, its evaluations and `sidecar eval`.
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
