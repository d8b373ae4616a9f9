// Splitting a batch into parts for data parallelism changes nothing but rounding: each part
// computes exactly what its examples get in the whole batch, and the parts' summed gradients are
// the whole batch's, for every head kind that splits. The split is fixed by the batch alone.
import Autodiff
import Dispatch
import SideNetworks
import Testing
import TensorCore

@Suite struct DataParallelTests {
    /// The head kinds that split their batches.
    static let splitting = HeadRegistry.kinds.filter { $0.batchShards > 1 }.map { $0.name }

    /// Seven examples of uneven lengths: the parts (3 and 4 examples) have different longest
    /// sequences, so heads that pad to the longest pad each part differently.
    static let lengths = [3, 5, 2, 4, 6, 1, 2]

    /// Tiny settings without dropout or branch drop, parameters moved off their initial values
    /// (zero up-projections would hide the paths behind them).
    func head(_ name: String) throws -> any Head {
        let settings = Tiny.settings[name]!.merging(["dropout": "0"]) { _, b in b }
            .merging(name == "consolidator" ? ["branch_drop": "0", "block_dropout": "0"] : [:]) { _, b in b }
        let head = try Tiny.head(name, settings)
        var rng = SeededGenerator(seed: 3)
        for i in head.parameters.values.indices { head.parameters.values[i] += 0.2 * rng.nextNormal() }
        return head
    }

    /// Runs every part of a step, on separate threads when `concurrent`.
    func step(_ sharded: ShardedStep, _ batch: Batch, concurrent: Bool) -> Float {
        let parts = BatchParts(batch, partCounts: [sharded.parts])
        let run: @Sendable (Int) -> Void = { p in
            sharded.forwardBackward(part: p, parts.part(p, of: sharded.parts), batchCount: batch.count, labelSmoothing: 0)
        }
        if concurrent { DispatchQueue.concurrentPerform(iterations: sharded.parts, execute: run) } else { (0..<sharded.parts).forEach(run) }
        return sharded.combine()
    }

    @Test func theHeavyHeadsSplitAndTheProbesDoNot() {
        #expect(Set(Self.splitting) == ["losa", "lst", "unipt", "e3va", "consolidator"])
        #expect(HeadRegistry.kinds.allSatisfy { $0.batchShards == 1 || $0.batchShards == 2 })
    }

    @Test func partsAreConsecutiveExamplesAboutEqualInRows() {
        // Equal lengths: halves by count, the odd example in the second part.
        #expect(Batch.shardRanges(lengths: Array(repeating: 3, count: 7), shards: 2) == [0..<3, 3..<7])
        #expect(Batch.shardRanges(lengths: Array(repeating: 3, count: 8), shards: 2) == [0..<4, 4..<8])
        // Ragged: the boundary where the rows are closest to half (4 | 10 rather than 3 | 11 or 14 | 0).
        #expect(Batch.shardRanges(lengths: [1, 1, 1, 1, 10], shards: 2) == [0..<4, 4..<5])
        #expect(Batch.shardRanges(lengths: [10, 1, 1, 1, 1], shards: 2) == [0..<1, 1..<5])
        #expect(Batch.shardRanges(lengths: [2, 6, 1, 2, 3], shards: 3) == [0..<1, 1..<3, 3..<5])
        // One example: the first part is empty, never the last.
        #expect(Batch.shardRanges(lengths: [5], shards: 2) == [0..<0, 0..<1])
        #expect(Batch.shardRanges(lengths: [], shards: 2) == [0..<0, 0..<0])
        let batch = Tiny.batch(lengths: Self.lengths)
        let second = batch.slice(3..<7)
        #expect(second.labels == Array(batch.labels[3..<7]))
        #expect(second.segments.lengths == [4, 6, 1, 2])
        // Rows 10..<23 of the whole batch are the second part's 13 rows.
        let width = Tiny.width
        #expect(second.tensor(.hidden(1)).scalars == Array(batch.tensor(.hidden(1)).scalars[(10 * width)..<(23 * width)]))
        #expect(batch.slice(2..<2).count == 0 && batch.slice(2..<2).segments.totalRows == 0)
    }

    @Test(arguments: splitting)
    func eachPartComputesWhatItsExamplesGetInTheWholeBatch(_ name: String) throws {
        let head = try head(name)
        let batch = Tiny.batch(lengths: Self.lengths)
        let whole = head.logits(batch, on: Tape(training: false)).value
        let classes = whole.shape[1]
        var offset = 0
        for range in Batch.shardRanges(lengths: batch.segments.lengths, shards: 2) {
            let part = head.logits(batch.slice(range), on: Tape(training: false)).value
            let expected = Array(whole.scalars[(range.lowerBound * classes)..<(range.upperBound * classes)])
            for (a, b) in zip(part.scalars, expected) {
                #expect(abs(a - b) <= 1e-5 * max(abs(b), 1), "\(name): part logit \(a), whole-batch logit \(b)")
            }
            offset += range.count
        }
        #expect(offset == batch.count)
    }

    @Test(arguments: splitting)
    func aSplitStepHasTheWholeBatchGradient(_ name: String) throws {
        let head = try head(name)
        let batch = Tiny.batch(lengths: Self.lengths)
        let set = head.parameters
        let (tape, l) = loss(head, batch)
        set.zeroGradients()
        tape.backward(from: l)
        let whole = set.gradients, wholeLoss = l.value.scalar

        let sharded = ShardedStep(head: head, rng: SeededGenerator(seed: 9))
        #expect(sharded.parts == 2)
        set.zeroGradients()
        let splitLoss = step(sharded, batch, concurrent: true)
        #expect(abs(splitLoss - wholeLoss) <= 1e-5 * abs(wholeLoss), "\(name): loss \(splitLoss) against \(wholeLoss)")
        // Relative to each parameter's largest gradient, or to a hundredth of the set's largest for
        // parameters whose gradient is zero in exact arithmetic (a key bias under softmax), where
        // both sides hold only rounding.
        var worst: Float = 0
        let largest = whole.map(abs).max() ?? 0
        #expect(largest > 1e-3)
        for entry in set.entries {
            let range = entry.offset..<(entry.offset + entry.count)
            let scale = max(whole[range].map(abs).max() ?? 0, 1e-2 * largest)
            for i in range {
                let error = abs(set.gradients[i] - whole[i]) / scale
                worst = max(worst, error)
                #expect(error <= 1e-5, "\(name): \(entry.name)[\(i - entry.offset)] split \(set.gradients[i]), whole \(whole[i])")
            }
        }
        print("\(name): split step against whole batch, worst gradient error \(worst) of each parameter's largest")
    }

    @Test(arguments: splitting)
    func partsOnThreadsEqualPartsInTurnWithDropoutLive(_ name: String) throws {
        // Same parts, same streams: running them at once must not change a bit (no shared state).
        func run(concurrent: Bool) throws -> ([Float], [Float]) {
            let head = try Tiny.head(name, Tiny.settings[name]!)
            let sharded = ShardedStep(head: head, rng: SeededGenerator(seed: 4))
            var losses: [Float] = []
            var optimizer = AdamW(weightDecay: 0)
            for seed in 0..<3 {
                losses.append(step(sharded, Tiny.batch(seed: UInt64(seed), lengths: Self.lengths), concurrent: concurrent))
                optimizer.step(head.parameters, learningRate: 1e-2)
            }
            return (losses, head.parameters.values)
        }
        let (inTurn, atOnce) = (try run(concurrent: false), try run(concurrent: true))
        #expect(inTurn.0 == atOnce.0 && inTurn.1 == atOnce.1)
    }

    /// After a full batch (as the last, one-example batch of an epoch comes after others): the
    /// empty first part must not bring back the previous step's gradient.
    @Test func aBatchOfOneLeavesTheFirstPartEmpty() throws {
        let head = try head("losa")
        let batch = Tiny.batch(lengths: [4])
        let (tape, l) = loss(head, batch)
        head.parameters.zeroGradients()
        tape.backward(from: l)
        let whole = head.parameters.gradients
        let sharded = ShardedStep(head: head, rng: SeededGenerator(seed: 1))
        _ = step(sharded, Tiny.batch(lengths: Self.lengths), concurrent: false)
        let split = step(sharded, batch, concurrent: false)
        #expect(abs(split - l.value.scalar) <= 1e-6 * abs(l.value.scalar))
        #expect(zip(head.parameters.gradients, whole).allSatisfy { abs($0 - $1) <= 1e-6 * max(abs($1), 1e-3) })
    }
}
