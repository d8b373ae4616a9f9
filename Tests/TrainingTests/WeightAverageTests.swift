// The weight average (`TrainingOptions.emaDecay`): it follows the weights of every step with the
// warmed-up decay, it is what is evaluated and kept, and it changes nothing else. (Heads with
// averages in one pass equal each alone: TrainerTests.severalHeadsInOnePassEqualEachAlone.)
import ActivationStore
import Autodiff
import Foundation
import Testing
import Training

@Suite struct WeightAverageTests {
    func options(ema: Float?) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = 1
        o.batchSize = 16
        o.seed = 5
        o.patience = 0
        o.emaDecay = ema
        return o
    }

    /// The weights whenever the trainer polls for a stop request: after each step.
    final class Steps: @unchecked Sendable {
        let parameters: ParameterSet
        var weights: [[Float]] = []
        init(_ parameters: ParameterSet) { self.parameters = parameters }
    }

    @Test func theKeptWeightsAreTheAverageOfEveryStepsWeights() throws {
        let path = SyntheticCache.temporaryPath("ema")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        let decay: Float = 0.8
        // A constant rate, so that the last steps still move the weights away from their average.
        var o = options(ema: decay)
        (o.warmup, o.finalLearningRate, o.learningRate) = (0, 1, 0.01)
        let trainer = try Trainer(cache: cache, requests: [HeadRequest(head: "mlp", settings: ["hidden": "12"])], options: o)
        let initial = trainer.heads[0].parameters.values
        let steps = Steps(trainer.heads[0].parameters)
        trainer.shouldStop = {
            steps.weights.append(steps.parameters.values)
            return false
        }
        let result = try trainer.run()[0]
        // 120 examples in batches of 16 make 8 steps; evaluation polls too, on 3 batches of val
        // after the epoch and 3 each of val and test at the end.
        #expect(steps.weights.count == 8 + 9)
        steps.weights.removeLast(9)
        // The average in Double: a ← d·a + (1 − d)·w after step n, with d = min(decay, (1 + n) / (10 + n)).
        var average = initial.map(Double.init)
        for (n, w) in steps.weights.enumerated() {
            let d = min(Double(decay), Double(1 + n) / Double(10 + n))
            for i in average.indices { average[i] = d * average[i] + (1 - d) * Double(w[i]) }
        }
        let kept = trainer.heads[0].parameters.values
        let worst = zip(kept, average).map { abs(Double($0) - $1) }.max()!
        #expect(worst < 1e-6, "largest difference from the average: \(worst)")
        // It is the average, not the last step's weights.
        let fromLast = zip(kept, steps.weights.last!).map { abs($0 - $1) }.max()!
        #expect(fromLast > 1e-4, "the kept weights are within \(fromLast) of the last step's")
        // The epoch's validation accuracy was measured on the same weights that were kept.
        #expect(result.val!.accuracy == result.history[0].valAccuracy)
    }

    @Test func aZeroDecayIsTrainingWithoutAnAverage() throws {
        let path = SyntheticCache.temporaryPath("ema0")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        var o = options(ema: nil)
        o.epochs = 3
        let plain = try Trainer(cache: cache, requests: [HeadRequest(head: "mlp")], options: o)
        let plainResult = try plain.run()[0]
        o.emaDecay = 0
        let averaged = try Trainer(cache: cache, requests: [HeadRequest(head: "mlp")], options: o)
        let averagedResult = try averaged.run()[0]
        #expect(plain.heads[0].parameters.values == averaged.heads[0].parameters.values)
        #expect(plainResult.history.map(\.valAccuracy) == averagedResult.history.map(\.valAccuracy))
        #expect(plainResult.test == averagedResult.test)
    }
}
