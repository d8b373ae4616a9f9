// Differentiable element-wise arithmetic: broadcast add/subtract/multiply and scalar scaling.
import TensorCore

extension Variable {
    /// a ∘ b with NumPy broadcasting; gradients are summed over broadcast dimensions.
    public func binary(_ operation: BinaryOperation, _ other: Variable) -> Variable {
        let a = value, b = other.value
        guard Broadcast(a.shape, b.shape) != nil else {
            preconditionFailure("\(operation): shapes \(a.shape) and \(other.shape) do not broadcast")
        }
        let out = Tensor.binary(operation, a, b)
        let (lhs, rhs) = (handle, other.handle)
        // A sum's or difference's backward needs only the shapes: its inputs' values are not
        // kept alive for it.
        let (aShape, bShape) = (a.shape, b.shape)
        let (savedA, savedB): (Tensor?, Tensor?) = operation == .multiply ? (a, b) : (nil, nil)
        return tape.record(out, inputs: [lhs, rhs]) { gradOut, tape in
            guard gradOut.count > 0 else { return }
            // Each input's gradient over the output's shape through the forward kernel (whose
            // contiguous and scalar-per-row cases vectorise), then summed over the dimensions the
            // input was broadcast along; an input of the output's shape takes it as it is.
            if tape.needsGradient(lhs) {
                let full = operation == .multiply ? Tensor.binary(.multiply, gradOut, savedB!) : gradOut
                tape.accumulate(lhs, full.shape == aShape ? full : full.summed(to: aShape))
            }
            if tape.needsGradient(rhs) {
                let full = switch operation {
                case .add: gradOut
                case .subtract: gradOut.scaled(by: -1)
                case .multiply: Tensor.binary(.multiply, gradOut, savedA!)
                }
                tape.accumulate(rhs, full.shape == bShape ? full : full.summed(to: bShape))
            }
        }
    }

    public static func + (a: Variable, b: Variable) -> Variable { a.binary(.add, b) }
    public static func - (a: Variable, b: Variable) -> Variable { a.binary(.subtract, b) }
    public static func * (a: Variable, b: Variable) -> Variable { a.binary(.multiply, b) }

    /// w·self + (1 − w)·other for a weight w of one element (Ladder Side-Tuning's gate), in one
    /// pass: as a broadcast multiply, a subtraction, another multiply and an add it was four
    /// passes over the side state per layer. Gradients: w·g to self, (1 − w)·g to other, and
    /// Σ g ⊙ (self − other) to w.
    public func mixed(with other: Variable, weight: Variable) -> Variable {
        let a = value, b = other.value
        precondition(a.shape == b.shape && weight.value.count == 1,
                     "mixed: \(a.shape) with \(b.shape) by a weight of shape \(weight.shape)")
        let w = weight.value.scalars[0]
        let out = Tensor(uninitialized: a.shape) { o in
            guard let po = o.baseAddress else { return }
            withBaseAddresses([a, b]) { p in
                let (pa, pb) = (p[0], p[1])
                for i in 0..<o.count { po[i] = w * pa[i] + (1 - w) * pb[i] }
            }
        }
        let (lhs, rhs, weightHandle) = (handle, other.handle, weight.handle)
        return tape.record(out, inputs: [lhs, rhs, weightHandle]) { g, tape in
            guard g.count > 0 else { return }
            g.withUnsafeBufferPointer { pg in
                let dy = pg.baseAddress!
                tape.accumulate(lhs) { dx in for i in 0..<dx.count { dx[i] += w * dy[i] } }
                tape.accumulate(rhs) { dx in for i in 0..<dx.count { dx[i] += (1 - w) * dy[i] } }
                guard tape.needsGradient(weightHandle) else { return }
                let sum = withBaseAddresses([a, b]) { p in
                    let (pa, pb) = (p[0], p[1])
                    var total: Float = 0
                    for i in 0..<g.count { total += dy[i] * (pa[i] - pb[i]) }
                    return total
                }
                tape.accumulate(weightHandle) { dw in dw[0] += sum }
            }
        }
    }

    /// Every element times a constant.
    public func scaled(by factor: Float) -> Variable {
        let input = handle
        return tape.record(value.scaled(by: factor), inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { src in
                tape.accumulate(input) { dst in
                    for i in 0..<dst.count { dst[i] += factor * src[i] }
                }
            }
        }
    }

    public static func * (a: Variable, factor: Float) -> Variable { a.scaled(by: factor) }
    public static prefix func - (a: Variable) -> Variable { a.scaled(by: -1) }

    /// The same elements with another shape of equal count.
    public func reshaped(_ shape: [Int]) -> Variable {
        let input = handle
        return tape.record(value.reshaped(shape), inputs: [input]) { g, tape in
            tape.accumulate(input, g)
        }
    }
}
