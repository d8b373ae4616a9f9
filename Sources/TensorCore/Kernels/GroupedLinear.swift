// A grouped (block-diagonal) linear layer with an optional input channel permutation, as in
// Consolidator's grouped connections with channel shuffle. Groups whose widths are multiples of 8
// run as 8-lane loops over every group (below); any other group is one sgemm over a column block
// of the (permuted) input, read in place through leading dimensions.

public enum GroupedLinearKernel {
    /// y[r, g·O + o] = Σ_i W[g, o, i] · x′[r, g·I + i] + bias, with x′[r, c] = x[r, permutation[c]].
    ///
    /// y: [rows, G·O]; x: [rows, G·I]; weight: [G, O, I]; bias: [G·O]?; permuted: scratch
    /// [rows, G·I] used when `permutation` is given. With `accumulate` (and no bias) the product
    /// is added into y. `rowScale` (one factor per row, applied to the product, not the bias)
    /// needs `isLaneBlocked` and no permutation.
    public static func forward(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        permutation: [Int]?, permuted: UnsafeMutablePointer<Float>?, rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int,
        accumulate: Bool = false, rowScale: UnsafePointer<Float>? = nil
    ) {
        precondition(!accumulate || bias == nil, "grouped linear: a bias is not added into an accumulated output")
        let laneBlocked = isLaneBlocked(inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        precondition(rowScale == nil || (laneBlocked && permutation == nil), "grouped linear: row scales need lane-blocked groups, unpermuted")
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
        if laneBlocked {
            if bias == nil && !accumulate { y.update(repeating: 0, count: rows * outWidth) }
            return laneBlockedForward(y: y, x: source, weight: weight, rowScale: rowScale, rows: rows, groups: groups,
                                      inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        }
        for g in 0..<groups {
            BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: outPerGroup, k: inPerGroup,
                      a: source + g * inPerGroup, lda: inWidth, b: weight + g * outPerGroup * inPerGroup,
                      beta: bias == nil && !accumulate ? 0 : 1, c: y + g * outPerGroup, ldc: outWidth)
        }
    }

    /// Adds dx, dW, dbias (any may be nil). `source` is the permuted input the forward used (or x
    /// itself without a permutation); `scratch` needs rows·G·I floats when dx is wanted with a
    /// permutation. `rowScale` as in `forward` (dx and dW then are those of the scaled product;
    /// the bias's gradient is not scaled).
    public static func backward(
        gradX: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
        gradY: UnsafePointer<Float>, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        permutation: [Int]?, scratch: UnsafeMutablePointer<Float>?, rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int,
        rowScale: UnsafePointer<Float>? = nil
    ) {
        let inWidth = groups * inPerGroup, outWidth = groups * outPerGroup
        let laneBlocked = isLaneBlocked(inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        precondition(rowScale == nil || (laneBlocked && permutation == nil), "grouped linear: row scales need lane-blocked groups, unpermuted")
        if let gradBias {
            LinearKernel.addColumnSums(gradY, rows: rows, columns: outWidth, into: gradBias)
        }
        if let gradWeight {
            if laneBlocked {
                laneBlockedGradWeight(gradWeight: gradWeight, gradY: gradY, x: source, rowScale: rowScale, rows: rows, groups: groups,
                                      inPerGroup: inPerGroup, outPerGroup: outPerGroup)
            } else {
                for g in 0..<groups {
                    // dW_g[O, I] += dy_gᵀ · x′_g
                    BLAS.gemm(transposeA: true, transposeB: false, m: outPerGroup, n: inPerGroup, k: rows,
                              a: gradY + g * outPerGroup, lda: outWidth, b: source + g * inPerGroup, ldb: inWidth,
                              beta: 1, c: gradWeight + g * outPerGroup * inPerGroup)
                }
            }
        }
        guard let gradX else { return }
        // dx′ = dy_g · W_g per group; without a permutation dx′ is dx.
        let target = permutation == nil ? gradX : scratch!
        if permutation != nil { target.update(repeating: 0, count: rows * inWidth) }
        if laneBlocked {
            laneBlockedGradX(gradX: target, gradY: gradY, weight: weight, rowScale: rowScale, rows: rows, groups: groups,
                             inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        } else {
            for g in 0..<groups {
                BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: inPerGroup, k: outPerGroup,
                          a: gradY + g * outPerGroup, lda: outWidth, b: weight + g * outPerGroup * inPerGroup,
                          beta: 1, c: target + g * inPerGroup, ldc: inWidth)
            }
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

// Consolidator's groups are narrow (8 channels in and out at 48 groups on a 384-wide block), and
// an sgemm call per group spends its time in call and packing overhead: the three products of one
// branch took about five times their arithmetic. Where both group widths are multiples of 8, these
// loops do the same products 8 output lanes at a time over every group in one pass, with each
// row's branch-drop scale applied as they go instead of through a scaled copy of the input.
extension GroupedLinearKernel {
    /// Whether the lane-blocked kernels below take these group widths.
    public static func isLaneBlocked(inPerGroup: Int, outPerGroup: Int) -> Bool {
        inPerGroup > 0 && outPerGroup > 0 && inPerGroup % 8 == 0 && outPerGroup % 8 == 0
    }

    private static func requireLaneBlocked(_ kernel: String, inPerGroup: Int, outPerGroup: Int) {
        precondition(isLaneBlocked(inPerGroup: inPerGroup, outPerGroup: outPerGroup),
                     "\(kernel): group widths \(inPerGroup) → \(outPerGroup) are not multiples of 8")
    }

    @inline(__always) private static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) private static func add8(_ p: UnsafeMutablePointer<Float>, _ v: SIMD8<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: load8(p) + v, as: SIMD8<Float>.self)
    }

    /// Σ_k bcast(a_k[k]) · b(k) over k < count for four rows a_0…a_3 at once, b(k) one 8-lane
    /// vector: four independent chains share each load of b.
    @inline(__always) private static func fourRows(
        _ a: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>), count: Int,
        _ b: (Int) -> SIMD8<Float>
    ) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        var (s0, s1, s2, s3) = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
        for k in 0..<count {
            let v = b(k)
            s0.addProduct(SIMD8(repeating: a.0[k]), v)
            s1.addProduct(SIMD8(repeating: a.1[k]), v)
            s2.addProduct(SIMD8(repeating: a.2[k]), v)
            s3.addProduct(SIMD8(repeating: a.3[k]), v)
        }
        return (s0, s1, s2, s3)
    }

    /// For every row r whose scale s_r is not 0, every group g and every 8 outputs j of the group:
    /// out[r, g·outPer + j] += s_r · Σ_k a[r, g·count + k] · b(g, j, k), with b(g, j, k) the 8
    /// lanes of one k (the shared loop of the forward and the input gradient). Rows go four at
    /// a time, each row's every group before the next rows: rows are read once, in order.
    @inline(__always) private static func addGroupProducts(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, rows: Int, groups: Int, count: Int, outPer: Int,
        rowScale: UnsafePointer<Float>?, _ b: (Int, Int, Int) -> SIMD8<Float>
    ) {
        let (aStride, outStride) = (groups * count, groups * outPer)
        func scale(_ r: Int) -> Float { rowScale?[r] ?? 1 }
        var r = 0
        while r + 4 <= rows {
            let a0 = a + r * aStride, o0 = out + r * outStride
            for g in 0..<groups {
                let ag = a0 + g * count
                for j in stride(from: 0, to: outPer, by: 8) {
                    let (s0, s1, s2, s3) = fourRows((ag, ag + aStride, ag + 2 * aStride, ag + 3 * aStride), count: count) { b(g, j, $0) }
                    let o = o0 + g * outPer + j
                    if scale(r) != 0 { add8(o, scale(r) * s0) }
                    if scale(r + 1) != 0 { add8(o + outStride, scale(r + 1) * s1) }
                    if scale(r + 2) != 0 { add8(o + 2 * outStride, scale(r + 2) * s2) }
                    if scale(r + 3) != 0 { add8(o + 3 * outStride, scale(r + 3) * s3) }
                }
            }
            r += 4
        }
        while r < rows {
            if scale(r) != 0 {
                for g in 0..<groups {
                    let ag = a + r * aStride + g * count
                    for j in stride(from: 0, to: outPer, by: 8) {
                        var sum = SIMD8<Float>()
                        for k in 0..<count { sum.addProduct(SIMD8(repeating: ag[k]), b(g, j, k)) }
                        add8(out + r * outStride + g * outPer + j, scale(r) * sum)
                    }
                }
            }
            r += 1
        }
    }

    /// y[r, g·O + o] += s_r · Σ_i W[g, o, i] · x[r, g·I + i], with s_r = `rowScale[r]` (1 without);
    /// rows whose scale is 0 are left as they are. y: [rows, G·O]; x: [rows, G·I]; weight: [G, O, I].
    /// Needs `isLaneBlocked(inPerGroup:outPerGroup:)`.
    public static func laneBlockedForward(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rowScale: UnsafePointer<Float>?,
        rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int
    ) {
        requireLaneBlocked("laneBlockedForward", inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        let size = outPerGroup * inPerGroup
        // Each group's Wᵀ [I, O], so that 8 consecutive outputs of one input are one load.
        let transposed = UnsafeMutablePointer<Float>.allocate(capacity: groups * size)
        defer { transposed.deallocate() }
        for g in 0..<groups {
            let w = weight + g * size, t = transposed + g * size
            for o in 0..<outPerGroup { for i in 0..<inPerGroup { t[i * outPerGroup + o] = w[o * inPerGroup + i] } }
        }
        addGroupProducts(out: y, a: x, rows: rows, groups: groups, count: inPerGroup, outPer: outPerGroup, rowScale: rowScale) { g, j, i in
            load8(transposed + g * size + i * outPerGroup + j)
        }
    }

    /// dx[r, g·I + i] += s_r · Σ_o dy[r, g·O + o] · W[g, o, i]: the input's gradient of
    /// `laneBlockedForward`.
    public static func laneBlockedGradX(
        gradX: UnsafeMutablePointer<Float>, gradY: UnsafePointer<Float>, weight: UnsafePointer<Float>, rowScale: UnsafePointer<Float>?,
        rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int
    ) {
        requireLaneBlocked("laneBlockedGradX", inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        let size = outPerGroup * inPerGroup
        addGroupProducts(out: gradX, a: gradY, rows: rows, groups: groups, count: outPerGroup, outPer: inPerGroup, rowScale: rowScale) { g, j, o in
            load8(weight + g * size + o * inPerGroup + j)
        }
    }

    /// dW[g, o, i] += Σ_r s_r · dy[r, g·O + o] · x[r, g·I + i]: the weight's gradient of
    /// `laneBlockedForward`, rows summed in order.
    public static func laneBlockedGradWeight(
        gradWeight: UnsafeMutablePointer<Float>, gradY: UnsafePointer<Float>, x: UnsafePointer<Float>, rowScale: UnsafePointer<Float>?,
        rows: Int, groups: Int, inPerGroup: Int, outPerGroup: Int
    ) {
        requireLaneBlocked("laneBlockedGradWeight", inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        let (inWidth, outWidth) = (groups * inPerGroup, groups * outPerGroup)
        for g in 0..<groups {
            for block in stride(from: 0, to: inPerGroup, by: 8) {
                for o0 in stride(from: 0, to: outPerGroup, by: 8) {
                    // Eight outputs' sums over the rows, each 8 inputs wide.
                    var sums = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(),
                                SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
                    var dy = gradY + g * outPerGroup + o0, xr = x + g * inPerGroup + block
                    for r in 0..<rows {
                        let s = rowScale?[r] ?? 1
                        if s != 0 {
                            let v = s * load8(xr)
                            sums.0.addProduct(SIMD8(repeating: dy[0]), v)
                            sums.1.addProduct(SIMD8(repeating: dy[1]), v)
                            sums.2.addProduct(SIMD8(repeating: dy[2]), v)
                            sums.3.addProduct(SIMD8(repeating: dy[3]), v)
                            sums.4.addProduct(SIMD8(repeating: dy[4]), v)
                            sums.5.addProduct(SIMD8(repeating: dy[5]), v)
                            sums.6.addProduct(SIMD8(repeating: dy[6]), v)
                            sums.7.addProduct(SIMD8(repeating: dy[7]), v)
                        }
                        dy += outWidth
                        xr += inWidth
                    }
                    let out = gradWeight + (g * outPerGroup + o0) * inPerGroup + block
                    add8(out, sums.0)
                    add8(out + inPerGroup, sums.1)
                    add8(out + 2 * inPerGroup, sums.2)
                    add8(out + 3 * inPerGroup, sums.3)
                    add8(out + 4 * inPerGroup, sums.4)
                    add8(out + 5 * inPerGroup, sums.5)
                    add8(out + 6 * inPerGroup, sums.6)
                    add8(out + 7 * inPerGroup, sums.7)
                }
            }
        }
    }
}
