// Data parallelism inside one head: a batch is split into a fixed number of parts (the head kind's
// `batchShards`: consecutive examples, about equal in rows), each part's forward and backward runs on its own tape,
// possibly on its own core, into its own gradient buffer, and the buffers are summed in part order.
// The parts and their order depend only on the batch, never on the cores or the other heads of a
// pass, so a step gives the same bits wherever it runs.
import Autodiff
import Foundation
import TensorCore

/// One head's tapes, dropout streams and per-part gradients.
public final class ShardedStep: @unchecked Sendable {
    /// What one part's thread writes: nothing here is shared between parts.
    private final class Part {
        let tape: Tape
        /// The part's parameter gradients, laid out as the head's set (empty with one part, which
        /// flushes straight into the set).
        var gradients: [Float]
        /// The part's share of the batch's mean loss.
        var loss: Float = 0

        init(tape: Tape, gradients: [Float]) {
            self.tape = tape
            self.gradients = gradients
        }
    }

    public let head: any Head
    private let state: [Part]

    /// `rng` is the head's dropout stream; with several parts, part i draws from `rng.derived(i)`.
    public init(head: any Head, rng: SeededGenerator) {
        self.head = head
        let parts = max(head.batchShards, 1)
        // A head that does not split keeps the one stream it always had.
        state = (0..<parts).map {
            Part(tape: Tape(training: true, rng: parts == 1 ? rng : rng.derived(UInt64($0))),
                 gradients: parts == 1 ? [] : [Float](repeating: 0, count: head.parameters.count))
        }
    }

    public var parts: Int { state.count }

    /// Forward and backward of part `part` (`batch`, one part of a batch of `batchCount` examples)
    /// on its own tape. Its loss is scaled by its share of the batch, so that the parts' losses and
    /// gradients add up to the whole batch's mean. Different parts may run at once on different
    /// threads; a part whose loss is not finite records it and skips the backward.
    public func forwardBackward(part: Int, _ batch: Batch, batchCount: Int, labelSmoothing: Float) {
        let p = state[part]
        // The tape is emptied before this part returns, not when the part's next step starts: its
        // tensors are then free for the other part and the next batch instead of held for nothing.
        defer { p.tape.reset() }
        p.tape.isTraining = true
        // An empty part (the first half of a batch of one) adds nothing: no stale gradient either.
        // A backward writes the whole buffer, so it is zeroed only when there is none.
        func clearGradients() { if parts > 1 { p.gradients.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } } }
        guard batch.count > 0 else { p.loss = 0; clearGradients(); return }
        let mean = head.logits(batch, on: p.tape).crossEntropy(labels: batch.labels, smoothing: labelSmoothing)
        let loss = parts == 1 ? mean : mean.scaled(by: Float(batch.count) / Float(batchCount))
        p.loss = loss.value.scalar
        guard p.loss.isFinite else { clearGradients(); return }
        if parts == 1 {
            head.parameters.zeroGradients()
            p.tape.backward(from: loss, releasing: true)
        } else {
            p.tape.backward(from: loss, into: &p.gradients, of: head.parameters, releasing: true)
        }
    }

    /// After every part: the batch's mean loss, and, when it is finite, the parts' gradients summed
    /// in part order into the head's set.
    public func combine() -> Float {
        var loss: Float = 0
        for p in state { loss += p.loss }
        guard loss.isFinite, parts > 1 else { return loss }
        // Part 0's gradient, then each other part's added, in part order.
        head.parameters.gradients.withUnsafeMutableBufferPointer { dst in
            let out = dst.baseAddress!
            for (k, part) in state.enumerated() {
                part.gradients.withUnsafeBufferPointer { src in
                    let from = src.baseAddress!
                    forEachChunk(of: dst.count) { chunk in
                        if k == 0 { for i in chunk { out[i] = from[i] } } else { for i in chunk { out[i] += from[i] } }
                    }
                }
            }
        }
        return loss
    }

    /// Eval-mode logits [B, C] of one part, on that part's tape.
    public func predict(part: Int, _ batch: Batch) -> Tensor {
        let tape = state[part].tape
        defer { tape.reset() }
        tape.isTraining = false
        return head.logits(batch, on: tape).value
    }
}

/// A batch and its parts for the heads of a pass, as decoded (the whole batch, or already in
/// parts), each other form built once, on first use: the whole batch by concatenating the parts,
/// a different split by slicing the whole. The heads of a pass ask from several threads.
public final class BatchParts: @unchecked Sendable {
    private let decoded: [Batch]
    private let whole: OnceCell<Batch>
    /// Slices by part count; the dictionary itself is never changed after init.
    private let sliced: [Int: [OnceCell<Batch>]]

    /// `decoded`: the batch, or its `decoded.count` parts (`Batch.shardRanges`) in order;
    /// `partCounts`: the `parts` of the heads that will ask.
    public init(_ decoded: [Batch], partCounts: Set<Int>) {
        precondition(!decoded.isEmpty, "a batch of no parts")
        self.decoded = decoded
        whole = OnceCell(decoded.count == 1 ? decoded[0] : nil)
        var sliced: [Int: [OnceCell<Batch>]] = [:]
        for k in partCounts where k > 1 && k != decoded.count { sliced[k] = (0..<k).map { _ in OnceCell() } }
        self.sliced = sliced
    }

    public convenience init(_ batch: Batch, partCounts: Set<Int>) {
        self.init([batch], partCounts: partCounts)
    }

    /// Examples in the batch.
    public var count: Int { decoded.reduce(0) { $0 + $1.count } }
    /// Every example's label, in batch order.
    public var labels: [Int] { decoded.flatMap(\.labels) }

    /// Part `part` of `count` (`Batch.shardRanges`); the whole batch when `count` is 1.
    public func part(_ part: Int, of count: Int) -> Batch {
        if count == decoded.count { return decoded[part] }
        let all = whole.get { Batch(concatenating: decoded) }
        if count == 1 { return all }
        guard let slot = sliced[count]?[part] else { preconditionFailure("parts of \(count) were not announced") }
        return slot.get { all.slice(Batch.shardRanges(lengths: all.segments.lengths, shards: count)[part]) }
    }
}
