// LoSA's token norm and mixing are one tape node that keeps only its input and hidden layer, and
// claims the same bits as the chain of ops it replaced (layer norm, pad, transpose, linear, GELU,
// linear, transpose back, unpad):
// its output and every gradient must be equal to the last bit, on ragged examples where the
// padding matters.
import Autodiff
@testable import SideNetworks
import Testing
import TensorCore

@Suite struct LoSATokenMixingTests {
    @Test func theOneNodeEqualsTheChainOfOps() throws {
        let head = try #require(try Tiny.head("losa", Tiny.settings["losa"]!) as? LoSAHead)
        let segments = Segments(lengths: [3, 5, 1, 4])
        let n = 5, d = Tiny.width
        var rng = SeededGenerator(seed: 11)
        // Away from the zero-initialised up-projection, so every gradient is non-trivial.
        for i in head.parameters.values.indices { head.parameters.values[i] = 0.5 * rng.nextNormal() }
        let x = Tensor.randomNormal([segments.totalRows, d], using: &rng)
        let projection = Tensor.randomNormal([segments.totalRows, d], using: &rng)
        let mixer = head.mixers[0], set = head.parameters

        func run(oneNode: Bool) -> (out: Tensor, dx: Tensor, parameters: [Float]) {
            let tape = Tape()
            let input = tape.leaf(x)
            let padding = Padding(segments, length: n)
            let down = tape.parameter(set, mixer.tokenDown.weight), downBias = tape.parameter(set, mixer.tokenDown.bias!)
            let up = tape.parameter(set, mixer.tokenUp.weight), upBias = tape.parameter(set, mixer.tokenUp.bias!)
            let gain = tape.parameter(set, mixer.tokenNorm.gain), normBias = tape.parameter(set, mixer.tokenNorm.bias)
            let out: Variable
            if oneNode {
                out = head.mixTokens(input, normGain: gain, normBias: normBias, eps: mixer.tokenNorm.eps, padding: padding, n: n,
                                     down: down, downBias: downBias, up: up, upBias: upBias)
            } else {
                let b = segments.count
                let normalized = input.layerNorm(gain: gain, bias: normBias, eps: mixer.tokenNorm.eps)
                let t = padding.pad(normalized).reshaped([b, n, d]).transposed()
                let mixed = t.linear(down.slice(0..<n, axis: 1), downBias).gelu()
                    .linear(up.slice(0..<n, axis: 0), upBias.slice(0..<n, axis: 0))
                out = padding.unpad(mixed.transposed().reshaped([b * n, d]))
            }
            let loss = (out * tape.constant(projection)).sum()
            set.zeroGradients()
            tape.backward(from: loss, releasing: oneNode)
            return (out.value, input.gradient ?? Tensor(zeros: x.shape), set.gradients)
        }
        let chain = run(oneNode: false), one = run(oneNode: true)
        #expect(one.out == chain.out)
        #expect(one.dx == chain.dx)
        #expect(one.parameters == chain.parameters)
        let touched = [mixer.tokenNorm.gain, mixer.tokenNorm.bias, mixer.tokenDown.weight, mixer.tokenDown.bias!, mixer.tokenUp.weight, mixer.tokenUp.bias!]
        for id in touched { #expect(set.gradient(id).scalars.contains { $0 != 0 }, "\(set.entry(id).name) got no gradient") }
        #expect(one.dx.scalars.contains { $0 != 0 })
    }
}
