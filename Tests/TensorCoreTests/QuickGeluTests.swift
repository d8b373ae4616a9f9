// CLIP's quick GELU, x·σ(1.702·x), forward and backward against the same formulas in Double, on
// inputs long enough to go through both the 16-lane loop and the scalar tail, from far negative
// (where σ underflows) to far positive.
import Testing
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

@Suite struct QuickGeluTests {
    /// 37 inputs: two 16-lane blocks and a tail of 5, spread over [−60, 60] with more near 0.
    static let inputs: [Float] = (0..<37).map { i in
        let t = Float(i - 18) / 18
        return 60 * t * t * t + 2 * t
    }

    static func reference(_ x: Float) -> (value: Double, derivative: Double) {
        let v = Double(x), s = 1 / (1 + exp(-1.702 * v))
        return (v * s, s + 1.702 * v * s * (1 - s))
    }

    @Test func forwardMatchesDouble() {
        let x = Self.inputs
        var out = [Float](repeating: .nan, count: x.count)
        ActivationKernel.forward(.quickGelu, out: &out, x: x, count: x.count)
        for (i, value) in x.enumerated() {
            let expected = Self.reference(value).value
            // Relative to max(|y|, 1): near 0 the absolute error matters, far out the relative one.
            let error = abs(Double(out[i]) - expected) / max(abs(expected), 1)
            #expect(error <= 5e-7, "quick_gelu(\(value)) = \(out[i]), expected \(expected)")
        }
        // Hand-checked points: quick_gelu(1) = 1/(1 + e^−1.702), quick_gelu(−1) = quick_gelu(1) − 1.
        #expect(abs(Tensor(shape: [2], scalars: [1, -1]).applying(.quickGelu).scalars[0] - 0.845_795_8) <= 1e-6)
        #expect(abs(Tensor(shape: [2], scalars: [1, -1]).applying(.quickGelu).scalars[1] + 0.154_204_2) <= 1e-6)
    }

    @Test func forwardInPlace() {
        var x = Self.inputs
        let separate = Tensor(shape: [x.count], scalars: x).applying(.quickGelu).scalars
        x.withUnsafeMutableBufferPointer { ActivationKernel.forward(.quickGelu, out: $0.baseAddress!, x: $0.baseAddress!, count: $0.count) }
        #expect(x == separate)
    }

    @Test func backwardAddsTheDerivativeTimesTheIncomingGradient() {
        let x = Self.inputs
        let y = Tensor(shape: [x.count], scalars: x).applying(.quickGelu).scalars
        let gradOut = x.indices.map { Float($0 % 7) * 0.25 - 0.75 }
        let start = x.indices.map { Float($0) * 0.01 }
        var gradX = start
        ActivationKernel.backward(.quickGelu, gradX: &gradX, gradOut: gradOut, x: x, y: y, count: x.count)
        for i in x.indices {
            let expected = Double(start[i]) + Double(gradOut[i]) * Self.reference(x[i]).derivative
            #expect(abs(Double(gradX[i]) - expected) <= 1e-6, "x = \(x[i]): gradient \(gradX[i]), expected \(expected)")
        }
    }
}

@Suite struct ActivationBackwardTests {
    /// With `overwrite`, every activation's backward writes what it adds to zeros otherwise, over
    /// the 16-lane blocks and the tail, whatever gradX held before.
    @Test(arguments: Activation.allCases)
    func overwritingEqualsAddingToZeros(_ f: Activation) {
        let x = QuickGeluTests.inputs.map { $0 / 10 }
        let y = Tensor(shape: [x.count], scalars: x).applying(f).scalars
        let gradOut = x.indices.map { Float($0 % 5) * 0.5 - 1 }
        var added = [Float](repeating: 0, count: x.count), written = [Float](repeating: .nan, count: x.count)
        ActivationKernel.backward(f, gradX: &added, gradOut: gradOut, x: x, y: y, count: x.count)
        ActivationKernel.backward(f, gradX: &written, gradOut: gradOut, x: x, y: y, count: x.count, overwrite: true)
        #expect(written == added, "\(f)")
        #expect(added.contains { $0 != 0 }, "\(f)")
    }
}

@Suite struct GeluAndSlopeTests {
    /// One pass gives what GELU's forward gives and, as the slope, what its backward gives for an
    /// incoming gradient of one, over the 16-lane blocks and the tail; in place too.
    @Test func matchesTheForwardAndTheBackward() {
        let x = QuickGeluTests.inputs.map { $0 / 10 }
        precondition(x.count % 16 != 0, "the inputs should leave a tail")
        var forward = [Float](repeating: 0, count: x.count), derivative = [Float](repeating: 0, count: x.count)
        ActivationKernel.forward(.gelu, out: &forward, x: x, count: x.count)
        ActivationKernel.backward(.gelu, gradX: &derivative, gradOut: [Float](repeating: 1, count: x.count), x: x, y: forward, count: x.count)
        var out = [Float](repeating: .nan, count: x.count), slope = [Float](repeating: .nan, count: x.count)
        ActivationKernel.geluAndSlope(out: &out, slope: &slope, x: x, count: x.count)
        let worst = zip(slope, derivative).map { abs($0 - $1) }.max()!
        #expect(out == forward)
        #expect(worst <= 1e-6, "slope \(worst) from the backward's derivative")
        var inPlace = x, inPlaceOut = [Float](repeating: 0, count: x.count)
        inPlace.withUnsafeMutableBufferPointer { p in
            ActivationKernel.geluAndSlope(out: &inPlaceOut, slope: p.baseAddress!, x: p.baseAddress!, count: x.count)
        }
        #expect(inPlace == slope && inPlaceOut == out)
    }
}
