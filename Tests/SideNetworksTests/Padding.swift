// The padded form of a batch, as the papers write LoSA's token mixing and UniPT's interaction:
// the reference their per-example nodes are tested against.
import Autodiff
import TensorCore

/// The padded view [B·N, ·] of packed token rows: example b's token p sits at row b·N + p, and
/// the rows past its length are zero.
struct Padding: Sendable {
    let examples: Int
    /// Rows per example (N).
    let length: Int
    /// For each padded row, its packed row, or `packedRows` (an appended zero row) when padding.
    let sourceRows: [Int]
    /// For each packed row, its padded row.
    let paddedRows: [Int]
    /// true for real rows of the padded layout.
    let mask: [Bool]
    let segments: Segments

    init(_ segments: Segments, length: Int) {
        precondition(segments.lengths.allSatisfy { $0 <= length }, "a sequence of \(segments.lengths.max() ?? 0) rows is longer than \(length)")
        examples = segments.count
        self.length = length
        self.segments = segments
        var source = [Int](repeating: segments.totalRows, count: segments.count * length)
        var padded = [Int](repeating: 0, count: segments.totalRows)
        var mask = [Bool](repeating: false, count: segments.count * length)
        for b in 0..<segments.count {
            for (p, row) in segments.range(b).enumerated() {
                source[b * length + p] = row
                padded[row] = b * length + p
                mask[b * length + p] = true
            }
        }
        sourceRows = source
        paddedRows = padded
        self.mask = mask
    }

    /// Packed [T, W] → padded [B·N, W] with zero rows for padding (differentiable).
    func pad(_ x: Variable) -> Variable {
        let width = x.shape[1]
        let zero = x.tape.constant(Tensor(zeros: [1, width]))
        return Variable.concat([x, zero], axis: 0).gather(rows: sourceRows)
    }

    /// Padded [B·N, W] → packed [T, W] (differentiable).
    func unpad(_ x: Variable) -> Variable {
        x.gather(rows: paddedRows)
    }
}
