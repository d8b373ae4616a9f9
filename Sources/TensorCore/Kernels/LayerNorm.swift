// Layer normalisation over the last dimension, as in llm.c: the forward keeps each row's mean and
// reciprocal standard deviation for the backward. Statistics accumulate in Double-free Float with
// a two-pass variance (summed on 16 lanes), which matches PyTorch's fp32 results to ~1e-6.

public enum LayerNormKernel {
    /// out[r, :] = (x[r, :] − μ_r) · rstd_r · gain + bias, rstd_r = 1/√(var_r + eps).
    ///
    /// out, x: [rows, cols]; gain, bias: [cols] (nil: 1 and 0); mean, rstd: [rows] or nil when no
    /// backward follows (inference). `out` may equal `x`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?,
        x: UnsafePointer<Float>, gain: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
        rows: Int, cols: Int, eps: Float
    ) {
        let n = Float(cols)
        for r in 0..<rows {
            let xr = x + r * cols, yr = out + r * cols
            let mu = laneSum(xr, count: cols) / n
            let s = 1 / (squaredDeviationSum(xr, mu, cols) / n + eps).squareRoot()
            mean?[r] = mu
            rstd?[r] = s
            normalizeRow(yr, xr, mu, s, gain, bias, cols)
        }
    }

    /// Σ_j (x[j] − μ)², the variance's second pass, written out: as a closure given to laneSum it
    /// stayed a call per 16 lanes, which made the forward's statistics 4% of LoSA's step.
    @inline(__always)
    static func squaredDeviationSum(_ x: UnsafePointer<Float>, _ mu: Float, _ cols: Int) -> Float {
        var acc = SIMD16<Float>()
        var j = 0
        while j + 16 <= cols {
            let deviation = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self) - mu
            acc += deviation * deviation
            j += 16
        }
        var sum = laneTotal(acc)
        while j < cols { sum += (x[j] - mu) * (x[j] - mu); j += 1 }
        return sum
    }

    /// out[r, :] = (x[r, :] − mean_r) · rstd_r · gain + bias with the statistics a forward gave:
    /// the forward's output again, bit for bit, without its two passes over each row.
    public static func apply(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, gain: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for r in 0..<rows { normalizeRow(out + r * cols, x + r * cols, mean[r], rstd[r], gain, bias, cols) }
    }

    @inline(__always)
    static func normalizeRow(_ yr: UnsafeMutablePointer<Float>, _ xr: UnsafePointer<Float>, _ mu: Float, _ s: Float,
                             _ gain: UnsafePointer<Float>?, _ bias: UnsafePointer<Float>?, _ cols: Int) {
        switch (gain, bias) {
        case let (g?, b?):
            // In 16-lane steps by hand: out may equal x, and the compiler's overlap check then
            // takes its scalar loop.
            var j = 0
            while j + 16 <= cols {
                let v = UnsafeRawPointer(xr + j).loadUnaligned(as: SIMD16<Float>.self)
                let gain = UnsafeRawPointer(g + j).loadUnaligned(as: SIMD16<Float>.self)
                let shift = UnsafeRawPointer(b + j).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(yr + j).storeBytes(of: (v - mu) * s * gain + shift, as: SIMD16<Float>.self)
                j += 16
            }
            while j < cols { yr[j] = (xr[j] - mu) * s * g[j] + b[j]; j += 1 }
        case let (g?, nil): for j in 0..<cols { yr[j] = (xr[j] - mu) * s * g[j] }
        case let (nil, b?): for j in 0..<cols { yr[j] = (xr[j] - mu) * s + b[j] }
        case (nil, nil): for j in 0..<cols { yr[j] = (xr[j] - mu) * s }
        }
    }

    /// Adds dx, dgain, dbias (each may be nil) given dy, using the forward's mean and rstd.
    ///
    /// With x̂ = (x − μ)·rstd: dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)), dx̂ = dy · gain.
    public static func backward(
        gradX: UnsafeMutablePointer<Float>?, gradGain: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
        gradOut: UnsafePointer<Float>, x: UnsafePointer<Float>, gain: UnsafePointer<Float>?,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        let n = Float(cols)
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }
        @inline(__always) func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }
        for r in 0..<rows {
            let xr = x + r * cols, gr = gradOut + r * cols
            let mu = mean[r], s = rstd[r]
            // On 16 lanes, then the tail: a training step normalises every token several times, and
            // scalar sums are one chain of dependent adds.
            var sumDxhat = SIMD16<Float>(), sumDxhatXhat = SIMD16<Float>()
            var j = 0
            while j + 16 <= cols {
                let xhat = (load(xr + j) - mu) * s, g = load(gr + j)
                let dxhat = gain.map { g * load($0 + j) } ?? g
                sumDxhat += dxhat
                sumDxhatXhat += dxhat * xhat
                if let gradGain { store(load(gradGain + j) + g * xhat, gradGain + j) }
                if let gradBias { store(load(gradBias + j) + g, gradBias + j) }
                j += 16
            }
            var meanDxhat = laneTotal(sumDxhat), meanDxhatXhat = laneTotal(sumDxhatXhat)
            for j in j..<cols {
                let xhat = (xr[j] - mu) * s
                let dxhat = gr[j] * (gain?[j] ?? 1)
                meanDxhat += dxhat
                meanDxhatXhat += dxhat * xhat
                gradGain?[j] += gr[j] * xhat
                gradBias?[j] += gr[j]
            }
            meanDxhat /= n
            meanDxhatXhat /= n
            if let gradX {
                let dr = gradX + r * cols
                var j = 0
                while j + 16 <= cols {
                    let xhat = (load(xr + j) - mu) * s, g = load(gr + j)
                    let dxhat = gain.map { g * load($0 + j) } ?? g
                    store(load(dr + j) + s * (dxhat - meanDxhat - xhat * meanDxhatXhat), dr + j)
                    j += 16
                }
                for j in j..<cols {
                    let xhat = (xr[j] - mu) * s
                    let dxhat = gr[j] * (gain?[j] ?? 1)
                    dr[j] += s * (dxhat - meanDxhat - xhat * meanDxhatXhat)
                }
            }
        }
    }
}
