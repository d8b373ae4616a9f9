// Optimisers against torch.optim on the same problem and against their update written out, over
// one and several chunks; clipping; the schedule's three cases; and the determinism of a whole
// training run under one seed.
import Autodiff
import Foundation
import Testing
import TensorCore

@Suite struct OptimizerTests {
    /// L = ½ Σ c_i (p_i − t_i)² over w (decays) ++ b (does not): ten steps, reference numbers from
    /// torch.optim.AdamW(lr=0.05, weight_decay=0.1) / SGD(lr=0.05, momentum=0.9, weight_decay=0.1,
    /// nesterov=False|True) with a no-decay group for b, printed with 9 significant digits.
    func train(_ optimizer: inout some Optimizer) -> [Float] {
        let parameters = ParameterSet()
        parameters.add("w", Tensor(shape: [3], scalars: [0.5, -1, 2]))
        parameters.add("b", Tensor(shape: [2], scalars: [0.1, -0.2]), decays: false)
        let c: [Float] = [1, 2, 0.5, 3, 1.5], t: [Float] = [1, 0, -1, 0.5, 0.25]
        for _ in 0..<10 {
            parameters.zeroGradients()
            for i in 0..<5 { parameters.gradients[i] = c[i] * (parameters.values[i] - t[i]) }
            optimizer.step(parameters, learningRate: 0.05)
        }
        return parameters.values
    }

    func expectMatches(_ actual: [Float], _ expected: [Float], _ name: String) {
        let worst = zip(actual, expected).map { abs($0 - $1) / max(abs($1), 1e-3) }.max()!
        print("\(name): max relative difference from PyTorch \(worst)")
        #expect(worst < 2e-6, "\(name): \(actual) vs PyTorch \(expected)")
    }

    /// `tensor(_:)` shares one copy per parameter until the values change, however they change:
    /// in place, through a pointer (as the optimisers write), by `set`, or whole.
    @Test func parameterTensorsFollowEveryChangeOfTheValues() {
        let parameters = ParameterSet()
        let a = parameters.add("a", Tensor(shape: [2], scalars: [1, 2]))
        let b = parameters.add("b", Tensor(shape: [1], scalars: [3]))
        let before = parameters.tensor(a)
        parameters.values[0] = 5
        #expect(parameters.tensor(a).scalars == [5, 2] && before.scalars == [1, 2])
        parameters.values.withUnsafeMutableBufferPointer { $0[1] = 7 }
        #expect(parameters.tensor(a).scalars == [5, 7])
        parameters.set(b, Tensor(shape: [1], scalars: [-1]))
        #expect(parameters.tensor(b).scalars == [-1])
        parameters.gradients = [1, 1, 1]
        var adam = AdamW(weightDecay: 0)
        adam.step(parameters, learningRate: 0.5)
        #expect(parameters.tensor(a).scalars == Array(parameters.values[0..<2]) && parameters.tensor(a).scalars != [5, 7])
        parameters.values = [0, 0, 0]
        #expect(parameters.tensor(a).scalars == [0, 0] && parameters.tensor(b).scalars == [0])
    }

    /// A backward into a part's buffer writes every parameter's slice, whatever the buffer held:
    /// the sum over a parameter's uses, and zeros for one no gradient reaches.
    @Test func backwardIntoABufferOverwritesIt() {
        let parameters = ParameterSet()
        let a = parameters.add("a", Tensor(shape: [2], scalars: [1, 2]))
        let b = parameters.add("b", Tensor(shape: [2], scalars: [3, 4]))
        parameters.add("unused", Tensor(shape: [3], scalars: [5, 6, 7]))
        func loss(_ tape: Tape) -> Variable {
            let (x, y) = (tape.parameter(parameters, a), tape.parameter(parameters, b))
            return ((x * y).sum() + (x * x).sum() + tape.parameter(parameters, a).sum())
        }
        var buffer = [Float](repeating: 9, count: parameters.count)
        let tape = Tape()
        tape.backward(from: loss(tape), into: &buffer, of: parameters)
        // d/da = b + 2a + 1, d/db = a.
        #expect(buffer == [6, 9, 1, 2, 0, 0, 0])
        parameters.zeroGradients()
        let reference = Tape()
        reference.backward(from: loss(reference))
        #expect(parameters.gradients == buffer)
    }

    @Test func adamWMatchesPyTorch() {
        var adam = AdamW(weightDecay: 0.1)
        expectMatches(train(&adam), [0.931082904, -0.475922942, 1.41702092, 0.541350961, 0.253450662], "AdamW")
    }

    /// 21 scalars: two runs of eight lanes and a tail of five; 100,011: four chunks run on the
    /// cores, each ending in a tail. Against the update written out.
    @Test(arguments: [(13, 8), (70_000, 30_011)])
    func adamWLanesAndChunksEqualTheScalarUpdate(decaying: Int, fixed: Int) {
        let n = decaying + fixed
        let parameters = ParameterSet()
        var rng = SeededGenerator(seed: 2)
        parameters.add("w", Tensor.randomNormal([decaying], using: &rng))
        parameters.add("b", Tensor.randomNormal([fixed], using: &rng), decays: false)
        var adam = AdamW(weightDecay: 0.1)
        var p = parameters.values, m = [Float](repeating: 0, count: n), v = m
        let decays = (0..<n).map { $0 < decaying }
        for step in 1...3 {
            let g = (0..<n).map { _ in rng.nextNormal() }
            parameters.gradients = g
            adam.step(parameters, learningRate: 0.05)
            let (lr, b1, b2, decay): (Float, Float, Float, Float) = (0.05, 0.9, 0.999, 0.1)
            var (power1, power2) = (1.0, 1.0)
            for _ in 0..<step { power1 *= Double(b1); power2 *= Double(b2) }
            let stepSize = Float(Double(lr) / (1 - power1))
            let sqrtCorrection2 = Float((1 - power2).squareRoot())
            for i in 0..<n {
                p[i] *= 1 - lr * decay * (decays[i] ? 1 : 0)
                m[i] += (1 - b1) * (g[i] - m[i])
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                p[i] -= stepSize * m[i] / (v[i].squareRoot() / sqrtCorrection2 + 1e-8)
            }
            #expect(parameters.values == p, "step \(step)")
        }
    }

    @Test(arguments: [false, true])
    func sgdMatchesPyTorch(nesterov: Bool) {
        var sgd = SGD(momentum: 0.9, nesterov: nesterov, weightDecay: 0.1)
        let expected: [Float] = nesterov
            ? [1.03304195, 0.329871595, -0.762129128, 0.552110612, 0.420847058]
            : [1.06229353, 0.582356632, -0.688030779, 0.648316801, 0.49301973]
        expectMatches(train(&sgd), expected, "SGD nesterov=\(nesterov)")
    }

    @Test func clippingScalesToTheMaximumNorm() {
        let parameters = ParameterSet()
        parameters.add("w", Tensor(zeros: [2]))
        parameters.gradients = [3, 4]
        #expect(parameters.clipGradientNorm(1) == 5)
        #expect(abs(parameters.gradients[0] - 0.6) < 1e-5 && abs(parameters.gradients[1] - 0.8) < 1e-5)
        parameters.gradients = [0.3, 0.4]
        parameters.clipGradientNorm(1)
        #expect(parameters.gradients == [0.3, 0.4])
    }

    @Test func chunksCoverEachIndexOnceAndDependOnlyOnTheLength() {
        final class Seen: @unchecked Sendable {
            let lock = NSLock()
            var ranges: [Range<Int>] = []
        }
        for count in [0, 1, parameterChunk, parameterChunk + 1, 3 * parameterChunk + 77] {
            let seen = Seen()
            forEachChunk(of: count) { range in seen.lock.lock(); seen.ranges.append(range); seen.lock.unlock() }
            let expected = stride(from: 0, to: count, by: parameterChunk).map { $0..<min($0 + parameterChunk, count) }
            #expect(seen.ranges.sorted { $0.lowerBound < $1.lowerBound } == expected, "\(count) scalars")
        }
    }

    @Test func clippingOverManyChunksUsesTheWholeNorm() {
        let parameters = ParameterSet()
        var rng = SeededGenerator(seed: 5)
        parameters.add("w", Tensor.randomNormal([3 * parameterChunk + 77], using: &rng))
        let g = (0..<parameters.count).map { _ in rng.nextNormal() }
        parameters.gradients = g
        let norm = parameters.clipGradientNorm(1)
        let expected = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(Double(norm) - expected) < 1e-6 * expected)
        let scale = 1 / (norm + 1e-6)
        #expect(parameters.gradients == g.map { $0 * scale })
    }

    @Test func scheduleWarmsUpThenDecaysToTheFloor() {
        let s = LearningRateSchedule(peak: 1e-3, warmupSteps: 10, totalSteps: 110, floor: 1e-5)
        #expect(abs(s.rate(at: 0) - 1e-4) < 1e-9)
        #expect(abs(s.rate(at: 9) - 1e-3) < 1e-9)
        #expect(abs(s.rate(at: 10) - 1e-3) < 1e-9)
        #expect(abs(s.rate(at: 60) - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-8)
        #expect(s.rate(at: 110) == 1e-5 && s.rate(at: 500) == 1e-5)
        for step in 10..<110 { #expect(s.rate(at: step + 1) <= s.rate(at: step)) }
    }
}

@Suite struct DeterminismTests {
    /// A two-layer classifier trained with AdamW, dropout and shuffled mini-batches on a seeded
    /// toy problem; returns the loss curve.
    func lossCurve(seed: UInt64) -> [Float] {
        var data = SeededGenerator(seed: 1234)   // the data is fixed; only training randomness varies
        let inputs = Tensor.randomNormal([64, 8], using: &data)
        let labels = (0..<64).map { i in inputs[i, 0] + inputs[i, 1] > 0 ? 1 : 0 }
        var rng = SeededGenerator(seed: seed)
        let parameters = ParameterSet()
        let w1 = parameters.add("w1", Initializer.linearWeight(out: 16, in: 8, using: &rng))
        let b1 = parameters.add("b1", Initializer.linearBias(out: 16, in: 8, using: &rng), decays: false)
        let w2 = parameters.add("w2", Initializer.linearWeight(out: 2, in: 16, using: &rng))
        let b2 = parameters.add("b2", Tensor(zeros: [2]), decays: false)
        var optimizer = AdamW()
        let schedule = LearningRateSchedule(peak: 0.02, warmupSteps: 5, totalSteps: 80)
        let tape = Tape(training: true, rng: rng.derived(1))
        var order = Array(0..<64)
        var curve: [Float] = []
        for step in 0..<80 {
            if step % 4 == 0 { order.shuffle(using: &rng) }
            let batch = Array(order[(step % 4) * 16..<(step % 4 + 1) * 16])
            tape.reset()
            let x = tape.constant(Tensor(shape: [16, 8], scalars: batch.flatMap { Array(inputs.scalars[$0 * 8..<($0 + 1) * 8]) }))
            let hidden = x.linear(tape.parameter(parameters, w1), tape.parameter(parameters, b1)).gelu().dropout(0.1)
            let loss = hidden.linear(tape.parameter(parameters, w2), tape.parameter(parameters, b2))
                .crossEntropy(labels: batch.map { labels[$0] }, smoothing: 0.05)
            parameters.zeroGradients()
            tape.backward(from: loss)
            parameters.clipGradientNorm(1)
            optimizer.step(parameters, learningRate: schedule.rate(at: step))
            curve.append(loss.value.scalar)
        }
        return curve
    }

    @Test func oneSeedGivesOneLossCurve() {
        let first = lossCurve(seed: 7), second = lossCurve(seed: 7), other = lossCurve(seed: 8)
        #expect(first.map(\.bitPattern) == second.map(\.bitPattern), "same seed, different loss curves")
        #expect(first != other, "different seeds gave identical loss curves")
        let start = first.prefix(4).reduce(0, +) / 4, end = first.suffix(4).reduce(0, +) / 4
        print("loss: first steps \(start), last steps \(end)")
        #expect(end < 0.5 * start, "training did not reduce the loss: \(start) → \(end)")
    }
}
