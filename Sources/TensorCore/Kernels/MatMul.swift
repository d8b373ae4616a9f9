// Matrix product and linear layer as forward/backward kernel pairs over dense row-major buffers.
// Backward kernels accumulate (`beta = 1`): callers zero gradient buffers explicitly.

/// C = op(A) · op(B), batched over `batches` (B shared across batches when `sharedB`).
public enum MatMulKernel {
    /// out: [batches, m, n]; a: [batches, m, k] (stored [k, m] per batch when transposeA);
    /// b: [batches?, k, n] (stored [n, k] when transposeB).
    public static func forward(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        batches: Int, m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, sharedB: Bool
    ) {
        if sharedB && !transposeA {
            BLAS.gemm(transposeA: false, transposeB: transposeB, m: batches * m, n: n, k: k, a: a, b: b, c: out)
            return
        }
        for i in 0..<batches {
            BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                      a: a + i * m * k, b: b + (sharedB ? 0 : i * k * n), c: out + i * m * n)
        }
    }

    /// Adds dL/dA into `gradA` and dL/dB into `gradB` (either may be nil) given dL/dC in `gradOut`.
    public static func backward(
        gradA: UnsafeMutablePointer<Float>?, gradB: UnsafeMutablePointer<Float>?,
        gradOut: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        batches: Int, m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, sharedB: Bool
    ) {
        for i in 0..<batches {
            let dC = gradOut + i * m * n
            let aI = a + i * m * k
            let bI = b + (sharedB ? 0 : i * k * n)
            if let gradA {
                if !transposeA {
                    // dA[m, k] += dC[m, n] · op(B)ᵀ
                    BLAS.gemm(transposeA: false, transposeB: !transposeB, m: m, n: k, k: n,
                              a: dC, b: bI, beta: 1, c: gradA + i * m * k)
                } else {
                    // dA stored [k, m] += op(B)[k, n] · dCᵀ
                    BLAS.gemm(transposeA: transposeB, transposeB: true, m: k, n: m, k: n,
                              a: bI, b: dC, beta: 1, c: gradA + i * m * k)
                }
            }
            if let gradB {
                let dB = gradB + (sharedB ? 0 : i * k * n)
                if !transposeB {
                    // dB[k, n] += op(A)ᵀ[k, m] · dC[m, n]
                    BLAS.gemm(transposeA: !transposeA, transposeB: false, m: k, n: n, k: m,
                              a: aI, b: dC, beta: 1, c: dB)
                } else {
                    // dB stored [n, k] += dCᵀ[n, m] · op(A)[m, k]
                    BLAS.gemm(transposeA: true, transposeB: transposeA, m: n, n: k, k: m,
                              a: dC, b: aI, beta: 1, c: dB)
                }
            }
        }
    }
}

/// y = x · Wᵀ + b with W stored [out, in] as in PyTorch and Hugging Face checkpoints.
public enum LinearKernel {
    /// y: [rows, outFeatures]; x: [rows, inFeatures]; weight: [outFeatures, inFeatures]; bias: [outFeatures]?
    public static func forward(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, rows: Int, inFeatures: Int, outFeatures: Int
    ) {
        if let bias, rows > 0 {
            // The bias in the first row, then copies of the rows filled so far, doubling: a copy
            // per row cost more than the product when rows are short (a side network's 16 or 32
            // outputs over thousands of rows).
            y.update(from: bias, count: outFeatures)
            var filled = 1
            while filled < rows {
                let count = min(filled, rows - filled)
                (y + filled * outFeatures).update(from: y, count: count * outFeatures)
                filled += count
            }
        }
        BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: outFeatures, k: inFeatures,
                  a: x, b: weight, beta: bias == nil ? 0 : 1, c: y)
    }

    /// Adds dx (x's shape), dW ([out, in]) and db ([out]) given dy: [rows, outFeatures]; with
    /// `overwrite` writes them instead (they need not be initialised then; rows, inFeatures and
    /// outFeatures must be positive).
    public static func backward(
        gradX: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?,
        gradBias: UnsafeMutablePointer<Float>?, gradY: UnsafePointer<Float>,
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int,
        overwrite: Bool = false
    ) {
        precondition(!overwrite || (rows > 0 && inFeatures > 0 && outFeatures > 0), "linear backward overwrites an empty product")
        let beta: Float = overwrite ? 0 : 1
        if let gradX {
            // dx[rows, in] += dy[rows, out] · W[out, in]
            BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures,
                      a: gradY, b: weight, beta: beta, c: gradX)
        }
        if let gradWeight {
            // dW[out, in] += dyᵀ[out, rows] · x[rows, in]
            BLAS.gemm(transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows,
                      a: gradY, b: x, beta: beta, c: gradWeight)
        }
        if let gradBias {
            if overwrite { gradBias.update(repeating: 0, count: outFeatures) }
            addColumnSums(gradY, rows: rows, columns: outFeatures, into: gradBias)
        }
    }

    /// sums[j] += Σ_r x[r, j] for x [rows, columns], each column summed in row order: a bias's
    /// gradient. Sixteen columns at a time kept in registers over all rows (the scalar loop, which
    /// may not assume that `sums` and `x` do not overlap, was 3% of a consolidator step).
    public static func addColumnSums(_ x: UnsafePointer<Float>, rows: Int, columns: Int, into sums: UnsafeMutablePointer<Float>) {
        typealias Lanes = SIMD16<Float>
        var j = 0
        while j + Lanes.scalarCount <= columns {
            var acc = UnsafeRawPointer(sums + j).loadUnaligned(as: Lanes.self)
            for r in 0..<rows { acc += UnsafeRawPointer(x + r * columns + j).loadUnaligned(as: Lanes.self) }
            UnsafeMutableRawPointer(sums + j).storeBytes(of: acc, as: Lanes.self)
            j += Lanes.scalarCount
        }
        for j in j..<columns {
            var acc = sums[j]
            for r in 0..<rows { acc += x[r * columns + j] }
            sums[j] = acc
        }
    }
}
