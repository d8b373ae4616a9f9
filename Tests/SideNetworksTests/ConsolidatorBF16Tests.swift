// The consolidator's frozen products in bf16: the op computes the f32 product of bf16-rounded
// operands, forward and backward, with the bias exact; the head follows the cache's compute path;
// and the bf16 head trains and consolidates as the f32 one does, up to bf16's rounding.
import Autodiff
import Dispatch
import OneDNN
@testable import SideNetworks
import Testing
import TensorCore

@Suite(.enabled(if: OneDNN.supportsBF16, "oneDNN has no bf16 product on this CPU (needs AVX-512)"))
struct ConsolidatorBF16Tests {
    func rounded(_ v: Float) -> Double { Double(HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat(v))) }

    // Rows past one 256-row chunk ending in a partial step of 16 (600), whole chunks only (512),
    // and fewer rows than one step (1).
    @Test(arguments: [(1, 8, 8), (37, 24, 40), (130, 96, 384), (600, 24, 40), (512, 16, 8)])
    func frozenLinearIsTheProductOfRoundedOperands(_ shape: (rows: Int, out: Int, in: Int)) throws {
        var rng = SeededGenerator(seed: UInt64(shape.rows * 7 + shape.in))
        let w = Tensor.randomNormal([shape.out, shape.in], std: 0.2, using: &rng)
        let x = Tensor.randomNormal([shape.rows, shape.in], using: &rng)
        let b = Tensor.randomNormal([shape.out], using: &rng)
        let gradY = Tensor.randomNormal([shape.rows, shape.out], using: &rng)
        let layer = try BF16FrozenLinear(w)
        let tape = Tape(training: true)
        let (input, bias) = (tape.leaf(x), tape.leaf(b))
        let y = layer(input, bias: bias)
        tape.backward(from: (y * tape.constant(gradY)).sum())
        let gradX = try #require(input.gradient), gradB = try #require(bias.gradient)
        // y[r, o] = Σ_k bf16(x)·bf16(W) + b; dX[r, k] = Σ_o bf16(dY)·bf16(W); dB[o] = Σ_r dY (f32, unrounded).
        var worstY = 0.0, worstX = 0.0, worstB = 0.0
        for r in 0..<shape.rows {
            for o in 0..<shape.out {
                var sum = Double(b.scalars[o]), magnitude = abs(sum)
                for k in 0..<shape.in {
                    let term = rounded(x.scalars[r * shape.in + k]) * rounded(w.scalars[o * shape.in + k])
                    sum += term
                    magnitude += abs(term)
                }
                worstY = max(worstY, abs(Double(y.value.scalars[r * shape.out + o]) - sum) / magnitude)
            }
            for k in 0..<shape.in {
                var sum = 0.0, magnitude = 0.0
                for o in 0..<shape.out {
                    let term = rounded(gradY.scalars[r * shape.out + o]) * rounded(w.scalars[o * shape.in + k])
                    sum += term
                    magnitude += abs(term)
                }
                worstX = max(worstX, abs(Double(gradX.scalars[r * shape.in + k]) - sum) / magnitude)
            }
        }
        for o in 0..<shape.out {
            var sum = 0.0, magnitude = 0.0
            for r in 0..<shape.rows { sum += Double(gradY.scalars[r * shape.out + o]); magnitude += abs(Double(gradY.scalars[r * shape.out + o])) }
            worstB = max(worstB, abs(Double(gradB.scalars[o]) - sum) / magnitude)
        }
        print("bf16 frozen linear \(shape): y \(worstY), dX \(worstX), dB \(worstB) (relative to Σ|terms|)")
        #expect(worstY <= 1e-6)
        #expect(worstX <= 1e-6)
        #expect(worstB <= 1e-6)
    }

    /// One product's primitives are built once per row count and then run on whatever thread
    /// calls, several at once (the parts of a batch): each call must give exactly what it gives
    /// alone. (oneDNN's own scratchpad is shared per thread, and broke exactly this.)
    @Test func oneProductRunsOnSeveralThreadsAtOnce() throws {
        let (inputs, outputs, rows) = (384, 1536, 600)
        var rng = SeededGenerator(seed: 31)
        let w = Tensor.randomNormal([outputs, inputs], std: 0.05, using: &rng)
        let bias = Tensor.randomNormal([outputs], using: &rng)
        let xs = (0..<4).map { _ in Tensor.randomNormal([rows, inputs], using: &rng) }
        let product = try w.withUnsafeBufferPointer {
            try BF16RowsProduct(weight: $0.baseAddress!, inFeatures: inputs, outFeatures: outputs, hasBias: true)
        }
        @Sendable func multiply(_ x: Tensor, into y: UnsafeMutablePointer<Float>) {
            x.withUnsafeBufferPointer { px in
                bias.withUnsafeBufferPointer { pb in product.forward(y: y, x: px.baseAddress!, rows: rows, bias: pb.baseAddress!) }
            }
        }
        let size = rows * outputs, calls = xs.count * 8
        let alone = UnsafeMutablePointer<Float>.allocate(capacity: xs.count * size)
        let together = UnsafeMutablePointer<Float>.allocate(capacity: calls * size)
        defer { alone.deallocate(); together.deallocate() }
        for (i, x) in xs.enumerated() { multiply(x, into: alone + i * size) }
        let target = UInt(bitPattern: together)  // each call writes its own slice
        DispatchQueue.concurrentPerform(iterations: calls) { i in
            multiply(xs[i % xs.count], into: UnsafeMutablePointer(bitPattern: target)! + i * size)
        }
        for i in 0..<calls {
            let same = (0..<size).allSatisfy { together[i * size + $0] == alone[(i % xs.count) * size + $0] }
            #expect(same, "call \(i) on several threads differs from the same call alone")
        }
    }

    /// The tiny consolidator with the given compute setting, on a context that records `cache`.
    func head(_ compute: String, cache: ComputePath = .f32) throws -> ConsolidatorHead {
        var context = Tiny.context()
        context.compute = cache
        let settings = Tiny.settings["consolidator"]!.merging(["compute": compute]) { _, b in b }
        return try #require(try Tiny.head("consolidator", settings, context: context) as? ConsolidatorHead)
    }

    @Test func followsTheCachesComputePath() throws {
        #expect(try head("auto", cache: .bf16).bf16 == OneDNN.hasBF16Instructions)
        #expect(try head("auto", cache: .f32).bf16 == false)
        #expect(try head("f32", cache: .bf16).bf16 == false)
        #expect(try head("bf16", cache: .f32).bf16 == true)
    }

    @Test func bf16LogitsAndGradientsFollowTheF32Ones() throws {
        let (reference, reduced) = (try head("f32"), try head("bf16"))
        var rng = SeededGenerator(seed: 4)
        for i in reference.parameters.values.indices { reference.parameters.values[i] += 0.2 * rng.nextNormal() }
        reduced.parameters.values = reference.parameters.values
        let batch = Tiny.batch()
        var gradients: [[Float]] = [], logits: [Tensor] = []
        for head in [reference, reduced] {
            let (tape, l) = loss(head, batch)
            head.parameters.zeroGradients()
            tape.backward(from: l)
            gradients.append(head.parameters.gradients)
            logits.append(head.logits(batch, on: Tape(training: false)).value)
        }
        func cosine(_ a: [Float], _ b: [Float]) -> Double {
            let dot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let norms = (a.reduce(0.0) { $0 + Double($1 * $1) } * b.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
            return dot / norms
        }
        let logitError = zip(logits[0].scalars, logits[1].scalars).map { abs($0 - $1) }.max()!
        let gradientCosine = cosine(gradients[0], gradients[1])
        print("consolidator bf16 against f32: logits within \(logitError), gradient cosine \(gradientCosine)")
        #expect(logitError < 0.02)
        #expect(logitError > 0, "the bf16 head computed in f32")
        #expect(gradientCosine > 0.999)
    }

    @Test func aMergedBF16HeadGivesTheBranchedLogits() throws {
        let trained = try head("bf16")
        var rng = SeededGenerator(seed: 6)
        for i in trained.parameters.values.indices { trained.parameters.values[i] += 0.3 * rng.nextNormal() }
        let batch = Tiny.batch()
        let branched = trained.logits(batch, on: Tape(training: false)).value
        let deployed = try head("bf16")
        try deployed.loadExported(Dictionary(uniqueKeysWithValues: try trained.exportedTensors()), source: "test")
        let merged = deployed.logits(batch, on: Tape(training: false)).value
        let frozenOnly = try trained.mergedLogits(batch, includeBranches: false)
        let difference = zip(branched.scalars, merged.scalars).map { abs($0 - $1) }.max()!
        print("consolidator bf16: merged logits within \(difference) of the branched ones")
        // Rounding W + branches to bf16 differs from rounding W alone by about one bf16 step.
        #expect(difference < 0.02)
        #expect(zip(branched.scalars, frozenOnly.scalars).map { abs($0 - $1) }.max()! > 10 * difference, "the branches changed nothing")
    }
}
