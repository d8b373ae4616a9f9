// What a sweep needs from the trainer: a head whose loss stops being finite is marked failed while
// the heads beside it train on, per-head learning rates, and a stop request that ends a run after
// the current batch.
import ActivationStore
import Foundation
import SideNetworks
import Testing
import Training

@Suite struct TrainerFailureTests {
    func options() -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = 3
        o.batchSize = 16
        o.patience = 0
        o.optimizer = .sgd
        o.clipNorm = 0
        return o
    }

    @Test func aDivergingHeadFailsAloneAndItsPeersMatchTrainingAlone() throws {
        let path = SyntheticCache.temporaryPath("diverge")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        let healthy = HeadRequest(head: "linear", learningRate: 0.05)
        let together = try Trainer(cache: cache, requests: [HeadRequest(head: "linear", learningRate: 1e30), healthy], options: options()).run()
        #expect(together[0].failure?.hasPrefix("diverged: train loss") == true, "\(together[0].failure ?? "no failure")")
        #expect(together[0].val == nil && together[0].test == nil)
        #expect(together[1].failure == nil && together[1].history.count == 3)
        let alone = try Trainer(cache: cache, requests: [healthy], options: options()).run()[0]
        #expect(together[1].test == alone.test && together[1].learningRate == 0.05)
        #expect(alone.history.map(\.trainLoss) == together[1].history.map(\.trainLoss))
    }

    @Test func parametersThatOverflowAfterTheLastStepAreCaughtByTheValidationLoss() throws {
        // Two steps: the second step's loss is still finite (huge logits), its update is not.
        let path = SyntheticCache.temporaryPath("overflow")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        var o = options()
        o.epochs = 1
        o.batchSize = 60
        let results = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear", learningRate: 1e30)], options: o).run()
        #expect(results[0].failure?.hasPrefix("diverged: ") == true, "\(results[0].failure ?? "no failure")")
        #expect(results[0].val == nil && results[0].test == nil)
    }

    /// Without a val split there is no val loss to show the overflow: the parameters are checked.
    @Test func parametersThatOverflowAreCaughtWithoutAValidationSplit() throws {
        let path = SyntheticCache.temporaryPath("overflow-no-val")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path, counts: ["train": 120])
        var o = options()
        o.epochs = 1
        o.batchSize = 60
        let results = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear", learningRate: 1e30)], options: o).run()
        #expect(results[0].failure == "diverged: the parameters are not finite after epoch 1", "\(results[0].failure ?? "no failure")")
    }

    @Test func aStopRequestEndsTheRunAfterTheCurrentBatch() throws {
        let path = SyntheticCache.temporaryPath("stop")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let trainer = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear")], options: options())
        var batches = 0
        trainer.shouldStop = { true }
        #expect(throws: TrainingCancelled.self) { _ = try trainer.run { if case .batch = $0 { batches += 1 } } }
        #expect(batches == 0)
    }
}
