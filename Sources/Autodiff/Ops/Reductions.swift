// Differentiable reductions (mean of everything; sum and mean along one axis) and dropout.
import TensorCore

extension Variable {
    /// The mean of every element, as a one-element tensor.
    public func mean() -> Variable {
        sum().scaled(by: 1 / Float(max(value.count, 1)))
    }

    /// Sum along `axis`, which is removed from the shape.
    public func sum(axis: Int) -> Variable {
        let x = value
        let axis = axis < 0 ? x.rank + axis : axis
        precondition(axis >= 0 && axis < x.rank, "sum(axis: \(axis)) of shape \(x.shape)")
        let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
        var outShape = x.shape
        outShape.remove(at: axis)
        var y = Tensor(zeros: outShape)
        y.withUnsafeMutableBufferPointer { py in
            x.withUnsafeBufferPointer { px in
                for o in 0..<outer {
                    for k in 0..<n {
                        let src = px.baseAddress! + (o * n + k) * inner, dst = py.baseAddress! + o * inner
                        for i in 0..<inner { dst[i] += src[i] }
                    }
                }
            }
        }
        let input = handle
        return tape.record(y, inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { pg in
                tape.accumulate(input) { dx in
                    for o in 0..<outer {
                        for k in 0..<n {
                            for i in 0..<inner { dx[(o * n + k) * inner + i] += pg[o * inner + i] }
                        }
                    }
                }
            }
        }
    }

    /// Mean along `axis`, which is removed from the shape.
    public func mean(axis: Int) -> Variable {
        let a = axis < 0 ? value.rank + axis : axis
        return sum(axis: a).scaled(by: 1 / Float(max(value.shape[a], 1)))
    }

    /// Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1 − p).
    /// The identity when the tape is not training or p is 0. The mask comes from `tape.rng`.
    public func dropout(_ p: Float) -> Variable {
        precondition(p >= 0 && p < 1, "dropout probability \(p) is outside [0, 1)")
        // (Empty values return early too: see Tensor(uninitialized:) on empty arrays.)
        guard tape.isTraining, p > 0, value.count > 0 else { return self }
        let keep = 1 - p, scale = 1 / (1 - p)
        // The generator is drawn from a local copy: through the tape's property every draw paid
        // for an exclusivity check (4% of an LST step).
        var rng = tape.rng
        let mask = [Float](unsafeUninitializedCapacity: value.count) { m, count in
            rng.fillBernoulli(m, probability: keep, value: scale)
            count = m.count
        }
        tape.rng = rng
        var y = value
        y.withUnsafeMutableBufferPointer { py in
            for i in 0..<py.count { py[i] *= mask[i] }
        }
        let input = handle
        return tape.record(y, inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { pg in
                tape.accumulate(input) { dx in
                    for i in 0..<dx.count { dx[i] += pg[i] * mask[i] }
                }
            }
        }
    }
}
