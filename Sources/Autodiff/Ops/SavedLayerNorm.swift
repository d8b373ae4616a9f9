// What a layer norm's backward needs: its input, gain, bias and each row's mean and rstd. The
// norm op records its output beside it; an op that reads a norm's output can instead fold the norm
// in. A plain norm keeps its input for the backward and its reader keeps the output: two
// [rows, cols] tensors per norm for as long as the step lives. Folded, the reader keeps only this,
// recomputes the output in its own backward (the forward's last pass, from the kept statistics,
// so the same bits) and passes the output's gradient back here.
import TensorCore

public struct SavedLayerNorm {
    let input: Node, gain: Node?, bias: Node?
    let x: Tensor, gainValue: Tensor?, biasValue: Tensor?
    let eps: Float
    let mean: [Float], rstd: [Float]

    /// Normalises `x` over its last dimension; returns the norm, to be captured by the reader's
    /// backward, and its output, for the reader's forward only.
    public static func forward(_ x: Variable, gain: Variable?, bias: Variable?, eps: Float = 1e-5) -> (SavedLayerNorm, Tensor) {
        let value = x.value
        let rows = value.rowCount, cols = value.columnCount
        if let gain { precondition(gain.shape == [cols], "layerNorm: gain \(gain.shape) for input \(value.shape)") }
        if let bias { precondition(bias.shape == [cols], "layerNorm: bias \(bias.shape) for input \(value.shape)") }
        var mean = [Float](repeating: 0, count: rows), rstd = [Float](repeating: 0, count: rows)
        let (gainValue, biasValue) = (gain?.value, bias?.value)
        let y = normalize(value, gainValue, biasValue, eps, mean: &mean, rstd: &rstd)
        let norm = SavedLayerNorm(input: x.handle, gain: gain?.handle, bias: bias?.handle, x: value, gainValue: gainValue,
                                  biasValue: biasValue, eps: eps, mean: mean, rstd: rstd)
        return (norm, y)
    }

    /// The inputs the reader's tape node lists besides its own.
    public var inputs: [Node] { [input] + [gain, bias].compactMap { $0 } }

    /// The output again, for the reader's backward (from the kept row statistics).
    public func recompute() -> Tensor {
        Tensor(uninitialized: x.shape) { py in
            x.withUnsafeBufferPointer { px in
                withOptionalPointer(gainValue) { pg in
                    withOptionalPointer(biasValue) { pb in
                        LayerNormKernel.apply(out: py.baseAddress!, x: px.baseAddress!, gain: pg, bias: pb, mean: mean, rstd: rstd,
                                              rows: x.rowCount, cols: x.columnCount)
                    }
                }
            }
        }
    }

    /// Adds the gradients of the input, gain and bias, given the output's gradient.
    public func backward(_ gradOut: Tensor, on tape: Tape) {
        let rows = x.rowCount, cols = x.columnCount
        guard rows > 0 else { return }
        var gradX = tape.needsGradient(input) ? Tensor(zeros: x.shape) : nil
        var gradGain = gain.map { tape.needsGradient($0) } == true ? Tensor(zeros: [cols]) : nil
        var gradBias = bias.map { tape.needsGradient($0) } == true ? Tensor(zeros: [cols]) : nil
        gradOut.withUnsafeBufferPointer { pg in
            x.withUnsafeBufferPointer { px in
                withOptionalPointer(gainValue) { gainPointer in
                    withOptionalMutablePointer(&gradX) { dx in
                        withOptionalMutablePointer(&gradGain) { dg in
                            withOptionalMutablePointer(&gradBias) { db in
                                LayerNormKernel.backward(gradX: dx, gradGain: dg, gradBias: db, gradOut: pg.baseAddress!,
                                                         x: px.baseAddress!, gain: gainPointer, mean: mean, rstd: rstd,
                                                         rows: rows, cols: cols)
                            }
                        }
                    }
                }
            }
        }
        if let gradX { tape.accumulate(input, gradX) }
        if let gradGain, let gain { tape.accumulate(gain, gradGain) }
        if let gradBias, let bias { tape.accumulate(bias, gradBias) }
    }

    private static func normalize(_ x: Tensor, _ gain: Tensor?, _ bias: Tensor?, _ eps: Float,
                                  mean: inout [Float], rstd: inout [Float]) -> Tensor {
        Tensor(uninitialized: x.shape) { py in
            x.withUnsafeBufferPointer { px in
                withOptionalPointer(gain) { pg in
                    withOptionalPointer(bias) { pb in
                        LayerNormKernel.forward(out: py.baseAddress!, mean: &mean, rstd: &rstd, x: px.baseAddress!,
                                                gain: pg, bias: pb, rows: x.rowCount, cols: x.columnCount, eps: eps)
                    }
                }
            }
        }
    }
}

extension Variable {
    /// linear(layerNorm(self)) as one node that keeps the norm's input, not its output (the norm
    /// folded in, see SavedLayerNorm): for a norm read by nothing but this product.
    public func layerNormLinear(gain: Variable?, bias: Variable?, eps: Float = 1e-5, weight: Variable, linearBias: Variable?) -> Variable {
        let (norm, normalized) = SavedLayerNorm.forward(self, gain: gain, bias: bias, eps: eps)
        let w = weight.value
        let y = LinearOp.forward(normalized, w, linearBias?.value)
        let (weight, linearBias) = (weight.handle, linearBias?.handle)
        return tape.record(y, inputs: norm.inputs + [weight] + (linearBias.map { [$0] } ?? [])) { gradY, tape in
            let (gradX, gradW, gradB) = LinearOp.backward(gradY, x: norm.recompute(), weight: w, wantX: true,
                                                          wantWeight: tape.needsGradient(weight),
                                                          wantBias: linearBias.map { tape.needsGradient($0) } == true)
            if let gradW { tape.accumulate(weight, gradW) }
            if let gradB, let linearBias { tape.accumulate(linearBias, gradB) }
            if let gradX { norm.backward(gradX, on: tape) }
        }
    }
}
