// A frozen matrix whose products run in bf16 through oneDNN, for heads that re-run the backbone's
// own blocks (the consolidator) on a cache the backbone computed in bf16: the same arithmetic as
// the extraction, at about 1.8× OpenBLAS's sgemm per product here (AVX512-BF16) and more with AMX.
// Inputs are rounded to bf16 and products accumulate in f32, as under PyTorch's bf16 autocast.
import Autodiff
import OneDNN
import TensorCore

/// W [out, in], frozen: x·Wᵀ + b on a tape, with the input's gradient dY·W; W gets none.
final class BF16FrozenLinear: @unchecked Sendable {
    let inFeatures: Int
    let outFeatures: Int
    /// W and Wᵀ, each converted once (safe to call from several threads).
    private let product: BF16RowsProduct
    private let transposedProduct: BF16RowsProduct

    /// Throws when oneDNN has no bf16 products on this CPU.
    init(_ w: Tensor) throws {
        precondition(w.rank == 2, "frozen linear: weight \(w.shape) is not [out, in]")
        (outFeatures, inFeatures) = (w.shape[0], w.shape[1])
        let (out, inputs) = (outFeatures, inFeatures)
        product = try w.withUnsafeBufferPointer {
            try BF16RowsProduct(weight: $0.baseAddress!, inFeatures: inputs, outFeatures: out, hasBias: true)
        }
        // dX [rows, in] = dY [rows, out] · W: a product with the weight [in, out], i.e. Wᵀ.
        transposedProduct = try w.transposed().withUnsafeBufferPointer {
            try BF16RowsProduct(weight: $0.baseAddress!, inFeatures: out, outFeatures: inputs, hasBias: false)
        }
    }

    /// x [rows, in] · Wᵀ + bias [out]. oneDNN adds the bias in f32 as it writes y; its gradient is
    /// the column sum of dY.
    func callAsFunction(_ x: Variable, bias: Variable) -> Variable {
        let input = x.value, b = bias.value
        precondition(input.rank == 2 && input.shape[1] == inFeatures && b.shape == [outFeatures],
                     "frozen linear \(outFeatures)×\(inFeatures): input \(input.shape), bias \(b.shape)")
        let rows = input.shape[0], out = outFeatures, inputs = inFeatures
        let y = Tensor(uninitialized: [rows, out]) { py in
            guard rows > 0 else { return }
            input.withUnsafeBufferPointer { px in
                b.withUnsafeBufferPointer { pb in
                    product.forward(y: py.baseAddress!, x: px.baseAddress!, rows: rows, bias: pb.baseAddress!)
                }
            }
        }
        let (xHandle, biasHandle, transposedProduct) = (x.handle, bias.handle, transposedProduct)
        return x.tape.record(y, inputs: [xHandle, biasHandle]) { gradY, tape in
            guard rows > 0 else { return }
            if tape.needsGradient(xHandle) {
                let gradX = Tensor(uninitialized: [rows, inputs]) { dx in
                    gradY.withUnsafeBufferPointer { dy in transposedProduct.forward(y: dx.baseAddress!, x: dy.baseAddress!, rows: rows) }
                }
                tape.accumulate(xHandle, gradX)
            }
            gradY.withUnsafeBufferPointer { dy in
                tape.accumulate(biasHandle) { db in
                    LinearKernel.addColumnSums(dy.baseAddress!, rows: rows, columns: out, into: db.baseAddress!)
                }
            }
        }
    }
}

/// A frozen matrix W [out, in] as a head applies it: x·Wᵀ + b in f32 on the tape, or in bf16.
enum FrozenMatrix {
    case f32(Tensor)
    case bf16(BF16FrozenLinear)

    /// W held for products in bf16 when `bf16`, else as it is.
    init(_ w: Tensor, bf16: Bool) throws {
        self = bf16 ? .bf16(try BF16FrozenLinear(w)) : .f32(w)
    }

    /// x·Wᵀ + bias on `x`'s tape.
    func callAsFunction(_ x: Variable, bias: Variable) -> Variable {
        switch self {
        case .f32(let w): x.linear(x.tape.constant(w), bias)
        case .bf16(let product): product(x, bias: bias)
        }
    }
}
