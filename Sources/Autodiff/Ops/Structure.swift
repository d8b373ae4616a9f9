// Differentiable structural ops: concat, split, slice, gather, transpose, pooling over packed
// sequences. Pure data movement, so each backward is the matching scatter.
import TensorCore

extension Variable {
    /// Joins variables along `axis`; all other dimensions must agree.
    public static func concat(_ parts: [Variable], axis: Int) -> Variable {
        precondition(!parts.isEmpty, "concat of nothing")
        let first = parts[0].value
        let axis = axis < 0 ? first.rank + axis : axis
        for p in parts {
            var a = p.shape, b = first.shape
            precondition(a.count == b.count && axis < a.count, "concat: shapes \(p.shape) and \(first.shape) on axis \(axis)")
            a[axis] = 0; b[axis] = 0
            precondition(a == b, "concat: shapes \(p.shape) and \(first.shape) differ off axis \(axis)")
        }
        let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
        let widths = parts.map { $0.shape[axis] * inner }
        let total = widths.reduce(0, +)
        var shape = first.shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        var out = [Float](repeating: 0, count: outer * total)
        var column = 0
        for (p, w) in zip(parts, widths) {
            let src = p.value.scalars
            for o in 0..<outer { for j in 0..<w { out[o * total + column + j] = src[o * w + j] } }
            column += w
        }
        let tape = parts[0].tape
        let parts = parts.map(\.handle)
        return tape.record(Tensor(shape: shape, scalars: out), inputs: parts) { g, tape in
            var column = 0
            for (p, w) in zip(parts, widths) {
                let start = column
                tape.accumulate(p) { dx in
                    for o in 0..<outer { for j in 0..<w { dx[o * w + j] += g.scalars[o * total + start + j] } }
                }
                column += w
            }
        }
    }

    /// Elements `range` along `axis`.
    public func slice(_ range: Range<Int>, axis: Int) -> Variable {
        let x = value
        let axis = axis < 0 ? x.rank + axis : axis
        precondition(axis < x.rank && range.lowerBound >= 0 && range.upperBound <= x.shape[axis],
                     "slice \(range) of axis \(axis) of shape \(x.shape)")
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        let full = x.shape[axis] * inner, w = range.count * inner, start = range.lowerBound * inner
        var shape = x.shape
        shape[axis] = range.count
        var out = [Float](repeating: 0, count: outer * w)
        for o in 0..<outer { for j in 0..<w { out[o * w + j] = x.scalars[o * full + start + j] } }
        let input = handle
        return tape.record(Tensor(shape: shape, scalars: out), inputs: [input]) { g, tape in
            tape.accumulate(input) { dx in
                for o in 0..<outer { for j in 0..<w { dx[o * full + start + j] += g.scalars[o * w + j] } }
            }
        }
    }

    /// Splits along `axis` into parts of the given sizes (which must add up to the dimension).
    public func split(_ sizes: [Int], axis: Int) -> [Variable] {
        let axis = axis < 0 ? value.rank + axis : axis
        precondition(sizes.reduce(0, +) == value.shape[axis], "split \(sizes) of axis \(axis) of shape \(value.shape)")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(start..<(start + size), axis: axis)
        }
    }

    /// Rows (first-axis entries) picked by index; repeats allowed; the backward scatter-adds.
    public func gather(rows indices: [Int]) -> Variable {
        let x = value
        let rowCount = x.shape.first ?? 1
        let width = x.count / max(rowCount, 1)
        precondition(indices.allSatisfy { $0 >= 0 && $0 < rowCount }, "gather: an index is outside 0..<\(rowCount)")
        var out = Tensor(zeros: [indices.count] + x.shape.dropFirst())
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for (r, i) in indices.enumerated() {
                    (dst.baseAddress! + r * width).update(from: src.baseAddress! + i * width, count: width)
                }
            }
        }
        let input = handle
        return tape.record(out, inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { pg in
                tape.accumulate(input) { dx in
                    for (r, i) in indices.enumerated() {
                        let d = dx.baseAddress! + i * width, s = pg.baseAddress! + r * width
                        for j in 0..<width { d[j] += s[j] }
                    }
                }
            }
        }
    }

    /// Swaps the last two dimensions.
    public func transposed() -> Variable {
        let x = value, out = x.transposed()
        let m = x.shape[x.rank - 2], n = x.shape[x.rank - 1], batches = x.count / max(m * n, 1)
        let input = handle
        return tape.record(out, inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { pg in
                tape.accumulate(input) { dx in
                    TransposeKernel.transpose(dx.baseAddress!, pg.baseAddress!, batches: batches, rows: n, columns: m, accumulate: true)
                }
            }
        }
    }

    /// How to pool the tokens of each example.
    public enum Pooling: Sendable { case sum, mean }

    /// Pools packed tokens [T, D] into one row per example [B, D], over the tokens whose
    /// `tokenMask` entry is true (all when nil). The mean of no tokens is a zero row.
    public func pooled(_ pooling: Pooling, segments: Segments, tokenMask: [Bool]? = nil) -> Variable {
        let x = value
        precondition(x.rank == 2 && x.shape[0] == segments.totalRows, "pooled: input \(x.shape) for \(segments.totalRows) packed rows")
        precondition(tokenMask == nil || tokenMask!.count == segments.totalRows, "pooled: token mask length differs from rows")
        let width = x.shape[1]
        var tokenWeights = [Float](repeating: 0, count: segments.totalRows)
        for b in 0..<segments.count {
            let range = segments.range(b)
            let counted = tokenMask.map { mask in range.reduce(0) { $0 + (mask[$1] ? 1 : 0) } } ?? range.count
            let w: Float = pooling == .sum ? 1 : (counted == 0 ? 0 : 1 / Float(counted))
            for t in range where tokenMask?[t] ?? true { tokenWeights[t] = w }
        }
        let weights = tokenWeights
        // Through pointers: indexed arrays kept the loops scalar, with a bounds check per element
        // (a tenth of a linear probe's epoch).
        let out = Tensor(uninitialized: [segments.count, width]) { o in
            guard let po = o.baseAddress else { return }
            po.initialize(repeating: 0, count: o.count)
            x.withUnsafeBufferPointer { px in
                for b in 0..<segments.count {
                    let row = po + b * width
                    for t in segments.range(b) where weights[t] != 0 {
                        let w = weights[t], token = px.baseAddress! + t * width
                        for j in 0..<width { row[j] += w * token[j] }
                    }
                }
            }
        }
        let input = handle
        return tape.record(out, inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { pg in
                tape.accumulate(input) { dx in
                    guard let pdx = dx.baseAddress, let pg = pg.baseAddress else { return }
                    for b in 0..<segments.count {
                        let row = pg + b * width
                        for t in segments.range(b) where weights[t] != 0 {
                            let w = weights[t], token = pdx + t * width
                            for j in 0..<width { token[j] += w * row[j] }
                        }
                    }
                }
            }
        }
    }
}
