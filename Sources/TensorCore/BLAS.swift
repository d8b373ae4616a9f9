// Matrix products through OpenBLAS's CBLAS interface. Row-major throughout; transposes are flags,
// never copies. Batched products loop over sgemm: the batches here are few and large.
import CBLAS

public enum BLAS {
    /// Sets OpenBLAS's thread count (it defaults to every core).
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(count))
    }

    /// c[m, n] = alpha · op(a) · op(b) + beta · c, where op(a) is [m, k] and op(b) is [k, n].
    ///
    /// `a` is stored [m, k] (or [k, m] when `transposeA`), `b` is stored [k, n] (or [n, k] when
    /// `transposeB`); leading dimensions default to dense rows, and a larger one reads a column
    /// block of wider rows in place (one attention head of a [T, H·dh] matrix, say).
    @inlinable
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil, b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        if m == 0 || n == 0 { return }
        _ = kernelSelection
        cblas_sgemm(
            CblasRowMajor,
            transposeA ? CblasTrans : CblasNoTrans,
            transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(lda ?? (transposeA ? m : k)),
            b, Int32(ldb ?? (transposeB ? k : n)),
            beta, c, Int32(ldc ?? n))
    }
}

extension Tensor {
    /// The matrix product of the last two dimensions, batched over the leading ones.
    ///
    /// Shapes: a [..., m, k] (or [..., k, m] transposed), b [k, n] or [..., k, n] (or the
    /// transpose); with a rank-2 `b` every batch of `a` multiplies the same matrix, which is one
    /// sgemm over all of a's rows when `a` is not transposed.
    public static func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false
    ) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank ≥ 2, got \(a.shape) and \(b.shape)")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (kb, n) = transposeB ? (bc, br) : (br, bc)
        precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
        let batchShape = Array(a.shape.dropLast(2))
        let batches = Tensor.elementCount(batchShape)
        if b.rank > 2 {
            precondition(Array(b.shape.dropLast(2)) == batchShape, "matmul batch shapes differ: \(a.shape) · \(b.shape)")
        }
        var out = Tensor(zeros: batchShape + [m, n])
        if out.count == 0 || k == 0 { return out }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    MatMulKernel.forward(
                        out: pc.baseAddress!, a: pa.baseAddress!, b: pb.baseAddress!, batches: batches,
                        m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, sharedB: b.rank == 2)
                }
            }
        }
        return out
    }
}
