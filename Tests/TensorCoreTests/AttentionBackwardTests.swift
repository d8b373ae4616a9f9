// Attention's backward, short-segment loops and BLAS path alike, against the gradients written out
// per element in Double: dv = pᵀ·dout, ds = p ⊙ (dout·vᵀ − rowsum), dq = ds·k/√dh, dk = dsᵀ·q/√dh.
import Testing
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

@Suite struct AttentionBackwardTests {
    @Test(arguments: [4, 20])
    func backwardMatchesTheGradientsWrittenOut(headSize: Int) {
        let lengths = [1, 7, 16, 23, 48, 49, 61], heads = 2, width = heads * headSize
        let segments = Segments(lengths: lengths), rows = lengths.reduce(0, +)
        var rng = SeededGenerator(seed: 31)
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in rng.nextNormal() } }
        let q = random(rows * width), k = random(rows * width), v = random(rows * width), gradOut = random(rows * width)
        // The kernel adds into what the gradients already hold.
        let start = random(rows * width)
        var expected = [[Double]](repeating: start.map(Double.init), count: 3)
        let scale = 1 / Double(headSize).squareRoot()
        for b in 0..<segments.count {
            let range = segments.range(b)
            for h in 0..<heads {
                func at(_ x: [Float], _ row: Int, _ d: Int) -> Double { Double(x[row * width + h * headSize + d]) }
                func dot(_ x: [Float], _ i: Int, _ y: [Float], _ j: Int) -> Double {
                    (0..<headSize).reduce(0.0) { $0 + at(x, i, $1) * at(y, j, $1) }
                }
                var p: [Int: [Int: Double]] = [:]
                for i in range {
                    let scores = range.map { dot(q, i, k, $0) * scale }
                    let top = scores.max()!, e = scores.map { exp($0 - top) }, z = e.reduce(0, +)
                    p[i] = Dictionary(uniqueKeysWithValues: zip(range, e.map { $0 / z }))
                }
                for i in range {
                    let dp = range.map { dot(gradOut, i, v, $0) }
                    let rowSum = zip(range, dp).reduce(0.0) { $0 + p[i]![$1.0]! * $1.1 }
                    let ds = Dictionary(uniqueKeysWithValues: zip(range, dp).map { ($0.0, p[i]![$0.0]! * ($0.1 - rowSum)) })
                    for j in range {
                        for d in 0..<headSize {
                            let column = j * width + h * headSize + d
                            expected[2][column] += p[i]![j]! * at(gradOut, i, d)
                            expected[0][i * width + h * headSize + d] += scale * ds[j]! * at(k, j, d)
                            expected[1][column] += scale * ds[j]! * at(q, i, d)
                        }
                    }
                }
            }
        }
        var probabilities = [Float](repeating: 0, count: AttentionKernel.probabilityCount(segments, heads: heads))
        var out = [Float](repeating: 0, count: rows * width)
        var (gradQ, gradK, gradV) = (start, start, start)
        AttentionKernel.forward(out: &out, probabilities: &probabilities, q: q, k: k, v: v,
                                segments: segments, heads: heads, headSize: headSize, keyMask: nil)
        AttentionKernel.backward(gradQ: &gradQ, gradK: &gradK, gradV: &gradV, gradOut: gradOut, q: q, k: k, v: v,
                                 probabilities: probabilities, segments: segments, heads: heads, headSize: headSize)
        for (name, actual, truth) in [("dq", gradQ, expected[0]), ("dk", gradK, expected[1]), ("dv", gradV, expected[2])] {
            expectClose(actual, truth.map { Float($0) }, tolerance: 2e-5, "attention \(name), head size \(headSize)")
        }
    }
}
