import Autodiff
import Testing
import TensorCore

@Suite struct MatMulGradientTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matmulBatched(transposeA: Bool, transposeB: Bool) {
        let a = randomInput(transposeA ? [2, 4, 3] : [2, 3, 4], seed: 1)
        let b = randomInput(transposeB ? [2, 5, 4] : [2, 4, 5], seed: 2)
        checkGradients("matmul ta=\(transposeA) tb=\(transposeB)", inputs: [a, b]) { _, v in
            v[0].matmul(v[1], transposeSelf: transposeA, transposeOther: transposeB)
        }
    }

    @Test(arguments: [false, true])
    func matmulSharedRightOperand(transposeB: Bool) {
        let a = randomInput([3, 2, 4], seed: 3)
        let b = randomInput(transposeB ? [5, 4] : [4, 5], seed: 4)
        checkGradients("matmul shared b tb=\(transposeB)", inputs: [a, b]) { _, v in
            v[0].matmul(v[1], transposeOther: transposeB)
        }
    }

    @Test func linearWithBias() {
        checkGradients("linear", inputs: [randomInput([2, 3, 6], seed: 5), randomInput([4, 6], seed: 6), randomInput([4], seed: 7)]) { _, v in
            v[0].linear(v[1], v[2])
        }
    }

    @Test func linearWithoutBiasConstantInput() {
        checkGradients("linear no bias", inputs: [randomInput([5, 6], seed: 8), randomInput([3, 6], seed: 9)],
                       differentiable: [false, true]) { _, v in
            v[0].linear(v[1])
        }
    }

    @Test func matmulForwardMatchesNaiveProduct() {
        let a = randomInput([3, 4], seed: 10), b = randomInput([4, 2], seed: 11)
        let c = Tensor.matmul(a, b)
        for i in 0..<3 {
            for j in 0..<2 {
                var s: Float = 0
                for k in 0..<4 { s += a[i, k] * b[k, j] }
                #expect(abs(c[i, j] - s) < 1e-5)
            }
        }
    }

    /// The harness must reject a gradient that is 5% off, or no passing check means anything.
    @Test func harnessRejectsWrongGradient() {
        checkGradients("deliberately wrong", inputs: [randomInput([3, 4], seed: 12)], expectFailure: true) { tape, v in
            let x = v[0].handle
            return tape.record(v[0].value, inputs: [x]) { g, tape in
                var wrong = g
                for i in 0..<wrong.count { wrong.scalars[i] *= 1.05 }
                tape.accumulate(x, wrong)
            }
        }
    }
}
