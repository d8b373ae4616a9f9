// UniPT's interaction weights are one tape node that keeps only its output, and claim the values
// of the chain of ops they replaced (key mask, ReLU, L1 normalisation): output and gradient must
// be equal to the last bit, with padded keys and negative similarities present.
import Autodiff
@testable import SideNetworks
import Testing
import TensorCore

@Suite struct UniPTInteractionTests {
    @Test func theOneNodeEqualsTheChainOfOps() {
        let segments = Segments(lengths: [5, 2, 4])
        let b = segments.count, n = 5
        let padding = Padding(segments, length: n)
        var rng = SeededGenerator(seed: 17)
        let similarity = Tensor.randomNormal([b, n, n], using: &rng)
        let projection = Tensor.randomNormal([b, n, n], using: &rng)

        func run(oneNode: Bool) -> (out: Tensor, grad: Tensor) {
            let tape = Tape()
            let s = tape.leaf(similarity)
            let out: Variable
            if oneNode {
                out = UniPTHead.interactionWeights(s, realKeys: padding.mask)
            } else {
                let keyMask = tape.constant(Tensor(shape: [b, 1, n], scalars: padding.mask.map { $0 ? 1 : 0 }))
                out = (s * keyMask).relu().l1Normalized()
            }
            tape.backward(from: (out * tape.constant(projection)).sum(), releasing: oneNode)
            return (out.value, s.gradient ?? Tensor(zeros: similarity.shape))
        }
        let chain = run(oneNode: false), one = run(oneNode: true)
        #expect(one.out == chain.out)
        #expect(one.grad == chain.grad)
        // Both kinds of zero appear: padded keys and negative similarities.
        #expect(one.grad.scalars.contains { $0 != 0 } && one.grad.scalars.contains { $0 == 0 })
        #expect(one.out.scalars.contains { $0 > 0 })
    }
}
