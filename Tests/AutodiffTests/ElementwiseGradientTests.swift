import Autodiff
import Testing
import TensorCore

@Suite struct ElementwiseGradientTests {
    @Test(arguments: [[3, 4], [4], [1, 4], [3, 1], [2, 3, 4], [2, 1, 4], [2, 1, 1], [1]])
    func broadcastArithmetic(otherShape: [Int]) {
        let a = randomInput([2, 3, 4].count >= otherShape.count ? [2, 3, 4] : otherShape, seed: 1)
        let b = randomInput(otherShape, seed: 2)
        checkGradients("add \(otherShape)", inputs: [a, b]) { _, v in v[0] + v[1] }
        checkGradients("subtract \(otherShape)", inputs: [a, b]) { _, v in v[1] - v[0] }
        checkGradients("multiply \(otherShape)", inputs: [a, b]) { _, v in v[0] * v[1] }
    }

    @Test func bothInputsBroadcast() {
        // [2, 1, 4] with [3, 1] → [2, 3, 4]: each gradient is summed over its own broadcast dimensions.
        let a = randomInput([2, 1, 4], seed: 8), b = randomInput([3, 1], seed: 9)
        checkGradients("add both", inputs: [a, b]) { _, v in v[0] + v[1] }
        checkGradients("subtract both", inputs: [a, b]) { _, v in v[0] - v[1] }
        checkGradients("multiply both", inputs: [a, b]) { _, v in v[0] * v[1] }
        checkGradients("square", inputs: [b]) { _, v in v[0] * v[0] + v[0] }
    }

    @Test func scaleNegateReshape() {
        checkGradients("scaled", inputs: [randomInput([3, 4], seed: 3)]) { _, v in (-v[0] * 2.5).reshaped([4, 3]) }
    }

    @Test(arguments: Activation.allCases)
    func activation(_ f: Activation) {
        // ReLU is not differentiable at 0: keep inputs away from it (|x| ≥ 0.1).
        var x = randomInput([4, 5], seed: 4, scale: 2)
        for i in 0..<x.count where abs(x.scalars[i]) < 0.1 { x.scalars[i] = 0.3 }
        checkGradients("\(f)", inputs: [x]) { _, v in v[0].applying(f) }
    }

    @Test func layerNorm() {
        checkGradients("layerNorm affine", inputs: [randomInput([3, 2, 8], seed: 5), randomInput([8], seed: 6), randomInput([8], seed: 7)]) { _, v in
            v[0].layerNorm(gain: v[1], bias: v[2])
        }
        checkGradients("layerNorm plain", inputs: [randomInput([4, 6], seed: 8)]) { _, v in v[0].layerNorm(eps: 1e-12) }
        // 40 columns: two 16-lane steps and a tail in the kernel's forward and backward.
        checkGradients("layerNorm affine, 40 wide", inputs: [randomInput([3, 40], seed: 11), randomInput([40], seed: 12), randomInput([40], seed: 13)]) { _, v in
            v[0].layerNorm(gain: v[1], bias: v[2])
        }
    }

    @Test func layerNormLinear() {
        checkGradients("layerNormLinear", inputs: [randomInput([5, 40], seed: 21), randomInput([40], seed: 22), randomInput([40], seed: 23),
                                                   randomInput([6, 40], seed: 24), randomInput([6], seed: 25)]) { _, v in
            v[0].layerNormLinear(gain: v[1], bias: v[2], weight: v[3], linearBias: v[4])
        }
    }

    /// The folded norm recomputes its output in the backward: output and every gradient must be
    /// the bits of a layer norm and a linear recorded one after the other.
    @Test func layerNormLinearGivesTheChainsBits() {
        let inputs = [randomInput([9, 37], seed: 31), randomInput([37], seed: 32), randomInput([37], seed: 33),
                      randomInput([5, 37], seed: 34), randomInput([5], seed: 35)]
        let projection = randomInput([9, 5], seed: 36)
        func run(folded: Bool) -> [Tensor] {
            let tape = Tape()
            let v = inputs.map { tape.leaf($0) }
            let out = folded ? v[0].layerNormLinear(gain: v[1], bias: v[2], weight: v[3], linearBias: v[4])
                : v[0].layerNorm(gain: v[1], bias: v[2]).linear(v[3], v[4])
            tape.backward(from: (out * tape.constant(projection)).sum())
            return [out.value] + v.map { $0.gradient ?? Tensor(zeros: $0.shape) }
        }
        let chain = run(folded: false), folded = run(folded: true)
        #expect(folded == chain)
        #expect(folded.allSatisfy { $0.scalars.contains { $0 != 0 } })
    }

    @Test func softmaxAndLogSoftmax() {
        checkGradients("softmax", inputs: [randomInput([3, 7], seed: 9, scale: 2)]) { _, v in v[0].softmax() }
        checkGradients("logSoftmax", inputs: [randomInput([3, 7], seed: 10, scale: 2)]) { _, v in v[0].logSoftmax() }
    }

    @Test(arguments: [Float(0), 0.1, 0.3])
    func crossEntropy(smoothing: Float) {
        checkGradients("crossEntropy ε=\(smoothing)", inputs: [randomInput([5, 4], seed: 11, scale: 2)]) { _, v in
            v[0].crossEntropy(labels: [0, 3, 1, 1, 2], smoothing: smoothing)
        }
    }

    @Test func l1Normalized() {
        // Away from 0, where |x| has no derivative.
        var x = randomInput([3, 6], seed: 12)
        for i in 0..<x.count where abs(x.scalars[i]) < 0.1 { x.scalars[i] = -0.4 }
        checkGradients("l1Normalized", inputs: [x]) { _, v in v[0].l1Normalized() }
    }

    @Test func reductions() {
        let x = randomInput([2, 3, 4], seed: 13)
        checkGradients("mean", inputs: [x]) { _, v in v[0].mean() }
        for axis in 0..<3 {
            checkGradients("sum axis \(axis)", inputs: [x]) { _, v in v[0].sum(axis: axis) }
            checkGradients("mean axis \(axis)", inputs: [x]) { _, v in v[0].mean(axis: axis) }
        }
    }

    @Test func dropoutGradientAndStatistics() {
        checkGradients("dropout", inputs: [randomInput([8, 8], seed: 14)]) { _, v in v[0].dropout(0.3) }
        let tape = Tape(training: true, rng: SeededGenerator(seed: 1))
        let ones = tape.constant(Tensor(repeating: 1, shape: [10_000]))
        let dropped = ones.dropout(0.3).value.scalars
        let kept = dropped.filter { $0 != 0 }
        #expect(abs(Float(kept.count) / 10_000 - 0.7) < 0.02, "kept fraction \(kept.count)")
        #expect(kept.allSatisfy { abs($0 - 1 / 0.7) < 1e-6 })
        let evaluation = Tape(training: false)
        let x = randomInput([5], seed: 15)
        #expect(evaluation.constant(x).dropout(0.5).value == x)
    }

    /// LST's gated mix: gradients against finite differences, and the value against the same
    /// mix as broadcast ops.
    @Test func mixedByAOneElementWeight() {
        let a = randomInput([3, 4], seed: 16), b = randomInput([3, 4], seed: 17), w = Tensor(shape: [1], scalars: [0.3])
        checkGradients("mixed", inputs: [a, b, w]) { _, v in v[0].mixed(with: v[1], weight: v[2]) }
        let tape = Tape()
        let (x, y, weight) = (tape.constant(a), tape.constant(b), tape.constant(w))
        let separate = weight * x + (tape.constant(Tensor(repeating: 1, shape: [1])) - weight) * y
        #expect(x.mixed(with: y, weight: weight).value == separate.value)
    }
}
