// Softmax and log-softmax over the last dimension (max-subtracted, so large logits do not
// overflow), and cross-entropy with label smoothing fused with its log-softmax.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

public enum SoftmaxKernel {
    /// A row's maximum m and Σ_j exp(x_j − m), each exp written to `exps` when given (which may
    /// equal `x`): the overflow-safe core that softmax, log-softmax and cross-entropy share.
    @inline(__always)
    static func shiftedExpSum(_ x: UnsafePointer<Float>, _ cols: Int, exps: UnsafeMutablePointer<Float>?) -> (max: Float, sum: Float) {
        var m = -Float.infinity
        for j in 0..<cols { m = max(m, x[j]) }
        var sum: Float = 0
        if let exps {
            for j in 0..<cols { let e = expf(x[j] - m); exps[j] = e; sum += e }
        } else {
            for j in 0..<cols { sum += expf(x[j] - m) }
        }
        return (m, sum)
    }

    /// out[r, :] = softmax(x[r, :]). out, x: [rows, cols]; `out` may equal `x`.
    public static func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let yr = out + r * cols
            let inv = 1 / shiftedExpSum(x + r * cols, cols, exps: yr).sum
            for j in 0..<cols { yr[j] *= inv }
        }
    }

    /// dx += y ⊙ (dy − Σ_j dy_j·y_j), per row; y is the forward output.
    public static func backward(gradX: UnsafeMutablePointer<Float>, gradOut: UnsafePointer<Float>, y: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let yr = y + r * cols, gr = gradOut + r * cols, dr = gradX + r * cols
            var dot: Float = 0
            for j in 0..<cols { dot += gr[j] * yr[j] }
            for j in 0..<cols { dr[j] += yr[j] * (gr[j] - dot) }
        }
    }

    /// out[r, :] = x[r, :] − logΣexp(x[r, :]).
    public static func logForward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let xr = x + r * cols, yr = out + r * cols
            let (m, sum) = shiftedExpSum(xr, cols, exps: nil)
            let logZ = m + logf(sum)
            for j in 0..<cols { yr[j] = xr[j] - logZ }
        }
    }

    /// dx += dy − softmax · Σ_j dy_j, per row; y is the forward log-softmax output.
    public static func logBackward(gradX: UnsafeMutablePointer<Float>, gradOut: UnsafePointer<Float>, y: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let yr = y + r * cols, gr = gradOut + r * cols, dr = gradX + r * cols
            var sum: Float = 0
            for j in 0..<cols { sum += gr[j] }
            for j in 0..<cols { dr[j] += gr[j] - expf(yr[j]) * sum }
        }
    }
}

/// Mean cross-entropy over a batch with label smoothing ε, PyTorch's definition: the target is
/// (1 − ε)·onehot(label) + ε/C.
public enum CrossEntropyKernel {
    /// Returns the mean loss over rows and writes softmax(logits) into `probabilities` for the
    /// backward. logits, probabilities: [rows, classes]; labels: [rows], each in 0..<classes.
    public static func forward(
        probabilities: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, labels: UnsafePointer<Int>,
        rows: Int, classes: Int, smoothing: Float
    ) -> Float {
        var total: Double = 0
        let off = smoothing / Float(classes)
        for r in 0..<rows {
            let xr = logits + r * classes, pr = probabilities + r * classes
            let (m, sum) = SoftmaxKernel.shiftedExpSum(xr, classes, exps: pr)
            let logZ = m + logf(sum)
            let inv = 1 / sum
            var loss: Float = 0
            for j in 0..<classes {
                pr[j] *= inv
                let target = off + (j == labels[r] ? 1 - smoothing : 0)
                loss -= target * (xr[j] - logZ)
            }
            total += Double(loss)
        }
        return rows == 0 ? 0 : Float(total / Double(rows))
    }

    /// dlogits += seed · (softmax − target) / rows.
    public static func backward(
        gradLogits: UnsafeMutablePointer<Float>, seed: Float, probabilities: UnsafePointer<Float>,
        labels: UnsafePointer<Int>, rows: Int, classes: Int, smoothing: Float
    ) {
        let scale = seed / Float(max(rows, 1))
        let off = smoothing / Float(classes)
        for r in 0..<rows {
            let pr = probabilities + r * classes, dr = gradLogits + r * classes
            for j in 0..<classes {
                let target = off + (j == labels[r] ? 1 - smoothing : 0)
                dr[j] += scale * (pr[j] - target)
            }
        }
    }
}
