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
    /// Σ_b heads·n_b² floats (per example, per head, [n_b, n_b] row-major, examples in order) kept
    /// for the backward, or nil for inference (then `scratch` of max n_b² floats is used).
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
        var scratch = probabilities == nil ? [Float](repeating: 0, count: longest * longest) : []
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
                        scores(p, q: q + inputColumn, keys: k + inputColumn, stride: stride, n: n, headSize: headSize,
                               scale: scale, keysT: keysT)
                        maskedSoftmaxRows(p, n: n, keyMask: keyMask.map { $0 + start })
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
        for d in 0..<headSize {
            let row = keysT + d * padded
            for j in 0..<n { row[j] = keys[j * stride + d] }
            for j in n..<padded { row[j] = 0 }
        }
        for i in 0..<n {
            let qi = q + i * stride
            var chunk = 0
            while chunk < padded {
                var acc = SIMD16<Float>()
                for d in 0..<headSize {
                    acc += SIMD16(repeating: qi[d]) * UnsafeRawPointer(keysT + d * padded + chunk).loadUnaligned(as: SIMD16<Float>.self)
                }
                acc *= scale
                for lane in 0..<min(16, n - chunk) { p[i * n + chunk + lane] = acc[lane] }
                chunk += 16
            }
        }
    }

    /// out[0..<width] = Σ_j weights[j] · rows[j·stride ..< j·stride + width], each lane summed in j
    /// order; `out` is written once, not read.
    @inline(__always)
    static func weightedSum(_ out: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>, rows: UnsafePointer<Float>,
                            stride: Int, count: Int, width: Int) {
        var d = 0
        while d + 16 <= width {
            var acc = SIMD16<Float>()
            for j in 0..<count {
                acc += SIMD16(repeating: weights[j]) * UnsafeRawPointer(rows + j * stride + d).loadUnaligned(as: SIMD16<Float>.self)
            }
            UnsafeMutableRawPointer(out + d).storeBytes(of: acc, as: SIMD16<Float>.self)
            d += 16
        }
        while d < width {
            var acc: Float = 0
            for j in 0..<count { acc += weights[j] * rows[j * stride + d] }
            out[d] = acc
            d += 1
        }
    }

    /// Row-wise softmax of p [n, n] in place; masked keys get probability 0, a fully masked row all 0.
    static func maskedSoftmaxRows(_ p: UnsafeMutablePointer<Float>, n: Int, keyMask: UnsafePointer<Bool>?) {
        for i in 0..<n {
            let row = p + i * n
            var m = -Float.infinity
            for j in 0..<n where keyMask?[j] ?? true { m = max(m, row[j]) }
            if m == -Float.infinity {
                for j in 0..<n { row[j] = 0 }
                continue
            }
            var sum: Float = 0
            for j in 0..<n {
                if keyMask?[j] ?? true {
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

    /// Floats needed for the probabilities of a batch.
    public static func probabilityCount(_ segments: Segments, heads: Int) -> Int {
        segments.lengths.reduce(0) { $0 + $1 * $1 } * heads
    }
}
