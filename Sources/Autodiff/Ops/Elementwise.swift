// Differentiable element-wise arithmetic: broadcast add/subtract/multiply and scalar scaling.
import TensorCore

extension Variable {
    /// a ∘ b with NumPy broadcasting; gradients are summed over broadcast dimensions.
    public func binary(_ operation: BinaryOperation, _ other: Variable) -> Variable {
        let a = value, b = other.value
        guard let geometry = Broadcast(a.shape, b.shape) else {
            preconditionFailure("\(operation): shapes \(a.shape) and \(other.shape) do not broadcast")
        }
        let out = Tensor.binary(operation, a, b)
        let (lhs, rhs) = (self, other)
        return tape.record(out, inputs: [lhs, rhs]) { gradOut, tape in
            guard gradOut.count > 0 else { return }
            var gradA = tape.needsGradient(lhs) ? Tensor(zeros: a.shape) : nil
            var gradB = tape.needsGradient(rhs) ? Tensor(zeros: b.shape) : nil
            gradOut.withUnsafeBufferPointer { g in
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        withOptionalMutablePointer(&gradA) { da in
                            withOptionalMutablePointer(&gradB) { db in
                                BinaryKernel.backward(operation, gradA: da, gradB: db, gradOut: g.baseAddress!,
                                                      a: pa.baseAddress!, b: pb.baseAddress!, broadcast: geometry)
                            }
                        }
                    }
                }
            }
            if let gradA { tape.accumulate(lhs, gradA) }
            if let gradB { tape.accumulate(rhs, gradB) }
        }
    }

    public static func + (a: Variable, b: Variable) -> Variable { a.binary(.add, b) }
    public static func - (a: Variable, b: Variable) -> Variable { a.binary(.subtract, b) }
    public static func * (a: Variable, b: Variable) -> Variable { a.binary(.multiply, b) }

    /// Every element times a constant.
    public func scaled(by factor: Float) -> Variable {
        let input = self
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
        let input = self
        return tape.record(value.reshaped(shape), inputs: [input]) { g, tape in
            tape.accumulate(input, g)
        }
    }
}
