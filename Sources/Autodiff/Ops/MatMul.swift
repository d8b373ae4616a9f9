// Differentiable matrix product, linear layer and full sum: thin wrappers that record the kernels
// of TensorCore/Kernels/MatMul.swift on the tape.
import TensorCore

extension Variable {
    /// op(self) · op(other) over the last two dimensions, batched over leading ones; a rank-2
    /// `other` is shared by every batch. See `Tensor.matmul` for shapes.
    public func matmul(_ other: Variable, transposeSelf: Bool = false, transposeOther: Bool = false) -> Variable {
        let a = value, b = other.value
        let out = Tensor.matmul(a, b, transposeA: transposeSelf, transposeB: transposeOther)
        let m = out.shape[out.rank - 2], n = out.shape[out.rank - 1]
        let k = transposeSelf ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        let batches = out.count / max(m * n, 1)
        let (lhs, rhs) = (handle, other.handle)
        return tape.record(out, inputs: [lhs, rhs]) { gradOut, tape in
            guard k > 0 else { return }
            let needA = tape.needsGradient(lhs), needB = tape.needsGradient(rhs)
            var gradA = needA ? Tensor(zeros: a.shape) : nil
            var gradB = needB ? Tensor(zeros: b.shape) : nil
            gradOut.withUnsafeBufferPointer { dC in
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        withOptionalMutablePointer(&gradA) { dA in
                            withOptionalMutablePointer(&gradB) { dB in
                                MatMulKernel.backward(
                                    gradA: dA, gradB: dB, gradOut: dC.baseAddress!, a: pa.baseAddress!,
                                    b: pb.baseAddress!, batches: batches, m: m, n: n, k: k,
                                    transposeA: transposeSelf, transposeB: transposeOther, sharedB: b.rank == 2)
                            }
                        }
                    }
                }
            }
            if let gradA { tape.accumulate(lhs, gradA) }
            if let gradB { tape.accumulate(rhs, gradB) }
        }
    }

    /// x · Wᵀ + b over the last dimension: self [..., in], weight [out, in], bias [out].
    public func linear(_ weight: Variable, _ bias: Variable? = nil) -> Variable {
        let x = value, w = weight.value
        let y = LinearOp.forward(x, w, bias?.value)
        let (input, weight, bias) = (handle, weight.handle, bias?.handle)
        let inputs = [input, weight] + (bias.map { [$0] } ?? [])
        return tape.record(y, inputs: inputs) { gradY, tape in
            let (gradX, gradW, gradB) = LinearOp.backward(gradY, x: x, weight: w, wantX: tape.needsGradient(input),
                                                          wantWeight: tape.needsGradient(weight),
                                                          wantBias: bias.map { tape.needsGradient($0) } == true)
            if let gradX { tape.accumulate(input, gradX) }
            if let gradW { tape.accumulate(weight, gradW) }
            if let gradB, let bias { tape.accumulate(bias, gradB) }
        }
    }

    /// The sum of every element, as a one-element tensor.
    public func sum() -> Variable {
        var total: Double = 0
        for v in value.scalars { total += Double(v) }
        let input = handle
        return tape.record(Tensor(scalar: Float(total)), inputs: [input]) { g, tape in
            let seed = g.scalar
            tape.accumulate(input) { dst in
                for i in 0..<dst.count { dst[i] += seed }
            }
        }
    }
}

/// Calls `body` with the tensor's base address, or nil when there is no tensor.
@inlinable
func withOptionalPointer<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// Calls `body` with the tensor's mutable base address, or nil when there is no tensor.
@inlinable
func withOptionalMutablePointer<R>(_ t: inout Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard t != nil else { return body(nil) }
    return t!.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

/// The linear op's two halves on tensors, shared by the ops that contain a linear (linear itself,
/// a layer norm folded into one).
enum LinearOp {
    /// x · Wᵀ + b over the last dimension: x [..., in], weight [out, in], bias [out].
    static func forward(_ x: Tensor, _ w: Tensor, _ bias: Tensor?) -> Tensor {
        precondition(w.rank == 2 && x.columnCount == w.shape[1],
                     "linear: input \(x.shape) does not match weight \(w.shape) ([out, in])")
        let outFeatures = w.shape[0], inFeatures = w.shape[1], rows = x.rowCount
        if let bias { precondition(bias.shape == [outFeatures], "linear: bias \(bias.shape) for weight \(w.shape)") }
        // The kernel writes every row: the bias, then the product added (or the product alone);
        // an empty product (no inputs) leaves zeros.
        let outShape = Array(x.shape.dropLast()) + [outFeatures]
        return inFeatures == 0 ? Tensor(zeros: outShape) : Tensor(uninitialized: outShape) { py in
            x.withUnsafeBufferPointer { px in
                w.withUnsafeBufferPointer { pw in
                    withOptionalPointer(bias) { pb in
                        LinearKernel.forward(y: py.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!,
                                             bias: pb, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
                    }
                }
            }
        }
    }

    /// The gradients of x, W and b that are wanted (nil for the others, and for no rows).
    static func backward(_ gradY: Tensor, x: Tensor, weight w: Tensor, wantX: Bool, wantWeight: Bool,
                         wantBias: Bool) -> (x: Tensor?, weight: Tensor?, bias: Tensor?) {
        let outFeatures = w.shape[0], inFeatures = w.shape[1], rows = x.rowCount
        guard rows > 0 else { return (nil, nil, nil) }
        // Written whole by the kernel, so not zeroed first (zeroing them was 1% of LST's step),
        // unless a product is empty.
        let overwrite = inFeatures > 0 && outFeatures > 0
        func buffer(_ shape: [Int]) -> Tensor { overwrite ? Tensor(uninitialized: shape) { _ in } : Tensor(zeros: shape) }
        var gradX = wantX ? buffer(x.shape) : nil
        var gradW = wantWeight ? buffer(w.shape) : nil
        var gradB = wantBias ? buffer([outFeatures]) : nil
        gradY.withUnsafeBufferPointer { dy in
            x.withUnsafeBufferPointer { px in
                w.withUnsafeBufferPointer { pw in
                    withOptionalMutablePointer(&gradX) { dx in
                        withOptionalMutablePointer(&gradW) { dw in
                            withOptionalMutablePointer(&gradB) { db in
                                LinearKernel.backward(
                                    gradX: dx, gradWeight: dw, gradBias: db, gradY: dy.baseAddress!,
                                    x: px.baseAddress!, weight: pw.baseAddress!, rows: rows,
                                    inFeatures: inFeatures, outFeatures: outFeatures, overwrite: overwrite)
                            }
                        }
                    }
                }
            }
        }
        return (gradX, gradW, gradB)
    }
}
