// The one finite-difference harness every op's gradient test goes through. The scalar checked is
// L = Σ f(inputs) ⊙ R with a fixed random R, so every output element and its position matter;
// L is accumulated in Double and compared with central differences per input element.
import Autodiff
import Testing
import TensorCore

struct GradientCheckResult: CustomStringConvertible {
    var op: String
    var checked = 0
    var worstError: Double = 0
    var worst = ""

    var description: String {
        "\(op): checked \(checked) elements, worst |analytic − numeric| / (atol + rtol·|numeric|) = \(worstError) at \(worst)"
    }
}

/// Compares the tape's gradients of `build` with central differences for every input that
/// `differentiable` marks (default: all).
///
/// - eps: the step (inputs are Float32, so not much below 1e-3).
/// - atol, rtol: an element passes when |analytic − numeric| ≤ atol + rtol·|numeric|.
/// - maxElements: elements checked per input, spread evenly over it.
/// - Returns the result; the test fails when any element fails.
@discardableResult
func checkGradients(
    _ op: String, inputs: [Tensor], differentiable: [Bool]? = nil,
    eps: Float = 1e-2, atol: Double = 1e-3, rtol: Double = 1e-2, maxElements: Int = 200,
    expectFailure: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ build: (Tape, [Variable]) -> Variable
) -> GradientCheckResult {
    let wants = differentiable ?? Array(repeating: true, count: inputs.count)
    var rng = SeededGenerator(seed: 0x5EED)

    func evaluate(_ values: [Tensor], projection: Tensor?) -> (loss: Double, tape: Tape, leaves: [Variable], out: Tensor) {
        // A fresh tape with the same seed each time, so stochastic ops (dropout) repeat their mask.
        let tape = Tape(training: true, rng: SeededGenerator(seed: 42))
        let leaves = zip(values, wants).map { $1 ? tape.leaf($0) : tape.constant($0) }
        let out = build(tape, leaves)
        var loss = 0.0
        if let projection {
            for (o, r) in zip(out.value.scalars, projection.scalars) { loss += Double(o) * Double(r) }
        }
        return (loss, tape, leaves, out.value)
    }

    let shapeOut = evaluate(inputs, projection: nil).out
    let projection = Tensor.randomNormal(shapeOut.shape, using: &rng)

    // Analytic gradients: L = sum(out * R) recorded on the tape.
    let tape = Tape(training: true, rng: SeededGenerator(seed: 42))
    let leaves = zip(inputs, wants).map { $1 ? tape.leaf($0) : tape.constant($0) }
    let out = build(tape, leaves)
    // L = Σ out ⊙ R as a hand-written node, so the harness relies on no op it checks.
    var dot = 0.0
    for (o, r) in zip(out.value.scalars, projection.scalars) { dot += Double(o) * Double(r) }
    let outNode = out.handle
    let loss = tape.record(Tensor(scalar: Float(dot)), inputs: [outNode]) { g, tape in
        tape.accumulate(outNode) { dst in
            for i in 0..<dst.count { dst[i] += g.scalar * projection.scalars[i] }
        }
    }
    tape.backward(from: loss)

    var result = GradientCheckResult(op: op)
    var failures = 0
    for (i, input) in inputs.enumerated() where wants[i] {
        let analytic = leaves[i].gradient ?? Tensor(zeros: input.shape)
        let stride = max(1, input.count / maxElements)
        for j in Swift.stride(from: 0, to: input.count, by: stride) {
            var plus = inputs, minus = inputs
            plus[i].scalars[j] += eps
            minus[i].scalars[j] -= eps
            let numeric = (evaluate(plus, projection: projection).loss - evaluate(minus, projection: projection).loss)
                / Double(2 * eps)
            let a = Double(analytic.scalars[j])
            let error = abs(a - numeric) / (atol + rtol * abs(numeric))
            result.checked += 1
            if error > 1 { failures += 1 }
            if error > result.worstError {
                result.worstError = error
                result.worst = "input \(i) element \(j): analytic \(a), numeric \(numeric)"
            }
        }
    }
    print(result)
    if expectFailure {
        #expect(failures > 0, "\(op): a wrong gradient passed the check", sourceLocation: sourceLocation)
    } else {
        #expect(result.checked > 0, "\(op): nothing checked", sourceLocation: sourceLocation)
        #expect(failures == 0, "\(result)", sourceLocation: sourceLocation)
    }
    return result
}

/// A random input tensor for gradient checks.
func randomInput(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    return Tensor.randomNormal(shape, std: scale, using: &rng)
}
