// Scaled-dot-product multi-head attention over packed sequences, forward and backward. Each query
// attends to the keys of its own example only, so packing replaces padding; an optional key mask
// hides further keys (padding kept inside a segment). Heads are column blocks of [T, H·dh] and
// are read in place through BLAS leading dimensions.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

public enum AttentionKernel {
    /// Segments up to this many tokens use loops instead of BLAS (measured crossover on 2 cores).
    static let smallSegment = 48

    /// out = softmax(q·kᵀ/√dh + mask)·v per example and head.
    ///
    /// out: [T, heads·dh]; q, k, v: T rows of heads·dh floats, `inputStride` floats apart (nil:
    /// heads·dh; an encoder's stacked query-key-value product gives 3·heads·dh); probabilities:
    /// `probabilityCount` floats (per example, per head, [n_b, n_b] row-major, examples in order,
    /// then room for the last rows' spill) kept for the backward, or nil for inference.
    /// keyMask: [T] (false = never attended) or nil. A query whose every key is masked gets a zero
    /// output.
    public static func forward(
        out: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, inputStride: Int? = nil,
        segments: Segments, heads: Int, headSize: Int, keyMask: UnsafePointer<Bool>?
    ) {
        let width = heads * headSize, stride = inputStride ?? width
        let scale = 1 / Float(headSize).squareRoot()
        let longest = segments.lengths.max() ?? 0
        // Keys of one head transposed, [dh, padded n], zero past n, for the short-segment loops.
        let keysT = UnsafeMutablePointer<Float>.allocate(capacity: headSize * ((min(longest, smallSegment) + 15) / 16 * 16))
        defer { keysT.deallocate() }
        var scratch = probabilities == nil ? [Float](repeating: 0, count: longest * longest + spill) : []
        var probabilityOffset = 0
        scratch.withUnsafeMutableBufferPointer { scratchBuffer in
            for b in 0..<segments.count {
                let start = segments.offsets[b], n = segments.offsets[b + 1] - start
                if n == 0 { continue }
                for h in 0..<heads {
                    let p = probabilities.map { $0 + probabilityOffset } ?? scratchBuffer.baseAddress!
                    probabilityOffset += n * n
                    let column = start * width + h * headSize, inputColumn = start * stride + h * headSize
                    if n <= smallSegment {
                        // Short sequences: loops beat two BLAS calls per head, whose fixed cost
                        // (and thread wake-ups) dominates products this small. Scores run on 16
                        // keys at a time against the transposed keys, with no lane sums.
                        if n <= 16 && keyMask == nil {
                            shortScoresSoftmax(p, q: q + inputColumn, keys: k + inputColumn, stride: stride, n: n,
                                               headSize: headSize, scale: scale, keysT: keysT)
                        } else {
                            scores(p, q: q + inputColumn, keys: k + inputColumn, stride: stride, n: n, headSize: headSize,
                                   scale: scale, keysT: keysT)
                            maskedSoftmaxRows(p, n: n, keyMask: keyMask.map { $0 + start })
                        }
                        for i in 0..<n {
                            weightedSum(out + column + i * width, weights: p + i * n, rows: v + inputColumn, stride: stride,
                                        count: n, width: headSize)
                        }
                        continue
                    }
                    // p[n, n] = q_h · k_hᵀ · scale
                    BLAS.gemm(transposeA: false, transposeB: true, m: n, n: n, k: headSize, alpha: scale,
                              a: q + inputColumn, lda: stride, b: k + inputColumn, ldb: stride, c: p)
                    maskedSoftmaxRows(p, n: n, keyMask: keyMask.map { $0 + start })
                    // out_h[n, dh] = p · v_h
                    BLAS.gemm(transposeA: false, transposeB: false, m: n, n: headSize, k: n,
                              a: p, b: v + inputColumn, ldb: stride, c: out + column, ldc: width)
                }
            }
        }
    }

    /// p[i, j] = q_i · k_j · scale for one head of one segment (n ≤ smallSegment): the keys are
    /// copied transposed into `keysT` ([headSize, n rounded up to 16], zero past n) so that each
    /// query's scores are 16-lane products summed over d.
    @inline(__always)
    static func scores(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, keys: UnsafePointer<Float>, stride: Int,
                       n: Int, headSize: Int, scale: Float, keysT: UnsafeMutablePointer<Float>) {
        let padded = (n + 15) / 16 * 16
        transposeHead(keys, stride: stride, n: n, headSize: headSize, padded: padded, into: keysT)
        for i in 0..<n {
            var chunk = 0
            while chunk < padded {
                let acc = scoreLanes(q + i * stride, keysT: keysT, padded: padded, chunk: chunk, headSize: headSize, scale: scale)
                for lane in 0..<min(16, n - chunk) { p[i * n + chunk + lane] = acc[lane] }
                chunk += 16
            }
        }
    }

    /// keysT[d, j] = keys[j·stride + d] for j < n, zero from n to `padded`: one head's keys (or
    /// values) with the tokens along the rows, for 16-lane products over tokens.
    @inline(__always)
    static func transposeHead(_ keys: UnsafePointer<Float>, stride: Int, n: Int, headSize: Int, padded: Int,
                              into keysT: UnsafeMutablePointer<Float>) {
        for d in 0..<headSize {
            let row = keysT + d * padded
            for j in 0..<n { row[j] = keys[j * stride + d] }
            for j in n..<padded { row[j] = 0 }
        }
    }

    /// One query's scores against the 16 keys from `chunk` of the transposed keys, times `scale`.
    @inline(__always)
    static func scoreLanes(_ qi: UnsafePointer<Float>, keysT: UnsafePointer<Float>, padded: Int, chunk: Int, headSize: Int,
                           scale: Float) -> SIMD16<Float> {
        var acc = SIMD16<Float>()
        for d in 0..<headSize {
            acc += SIMD16(repeating: qi[d]) * UnsafeRawPointer(keysT + d * padded + chunk).loadUnaligned(as: SIMD16<Float>.self)
        }
        return acc * scale
    }

    /// The softmax of the first n ≤ 16 lanes; the lanes past n come out 0.
    @inline(__always)
    static func softmaxLanes(_ x: SIMD16<Float>, n: Int) -> SIMD16<Float> {
        let past = laneNumbers .>= Float(n)
        var x = x
        x.replace(with: -.infinity, where: past)
        var e = fastExp(x - largestLane(x))
        e.replace(with: 0, where: past)
        return e * (1 / laneTotal(e))
    }

    /// Floats written past a block of probabilities by `shortScoresSoftmax`'s last row.
    static let spill = 16

    /// `scores` then the softmax of each row, for n ≤ 16 keys and no mask: a query's 16 scores
    /// stay in registers through the softmax (stored as scores and read back, they stalled on
    /// store forwarding, a tenth of LST's attention) and are stored once, 16 lanes wide. The
    /// lanes past n spill onto the next rows, which are stored after, and past the last row
    /// into the next block or the `spill` floats after the last block, written or unused later.
    @inline(__always)
    static func shortScoresSoftmax(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                                   stride: Int, n: Int, headSize: Int, scale: Float, keysT: UnsafeMutablePointer<Float>) {
        transposeHead(keys, stride: stride, n: n, headSize: headSize, padded: 16, into: keysT)
        for i in 0..<n {
            let scores = scoreLanes(q + i * stride, keysT: keysT, padded: 16, chunk: 0, headSize: headSize, scale: scale)
            UnsafeMutableRawPointer(p + i * n).storeBytes(of: softmaxLanes(scores, n: n), as: SIMD16<Float>.self)
        }
    }

    /// out[0..<width] = Σ_j weights[j·weightStride] · rows[j·stride ..< j·stride + width] (times
    /// `scale`, added to `out` when `accumulate`), each lane summed in j order. What is left of
    /// the width below 16 (a side network's heads of 4 or 8) runs on 4 lanes rather than one.
    @inline(__always)
    static func weightedSum(_ out: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>, weightStride: Int = 1,
                            rows: UnsafePointer<Float>, stride: Int, count: Int, width: Int,
                            scale: Float = 1, accumulate: Bool = false) {
        var d = 0
        while d + 16 <= width {
            var acc = SIMD16<Float>()
            for j in 0..<count {
                acc += SIMD16(repeating: weights[j * weightStride]) * UnsafeRawPointer(rows + j * stride + d).loadUnaligned(as: SIMD16<Float>.self)
            }
            acc *= scale
            if accumulate { acc += UnsafeRawPointer(out + d).loadUnaligned(as: SIMD16<Float>.self) }
            UnsafeMutableRawPointer(out + d).storeBytes(of: acc, as: SIMD16<Float>.self)
            d += 16
        }
        // The same loop on 4 lanes, written out: written once, generic over the lane count, it
        // stayed a call of its own (5% of LST's time in a profile); written out, it is inlined.
        while d + 4 <= width {
            var acc = SIMD4<Float>()
            for j in 0..<count {
                acc += SIMD4(repeating: weights[j * weightStride]) * UnsafeRawPointer(rows + j * stride + d).loadUnaligned(as: SIMD4<Float>.self)
            }
            acc *= scale
            if accumulate { acc += UnsafeRawPointer(out + d).loadUnaligned(as: SIMD4<Float>.self) }
            UnsafeMutableRawPointer(out + d).storeBytes(of: acc, as: SIMD4<Float>.self)
            d += 4
        }
        while d < width {
            var acc: Float = 0
            for j in 0..<count { acc += weights[j * weightStride] * rows[j * stride + d] }
            out[d] = accumulate ? out[d] + scale * acc : scale * acc
            d += 1
        }
    }

    /// Row-wise softmax of p [n, n] in place; masked keys get probability 0, a fully masked row all 0.
    /// Without a mask, 16 keys at a time through `fastExp` (libm's expf, one key at a time, was 4% of
    /// LST's step and the mask tests another 3%).
    static func maskedSoftmaxRows(_ p: UnsafeMutablePointer<Float>, n: Int, keyMask: UnsafePointer<Bool>?) {
        guard let keyMask else {
            for i in 0..<n { softmaxRow(p + i * n, n: n) }
            return
        }
        for i in 0..<n {
            let row = p + i * n
            var m = -Float.infinity
            for j in 0..<n where keyMask[j] { m = max(m, row[j]) }
            if m == -Float.infinity {
                for j in 0..<n { row[j] = 0 }
                continue
            }
            var sum: Float = 0
            for j in 0..<n {
                if keyMask[j] {
                    let e = expf(row[j] - m)
                    row[j] = e
                    sum += e
                } else {
                    row[j] = 0
                }
            }
            let inv = 1 / sum
            for j in 0..<n { row[j] *= inv }
        }
    }

    /// Softmax of one unmasked row of n scores in place. A row of 16 or more runs wholly on 16
    /// lanes: its last, partial chunk is the row's last 16 scores, overlapping the chunk before,
    /// whose lanes it writes with the same values and leaves out of the sum.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, n: Int) {
        typealias Lanes = SIMD16<Float>
        func load(_ j: Int) -> Lanes { UnsafeRawPointer(row + j).loadUnaligned(as: Lanes.self) }
        func store(_ x: Lanes, _ j: Int) { UnsafeMutableRawPointer(row + j).storeBytes(of: x, as: Lanes.self) }
        guard n >= 16 else { return shortSoftmaxRow(row, n: n) }
        let whole = n / 16 * 16, tail = n - whole
        var top = load(0)
        for j in stride(from: 16, to: whole, by: 16) {
            let x = load(j)
            top.replace(with: x, where: x .> top)
        }
        if tail > 0 {
            let x = load(n - 16)
            top.replace(with: x, where: x .> top)
        }
        let m = largestLane(top)
        let last = tail > 0 ? fastExp(load(n - 16) - m) : Lanes()
        var sums = Lanes()
        for j in stride(from: 0, to: whole, by: 16) {
            let e = fastExp(load(j) - m)
            store(e, j)
            sums += e
        }
        if tail > 0 {
            var fresh = last
            fresh.replace(with: 0, where: laneNumbers .< Float(16 - tail))
            sums += fresh
        }
        let inv = 1 / laneTotal(sums)
        for j in stride(from: 0, to: whole, by: 16) { store(load(j) * inv, j) }
        if tail > 0 { store(last * inv, n - 16) }
    }

    /// 0 to 15, as floats: a comparison of Int32 lanes went one lane at a time through memory.
    static let laneNumbers = SIMD16<Float>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

    /// Softmax of a row of fewer than 16 scores, through the same exp, padded with −∞.
    static func shortSoftmaxRow(_ row: UnsafeMutablePointer<Float>, n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { buffer in
            let t = buffer.baseAddress!
            t.initialize(repeating: -.infinity, count: 16)
            t.update(from: row, count: n)
            let x = UnsafeRawPointer(t).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(t).storeBytes(of: softmaxLanes(x, n: n), as: SIMD16<Float>.self)
            row.update(from: t, count: n)
        }
    }

    /// The largest of 16 lanes, by halving (the standard library's reductions go one lane at a
    /// time through memory, which cost more than a short row's exps).
    @inline(__always)
    static func largestLane(_ v: SIMD16<Float>) -> Float {
        var a = v.lowHalf
        a.replace(with: v.highHalf, where: v.highHalf .> a)
        var b = a.lowHalf
        b.replace(with: a.highHalf, where: a.highHalf .> b)
        return max(max(b[0], b[1]), max(b[2], b[3]))
    }

    /// Adds dq, dk, dv (each [T, heads·dh], any may be nil) given dout, using the forward's
    /// probabilities. `scratch` needs 2·max n_b² floats.
    ///
    /// dv = pᵀ·dout; dp = dout·vᵀ; ds = p ⊙ (dp − rowsum(dp ⊙ p)); dq = ds·k/√dh; dk = dsᵀ·q/√dh.
    public static func backward(
        gradQ: UnsafeMutablePointer<Float>?, gradK: UnsafeMutablePointer<Float>?, gradV: UnsafeMutablePointer<Float>?,
        gradOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        probabilities: UnsafePointer<Float>, segments: Segments, heads: Int, headSize: Int
    ) {
        let width = heads * headSize
        let scale = 1 / Float(headSize).squareRoot()
        let longest = segments.lengths.max() ?? 0
        var dsBuffer = [Float](repeating: 0, count: longest * longest)
        // Values of one head transposed, for the short-segment loops (as the forward's keys).
        // (and room for `tinyHeadBackward`'s keys, values and sums, transposed).
        let valuesT = UnsafeMutablePointer<Float>.allocate(capacity: max(headSize * ((min(longest, smallSegment) + 15) / 16 * 16),
                                                                         4 * tinyHead * 16))
        defer { valuesT.deallocate() }
        var probabilityOffset = 0
        dsBuffer.withUnsafeMutableBufferPointer { dsPointer in
            let ds = dsPointer.baseAddress!
            for b in 0..<segments.count {
                let start = segments.offsets[b], n = segments.offsets[b + 1] - start
                if n == 0 { continue }
                for h in 0..<heads {
                    let p = probabilities + probabilityOffset
                    probabilityOffset += n * n
                    let column = start * width + h * headSize
                    if n <= 16 && headSize <= tinyHead {
                        tinyHeadBackward(gradQ: gradQ.map { $0 + column }, gradK: gradK.map { $0 + column },
                                         gradV: gradV.map { $0 + column }, gradOut: gradOut + column, q: q + column, k: k + column,
                                         v: v + column, p: p, n: n, width: width, headSize: headSize, scale: scale,
                                         transposed: valuesT)
                        continue
                    }
                    if n <= smallSegment {
                        // Short sequences: loops, as in the forward; four BLAS calls per head cost
                        // more than their products (LST's heads are 4 wide).
                        shortBackward(gradQ: gradQ.map { $0 + column }, gradK: gradK.map { $0 + column }, gradV: gradV.map { $0 + column },
                                      gradOut: gradOut + column, q: q + column, k: k + column, v: v + column, p: p, ds: ds,
                                      n: n, width: width, headSize: headSize, scale: scale, valuesT: valuesT)
                        continue
                    }
                    if let gradV {
                        BLAS.gemm(transposeA: true, transposeB: false, m: n, n: headSize, k: n,
                                  a: p, b: gradOut + column, ldb: width, beta: 1, c: gradV + column, ldc: width)
                    }
                    guard gradQ != nil || gradK != nil else { continue }
                    // ds = dout · vᵀ, then the softmax backward in place.
                    BLAS.gemm(transposeA: false, transposeB: true, m: n, n: n, k: headSize,
                              a: gradOut + column, lda: width, b: v + column, ldb: width, c: ds)
                    for i in 0..<n {
                        let pr = p + i * n, dr = ds + i * n
                        var dot: Float = 0
                        for j in 0..<n { dot += pr[j] * dr[j] }
                        for j in 0..<n { dr[j] = pr[j] * (dr[j] - dot) }
                    }
                    if let gradQ {
                        BLAS.gemm(transposeA: false, transposeB: false, m: n, n: headSize, k: n, alpha: scale,
                                  a: ds, b: k + column, ldb: width, beta: 1, c: gradQ + column, ldc: width)
                    }
                    if let gradK {
                        BLAS.gemm(transposeA: true, transposeB: false, m: n, n: headSize, k: n, alpha: scale,
                                  a: ds, b: q + column, ldb: width, beta: 1, c: gradK + column, ldc: width)
                    }
                }
            }
        }
    }

    /// Heads up to this wide, over up to 16 keys, take `tinyHeadBackward`.
    static let tinyHead = 8

    /// The backward of one head (headSize ≤ tinyHead) of one segment of n ≤ 16 tokens, every
    /// pointer at the segment's first row of the head's columns (rows `width` apart), with the 16
    /// keys on the lanes: per query row i, dp_i = dout_i·vᵀ, ds_i = p_i ⊙ (dp_i − ⟨p_i, dp_i⟩),
    /// dq_i = scale·ds_i·k, and over the rows dvᵀ = Σ_i dout_iᵀ·p_i, dkᵀ = scale·Σ_i q_iᵀ·ds_i.
    /// A head of 4 (LST's) ran `shortBackward` as n² four-lane steps per product.
    /// `transposed` holds 4·tinyHead·16 floats. p's rows are read 16 wide: past a block's end
    /// are the next block's or the forward's spill.
    @inline(__always)
    static func tinyHeadBackward(
        gradQ: UnsafeMutablePointer<Float>?, gradK: UnsafeMutablePointer<Float>?, gradV: UnsafeMutablePointer<Float>?,
        gradOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        p: UnsafePointer<Float>, n: Int, width: Int, headSize: Int, scale: Float, transposed: UnsafeMutablePointer<Float>
    ) {
        typealias Lanes = SIMD16<Float>
        func load(_ x: UnsafePointer<Float>) -> Lanes { UnsafeRawPointer(x).loadUnaligned(as: Lanes.self) }
        func store(_ x: Lanes, _ to: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(to).storeBytes(of: x, as: Lanes.self) }
        // [headSize, 16] each: keys and values with the tokens on the lanes (zero past n), and the
        // sums of dkᵀ and dvᵀ.
        let (keysT, valuesT) = (transposed, transposed + tinyHead * 16)
        let (sumK, sumV) = (transposed + 2 * tinyHead * 16, transposed + 3 * tinyHead * 16)
        transposeHead(k, stride: width, n: n, headSize: headSize, padded: 16, into: keysT)
        transposeHead(v, stride: width, n: n, headSize: headSize, padded: 16, into: valuesT)
        for d in 0..<headSize {
            store(Lanes(), sumK + d * 16)
            store(Lanes(), sumV + d * 16)
        }
        let past = laneNumbers .>= Float(n)
        let needScores = gradQ != nil || gradK != nil
        for i in 0..<n {
            var pi = load(p + i * n)
            pi.replace(with: 0, where: past)
            let douti = gradOut + i * width
            if gradV != nil {
                for d in 0..<headSize { store(load(sumV + d * 16) + Lanes(repeating: douti[d]) * pi, sumV + d * 16) }
            }
            guard needScores else { continue }
            var dp = Lanes()
            for d in 0..<headSize { dp += Lanes(repeating: douti[d]) * load(valuesT + d * 16) }
            let ds = pi * (dp - laneTotal(pi * dp))
            if let gradQ {
                for d in 0..<headSize { gradQ[i * width + d] += scale * laneTotal(ds * load(keysT + d * 16)) }
            }
            if gradK != nil {
                let qi = q + i * width
                for d in 0..<headSize { store(load(sumK + d * 16) + Lanes(repeating: qi[d]) * ds, sumK + d * 16) }
            }
        }
        for j in 0..<n {
            for d in 0..<headSize {
                gradV?[j * width + d] += sumV[d * 16 + j]
                gradK?[j * width + d] += scale * sumK[d * 16 + j]
            }
        }
    }

    /// The backward of one head of one segment of n ≤ smallSegment tokens, every pointer at the
    /// segment's first row of the head's columns (rows `width` apart); `ds` holds n² floats.
    @inline(__always)
    static func shortBackward(
        gradQ: UnsafeMutablePointer<Float>?, gradK: UnsafeMutablePointer<Float>?, gradV: UnsafeMutablePointer<Float>?,
        gradOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        p: UnsafePointer<Float>, ds: UnsafeMutablePointer<Float>, n: Int, width: Int, headSize: Int, scale: Float,
        valuesT: UnsafeMutablePointer<Float>
    ) {
        if let gradV {
            // dv_j += Σ_i p[i, j] · dout_i: column j of p as the weights.
            for j in 0..<n {
                weightedSum(gradV + j * width, weights: p + j, weightStride: n, rows: gradOut, stride: width,
                            count: n, width: headSize, accumulate: true)
            }
        }
        guard gradQ != nil || gradK != nil else { return }
        // ds = dout · vᵀ (the forward's scores, values for keys), then the softmax backward in place.
        scores(ds, q: gradOut, keys: v, stride: width, n: n, headSize: headSize, scale: 1, keysT: valuesT)
        for i in 0..<n {
            let pr = p + i * n, dr = ds + i * n
            var dot: Float = 0
            for j in 0..<n { dot += pr[j] * dr[j] }
            for j in 0..<n { dr[j] = pr[j] * (dr[j] - dot) }
        }
        if let gradQ {
            for i in 0..<n {
                weightedSum(gradQ + i * width, weights: ds + i * n, rows: k, stride: width, count: n, width: headSize,
                            scale: scale, accumulate: true)
            }
        }
        if let gradK {
            for j in 0..<n {
                weightedSum(gradK + j * width, weights: ds + j, weightStride: n, rows: q, stride: width, count: n, width: headSize,
                            scale: scale, accumulate: true)
            }
        }
    }

    /// Floats needed for the probabilities of a batch, with room for the forward's spill.
    public static func probabilityCount(_ segments: Segments, heads: Int) -> Int {
        segments.lengths.reduce(0) { $0 + $1 * $1 } * heads + spill
    }
}
