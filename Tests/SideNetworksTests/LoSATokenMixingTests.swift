// LoSA's token norm and mixing are one tape node that mixes each example's own positions, with
// no padding or transposes. It claims the values of the paper's form as a chain of ops: layer norm,
// pad to N positions, transpose, linear, GELU, linear over positions, transpose back, unpad, and
// the residual input added. Output and every gradient must agree on ragged examples, where the
// padding would matter if the node got it wrong; only the order of the sums differs.
import Autodiff
@testable import SideNetworks
import Testing
import TensorCore

@Suite struct LoSATokenMixingTests {
    @Test func theOneNodeEqualsThePaddedChainOfOps() throws {
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
            let down = tape.parameter(set, mixer.tokenDown.weight), downBias = tape.parameter(set, mixer.tokenDown.bias!)
            let up = tape.parameter(set, mixer.tokenUp.weight), upBias = tape.parameter(set, mixer.tokenUp.bias!)
            let gain = tape.parameter(set, mixer.tokenNorm.gain), normBias = tape.parameter(set, mixer.tokenNorm.bias)
            let out: Variable
            if oneNode {
                out = head.mixTokens(input, normGain: gain, normBias: normBias, eps: mixer.tokenNorm.eps, segments: segments,
                                     down: down, downBias: downBias, up: up, upBias: upBias)
            } else {
                let b = segments.count
                let padding = Padding(segments, length: n)
                let normalized = input.layerNorm(gain: gain, bias: normBias, eps: mixer.tokenNorm.eps)
                let t = padding.pad(normalized).reshaped([b, n, d]).transposed()
                let mixed = t.linear(down.slice(0..<n, axis: 1), downBias).gelu()
                    .linear(up.slice(0..<n, axis: 0), upBias.slice(0..<n, axis: 0))
                out = input + padding.unpad(mixed.transposed().reshaped([b * n, d]))
            }
            let loss = (out * tape.constant(projection)).sum()
            set.zeroGradients()
            tape.backward(from: loss, releasing: oneNode)
            return (out.value, input.gradient ?? Tensor(zeros: x.shape), set.gradients)
        }
        let chain = run(oneNode: false), one = run(oneNode: true)
        func worst(_ a: [Float], _ b: [Float]) -> Float {
            let scale = max(b.map(abs).max() ?? 0, 1e-6)
            return zip(a, b).map { abs($0 - $1) }.max()! / scale
        }
        #expect(worst(one.out.scalars, chain.out.scalars) < 1e-5)
        #expect(worst(one.dx.scalars, chain.dx.scalars) < 1e-5)
        let touched = [mixer.tokenNorm.gain, mixer.tokenNorm.bias, mixer.tokenDown.weight, mixer.tokenDown.bias!, mixer.tokenUp.weight, mixer.tokenUp.bias!]
        for id in touched {
            let mine = Self.gradient(of: id, in: set, from: one.parameters), theirs = Self.gradient(of: id, in: set, from: chain.parameters)
            #expect(worst(mine, theirs) < 1e-5, "\(set.entry(id).name)")
            #expect(mine.contains { $0 != 0 }, "\(set.entry(id).name) got no gradient")
        }
        // Positions past the longest example (5 of N_max) get no gradient in either form.
        let upGradient = Self.gradient(of: mixer.tokenUp.weight, in: set, from: one.parameters)
        #expect(upGradient[(n * set.entry(mixer.tokenUp.weight).shape[1])...].allSatisfy { $0 == 0 })
        #expect(one.dx.scalars.contains { $0 != 0 })
    }

    static func gradient(of id: ParameterSet.ID, in set: ParameterSet, from all: [Float]) -> [Float] {
        let entry = set.entry(id)
        return Array(all[entry.offset..<(entry.offset + entry.shape.reduce(1, *))])
    }
}
