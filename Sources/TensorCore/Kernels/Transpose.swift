// Swapping the last two dimensions, in tiles so that both sides stay in cache.

public enum TransposeKernel {
    /// dst[b, j, i] (=|+=) src[b, i, j] for src [batches, rows, columns].
    public static func transpose(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, batches: Int, rows: Int, columns: Int,
                                 accumulate: Bool) {
        let tile = 32
        for b in 0..<batches {
            let s = src + b * rows * columns, d = dst + b * rows * columns
            for i0 in stride(from: 0, to: rows, by: tile) {
                for j0 in stride(from: 0, to: columns, by: tile) {
                    for i in i0..<min(i0 + tile, rows) {
                        for j in j0..<min(j0 + tile, columns) {
                            if accumulate { d[j * rows + i] += s[i * columns + j] } else { d[j * rows + i] = s[i * columns + j] }
                        }
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// The last two dimensions swapped.
    public func transposed() -> Tensor {
        precondition(rank >= 2, "transposed() needs rank ≥ 2, got \(shape)")
        let m = shape[rank - 2], n = shape[rank - 1], batches = count / max(m * n, 1)
        var swapped = shape
        swapped.swapAt(rank - 2, rank - 1)
        return withUnsafeBufferPointer { src in
            Tensor(uninitialized: swapped) { dst in
                TransposeKernel.transpose(dst.baseAddress!, src.baseAddress!, batches: batches, rows: m, columns: n, accumulate: false)
            }
        }
    }
}
