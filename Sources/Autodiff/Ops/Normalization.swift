// Differentiable layer norm, softmax, log-softmax, cross-entropy with label smoothing, and
// L1 normalisation (kernels in TensorCore/Kernels).
import TensorCore

extension Variable {
    /// Layer norm over the last dimension with optional gain and bias, each [cols].
    public func layerNorm(gain: Variable? = nil, bias: Variable? = nil, eps: Float = 1e-5) -> Variable {
        let (norm, y) = SavedLayerNorm.forward(self, gain: gain, bias: bias, eps: eps)
        return tape.record(y, inputs: norm.inputs) { g, tape in norm.backward(g, on: tape) }
    }

    /// Softmax over the last dimension.
    public func softmax() -> Variable {
        rowWise(SoftmaxKernel.forward, SoftmaxKernel.backward)
    }

    /// Log-softmax over the last dimension.
    public func logSoftmax() -> Variable {
        rowWise(SoftmaxKernel.logForward, SoftmaxKernel.logBackward)
    }

    private func rowWise(
        _ forward: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int, Int) -> Void,
        _ backward: @escaping (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int, Int) -> Void
    ) -> Variable {
        let x = value
        let rows = x.rowCount, cols = x.columnCount
        var y = Tensor(zeros: x.shape)
        if x.count > 0 {
            x.withUnsafeBufferPointer { px in
                y.withUnsafeMutableBufferPointer { py in forward(py.baseAddress!, px.baseAddress!, rows, cols) }
            }
        }
        let input = handle
        let output = y
        return tape.record(y, inputs: [input]) { g, tape in
            guard g.count > 0 else { return }
            g.withUnsafeBufferPointer { pg in
                output.withUnsafeBufferPointer { py in
                    tape.accumulate(input) { dx in backward(dx.baseAddress!, pg.baseAddress!, py.baseAddress!, rows, cols) }
                }
            }
        }
    }

    /// Mean cross-entropy of logits [B, C] against integer labels, with label smoothing ε
    /// (target (1 − ε)·onehot + ε/C, as PyTorch). A one-element result.
    public func crossEntropy(labels: [Int], smoothing: Float = 0) -> Variable {
        let logits = value
        precondition(logits.rank == 2 && logits.shape[0] == labels.count,
                     "crossEntropy: logits \(logits.shape) for \(labels.count) labels")
        let rows = logits.shape[0], classes = logits.shape[1]
        precondition(labels.allSatisfy { $0 >= 0 && $0 < classes }, "crossEntropy: a label is outside 0..<\(classes)")
        var probabilities = Tensor(zeros: logits.shape)
        let loss = logits.withUnsafeBufferPointer { px in
            probabilities.withUnsafeMutableBufferPointer { pp in
                CrossEntropyKernel.forward(probabilities: pp.baseAddress!, logits: px.baseAddress!, labels: labels,
                                           rows: rows, classes: classes, smoothing: smoothing)
            }
        }
        let input = handle
        let saved = probabilities
        return tape.record(Tensor(scalar: loss), inputs: [input]) { g, tape in
            saved.withUnsafeBufferPointer { pp in
                tape.accumulate(input) { dx in
                    CrossEntropyKernel.backward(gradLogits: dx.baseAddress!, seed: g.scalar, probabilities: pp.baseAddress!,
                                                labels: labels, rows: rows, classes: classes, smoothing: smoothing)
                }
            }
        }
    }

    /// x / (Σ|x| + eps) over the last dimension (UniPT normalises ReLU'd interactions this way).
    public func l1Normalized(eps: Float = 1e-6) -> Variable {
        let x = value
        let rows = x.rowCount, cols = x.columnCount
        var y = x
        var norms = [Float](repeating: 0, count: rows)
        y.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows {
                var s: Float = 0
                for j in 0..<cols { s += abs(p[r * cols + j]) }
                norms[r] = s + eps
                for j in 0..<cols { p[r * cols + j] /= norms[r] }
            }
        }
        let input = handle
        let output = y
        return tape.record(y, inputs: [input]) { g, tape in
            // y_j = x_j / n, n = Σ|x| + eps: dx_k = (g_k − sign(x_k) · Σ_j g_j y_j) / n
            tape.accumulate(input) { dx in
                for r in 0..<rows {
                    var dot: Float = 0
                    for j in 0..<cols { dot += g.scalars[r * cols + j] * output.scalars[r * cols + j] }
                    for k in 0..<cols {
                        let v = x.scalars[r * cols + k]
                        let sign: Float = v > 0 ? 1 : (v < 0 ? -1 : 0)
                        dx[r * cols + k] += (g.scalars[r * cols + k] - sign * dot) / norms[r]
                    }
                }
            }
        }
    }
}
