// Data parallelism inside one head: a batch is split into a fixed number of parts (the head kind's
// `batchShards`: first half, second half), each part's forward and backward runs on its own tape,
// possibly on its own core, into its own gradient buffer, and the buffers are summed in part order.
// The parts and their order depend only on the batch, never on the cores or the other heads of a
// pass, so a step gives the same bits wherever it runs.
import Autodiff
import Foundation
import TensorCore

/// One head's tapes, dropout streams and per-part gradients.
public final class ShardedStep: @unchecked Sendable {
    public let head: any Head
    /// One tape per part, each with its own generator.
    public let tapes: [Tape]
    /// Each part's parameter gradients, laid out as the head's set (empty with one part, which
    /// flushes straight into the set).
    private var gradients: [[Float]]
    /// Each part's share of the batch's mean loss.
    private var losses: [Float]

    /// `rng` is the head's dropout stream; with several parts, part i draws from `rng.derived(i)`.
    public init(head: any Head, rng: SeededGenerator) {
        self.head = head
        let parts = max(head.batchShards, 1)
        // A head that does not split keeps the one stream it always had.
        tapes = (0..<parts).map { Tape(training: true, rng: parts == 1 ? rng : rng.derived(UInt64($0))) }
        gradients = parts == 1 ? [] : Array(repeating: [Float](repeating: 0, count: head.parameters.count), count: parts)
        losses = Array(repeating: 0, count: parts)
    }

    public var parts: Int { tapes.count }

    /// Forward and backward of part `part` (`batch`, one part of a batch of `batchCount` examples)
    /// on its own tape. Its loss is scaled by its share of the batch, so that the parts' losses and
    /// gradients add up to the whole batch's mean. Different parts may run at once on different
    /// threads; a part whose loss is not finite records it and skips the backward.
    public func forwardBackward(part: Int, _ batch: Batch, batchCount: Int, labelSmoothing: Float) {
        let tape = tapes[part]
        tape.reset()
        tape.isTraining = true
        guard batch.count > 0 else { losses[part] = 0; return }
        let mean = head.logits(batch, on: tape).crossEntropy(labels: batch.labels, smoothing: labelSmoothing)
        let loss = parts == 1 ? mean : mean.scaled(by: Float(batch.count) / Float(batchCount))
        losses[part] = loss.value.scalar
        guard losses[part].isFinite else { return }
        if parts == 1 {
            head.parameters.zeroGradients()
            tape.backward(from: loss)
        } else {
            gradients[part].withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            tape.backward(from: loss, into: &gradients[part], of: head.parameters)
        }
    }

    /// After every part: the batch's mean loss, and, when it is finite, the parts' gradients summed
    /// in part order into the head's set.
    public func combine() -> Float {
        var loss: Float = 0
        for l in losses { loss += l }
        guard loss.isFinite, parts > 1 else { return loss }
        head.parameters.gradients.withUnsafeMutableBufferPointer { dst in
            dst.update(repeating: 0)
            for part in gradients {
                part.withUnsafeBufferPointer { src in
                    for i in 0..<dst.count { dst[i] += src[i] }
                }
            }
        }
        return loss
    }

    /// Eval-mode logits [B, C] of one part, on that part's tape.
    public func predict(part: Int, _ batch: Batch) -> Tensor {
        let tape = tapes[part]
        tape.reset()
        tape.isTraining = false
        return head.logits(batch, on: tape).value
    }
}

/// A batch and its parts, each sliced once, on first use, for every head that splits that many
/// ways (the heads of a pass ask from several threads; different parts slice at once).
public final class BatchParts: @unchecked Sendable {
    public let batch: Batch
    private var parts: [Int: [Batch?]] = [:]
    private let locks: [Int: [NSLock]]

    /// `partCounts`: the `parts` of the heads that will ask.
    public init(_ batch: Batch, partCounts: Set<Int>) {
        self.batch = batch
        var locks: [Int: [NSLock]] = [:]
        for k in partCounts where k > 1 {
            parts[k] = Array(repeating: nil, count: k)
            locks[k] = (0..<k).map { _ in NSLock() }
        }
        self.locks = locks
    }

    /// Part `part` of `count` (`Batch.shardRanges`); the whole batch when `count` is 1.
    public func part(_ part: Int, of count: Int) -> Batch {
        guard count > 1 else { return batch }
        guard let lock = locks[count]?[part] else { preconditionFailure("parts of \(count) were not announced") }
        lock.lock()
        defer { lock.unlock() }
        if let p = parts[count]![part] { return p }
        let p = batch.slice(Batch.shardRanges(count: batch.count, shards: count)[part])
        parts[count]![part] = p
        return p
    }
}
