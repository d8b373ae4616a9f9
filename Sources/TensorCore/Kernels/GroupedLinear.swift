// A grouped (block-diagonal) linear layer with an optional input channel permutation, as in
// Consolidator's grouped connections with channel shuffle. Each group is one sgemm over a column
// block of the (permuted) input, read in place through leading dimensions.

public enum GroupedLinearKernel {
    /// y[r, g·O + o] = Σ_i W[g, o, i] · x′[r, g·I + i] + bias, with x′[r, c] = x[r, permutation[c]].
    ///
    /// y: [rows, G·O]; x: [rows, G·I]; weight: [G, O, I]; bias: [G·O]?; permuted: scratch
    /// [rows, G·I] used when `permutation` is given. With `accumulate` (and no bias) the product
    /// is added into y.
    public static func forward(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        permutation: [Int]?, permuted: UnsafeMutablePointer<Float>?, rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int,
        accumulate: Bool = false
    ) {
        precondition(!accumulate || bias == nil, "grouped linear: a bias is not added into an accumulated output")
        let inWidth = groups * inPerGroup, outWidth = groups * outPerGroup
        let source: UnsafePointer<Float>
        if let permutation, let permuted {
            for r in 0..<rows {
                for c in 0..<inWidth { permuted[r * inWidth + c] = x[r * inWidth + permutation[c]] }
            }
            source = UnsafePointer(permuted)
        } else {
            source = x
        }
        if let bias {
            for r in 0..<rows { (y + r * outWidth).update(from: bias, count: outWidth) }
        }
        for g in 0..<groups {
            BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: outPerGroup, k: inPerGroup,
                      a: source + g * inPerGroup, lda: inWidth, b: weight + g * outPerGroup * inPerGroup,
                      beta: bias == nil && !accumulate ? 0 : 1, c: y + g * outPerGroup, ldc: outWidth)
        }
    }

    /// Adds dx, dW, dbias (any may be nil). `source` is the permuted input the forward used (or x
    /// itself without a permutation); `scratch` needs rows·G·I floats when dx is wanted with a
    /// permutation.
    public static func backward(
        gradX: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
        gradY: UnsafePointer<Float>, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        permutation: [Int]?, scratch: UnsafeMutablePointer<Float>?, rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int
    ) {
        let inWidth = groups * inPerGroup, outWidth = groups * outPerGroup
        if let gradBias {
            LinearKernel.addColumnSums(gradY, rows: rows, columns: outWidth, into: gradBias)
        }
        for g in 0..<groups {
            if let gradWeight {
                // dW_g[O, I] += dy_gᵀ · x′_g
                BLAS.gemm(transposeA: true, transposeB: false, m: outPerGroup, n: inPerGroup, k: rows,
                          a: gradY + g * outPerGroup, lda: outWidth, b: source + g * inPerGroup, ldb: inWidth,
                          beta: 1, c: gradWeight + g * outPerGroup * inPerGroup)
            }
        }
        guard let gradX else { return }
        // dx′ = dy_g · W_g per group; without a permutation dx′ is dx.
        let target = permutation == nil ? gradX : scratch!
        if permutation != nil { target.update(repeating: 0, count: rows * inWidth) }
        for g in 0..<groups {
            BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: inPerGroup, k: outPerGroup,
                      a: gradY + g * outPerGroup, lda: outWidth, b: weight + g * outPerGroup * inPerGroup,
                      beta: 1, c: target + g * inPerGroup, ldc: inWidth)
        }
        if let permutation {
            for r in 0..<rows {
                for c in 0..<inWidth { gradX[r * inWidth + permutation[c]] += target[r * inWidth + c] }
            }
        }
    }

    /// The equivalent dense weight [G·O, G·I] in the original (unpermuted) input order, so that
    /// y = x · denseᵀ: what Consolidator's consolidation merges into the frozen matrix.
    public static func denseWeight(_ weight: Tensor, permutation: [Int]?) -> Tensor {
        precondition(weight.rank == 3, "grouped weight must be [G, O, I], got \(weight.shape)")
        let (groups, outPerGroup, inPerGroup) = (weight.shape[0], weight.shape[1], weight.shape[2])
        let inWidth = groups * inPerGroup
        var dense = Tensor(zeros: [groups * outPerGroup, inWidth])
        for g in 0..<groups {
            for o in 0..<outPerGroup {
                for i in 0..<inPerGroup {
                    let permutedColumn = g * inPerGroup + i
                    let column = permutation?[permutedColumn] ?? permutedColumn
                    dense.scalars[(g * outPerGroup + o) * inWidth + column] += weight.scalars[(g * outPerGroup + o) * inPerGroup + i]
                }
            }
        }
        return dense
    }
}
