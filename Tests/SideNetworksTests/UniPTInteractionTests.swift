// UniPT's interaction is one tape node that works on each example's own tokens. It claims the
// values of the padded form as a chain of ops: pad to the batch's longest, A·Fᵀ, key mask, ReLU,
// L1 normalisation, M·F + F, unpad. Output and both gradients must agree on ragged examples, with
// negative similarities present; only the order of the sums differs.
import Autodiff
@testable import SideNetworks
import Testing
import TensorCore

@Suite struct UniPTInteractionTests {
    @Test func theOneNodeEqualsThePaddedChainOfOps() {
        let segments = Segments(lengths: [5, 2, 4, 1])
        let b = segments.count, n = 5, width = 6
        let padding = Padding(segments, length: n)
        var rng = SeededGenerator(seed: 17)
        let anchor = Tensor.randomNormal([segments.totalRows, width], using: &rng)
        let layer = Tensor.randomNormal([segments.totalRows, width], using: &rng)
        let projection = Tensor.randomNormal([segments.totalRows, width], using: &rng)

        func run(oneNode: Bool) -> [Tensor] {
            let tape = Tape()
            let a = tape.leaf(anchor), f = tape.leaf(layer)
            let out: Variable
            if oneNode {
                out = UniPTHead.interact(a, f, segments: segments)
            } else {
                let ap = padding.pad(a).reshaped([b, n, width]), fp = padding.pad(f).reshaped([b, n, width])
                let keyMask = tape.constant(Tensor(shape: [b, 1, n], scalars: padding.mask.map { $0 ? 1 : 0 }))
                let mixing = (ap.matmul(fp, transposeOther: true) * keyMask).relu().l1Normalized()
                out = padding.unpad((mixing.matmul(fp) + fp).reshaped([b * n, width]))
            }
            tape.backward(from: (out * tape.constant(projection)).sum(), releasing: oneNode)
            return [out.value, a.gradient ?? Tensor(zeros: anchor.shape), f.gradient ?? Tensor(zeros: layer.shape)]
        }
        let chain = run(oneNode: false), one = run(oneNode: true)
        for (name, (mine, theirs)) in zip(["output", "anchor gradient", "layer gradient"], zip(one, chain)) {
            let scale = theirs.scalars.map(abs).max()!
            let worst = zip(mine.scalars, theirs.scalars).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-5 * scale, "\(name): worst difference \(worst) of \(scale)")
            #expect(mine.scalars.contains { $0 != 0 }, "\(name) is all zero")
        }
    }
}
