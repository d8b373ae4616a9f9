// The bf16 compute path (oneDNN) against the f32 reference: the bf16 product equals an f32 product
// of bf16-rounded inputs up to f32 summation order, and every hidden state of MiniLM (real weights,
// real text) and of the tiny ViT agrees with the f32 path's to a per-token cosine of at least 0.999.
import Encoders
import Foundation
import OneDNN
import SafeTensors
import Testing
import TensorCore

/// The smallest cosine similarity between corresponding rows of two [rows, width] states.
func worstTokenCosine(_ a: Tensor, _ b: Tensor, width: Int) -> Double {
    precondition(a.count == b.count && a.count % width == 0)
    var worst = 1.0
    for row in 0..<(a.count / width) {
        var dot = 0.0, aa = 0.0, bb = 0.0
        for j in (row * width)..<((row + 1) * width) {
            let (x, y) = (Double(a.scalars[j]), Double(b.scalars[j]))
            dot += x * y
            aa += x * x
            bb += y * y
        }
        worst = min(worst, dot / (aa.squareRoot() * bb.squareRoot()))
    }
    return worst
}

@Suite(.enabled(if: OneDNN.supportsBF16, "oneDNN has no bf16 product on this CPU (needs AVX-512)"))
struct BF16ComputeTests {
    /// y = bf16(x)·bf16(W)ᵀ + b in Double is the reference; the only remaining difference is f32
    /// accumulation, bounded relative to Σ|x||w| (measured ≤ 1.2e-7 up to K = 1536).
    @Test(arguments: [(1, 384, 384), (1, 1, 1), (7, 101, 67), (37, 33, 1536), (130, 1536, 384), (5, 17, 3)])
    func productEqualsF32ProductOfRoundedInputs(_ shape: (rows: Int, out: Int, in: Int)) throws {
        var random = SeededGenerator(seed: UInt64(shape.rows * 1_000_003 + shape.out * 1009 + shape.in))
        func values(_ count: Int, scale: Float) -> [Float] { (0..<count).map { _ in Float.random(in: -scale...scale, using: &random) } }
        let x = values(shape.rows * shape.in, scale: 2), w = values(shape.out * shape.in, scale: 0.2), b = values(shape.out, scale: 1)
        for withBias in [true, false] {
            let layer = try w.withUnsafeBufferPointer { wp in
                try b.withUnsafeBufferPointer { bp in
                    try BF16Linear(weight: wp.baseAddress!, bias: withBias ? bp.baseAddress! : nil, inFeatures: shape.in, outFeatures: shape.out)
                }
            }
            var y = [Float](repeating: .nan, count: shape.rows * shape.out)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { layer.forward(y: $0.baseAddress!, x: xp.baseAddress!, rows: shape.rows) } }
            func rounded(_ v: Float) -> Double { Double(HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat(v))) }
            var worstRounded = 0.0, worstExact = 0.0
            for r in 0..<shape.rows {
                for o in 0..<shape.out {
                    var sum = withBias ? Double(b[o]) : 0, exact = sum, magnitude = abs(sum)
                    for k in 0..<shape.in {
                        let (xv, wv) = (x[r * shape.in + k], w[o * shape.in + k])
                        sum += rounded(xv) * rounded(wv)
                        exact += Double(xv) * Double(wv)
                        magnitude += abs(rounded(xv) * rounded(wv))
                    }
                    let got = Double(y[r * shape.out + o])
                    worstRounded = max(worstRounded, abs(got - sum) / magnitude)
                    worstExact = max(worstExact, abs(got - exact) / magnitude)
                }
            }
            print("bf16 product \(shape.rows)×\(shape.in)·\(shape.in)×\(shape.out)\(withBias ? " + bias" : ""): max |y − f32(bf16 inputs)| / Σ|xw| = "
                  + "\(worstRounded), against unrounded inputs \(worstExact)")
            #expect(worstRounded <= 1e-6, "\(shape) bias \(withBias)")
            // It really rounds its inputs: the unrounded product is much further away.
            if shape.in >= 67 { #expect(worstExact > 10 * worstRounded) }
        }
    }

    @Test func miniLMHiddenStatesAgreeWithF32() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let reference = try BertEncoder(folder: folder, compute: .f32)
        let reduced = try BertEncoder(folder: folder, compute: .bf16)
        let fixture = try SafeTensorsFile(path: encoderFixtures.appendingPathComponent("minilm_hidden_states.safetensors").path)
        let ids = try fixture.tensor("input_ids").scalars.map { Int32($0) }
        let types = try fixture.tensor("token_type_ids").scalars.map { Int32($0) }
        let segments = Segments(offsets: try fixture.tensor("offsets").scalars.map { Int($0) })
        let layers = Set(0...reference.config.layerCount)
        let expected = try reference.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: layers, streams: Set(EncoderStream.allCases))
        let actual = try reduced.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: layers, streams: Set(EncoderStream.allCases))
        for layer in layers.sorted() {
            let cosine = worstTokenCosine(try #require(actual.hidden[layer]), expected.hidden[layer]!, width: reference.config.hiddenSize)
            let worst = zip(actual.hidden[layer]!.scalars, expected.hidden[layer]!.scalars).map { abs($0 - $1) }.max()!
            print("MiniLM layer \(layer), bf16 vs f32: worst per-token cosine \(cosine), max |Δ| \(worst)")
            #expect(cosine >= 0.999, "layer \(layer)")
            // Layer 0 (embeddings) has no product; every later layer must show bf16's rounding.
            if layer > 0 { #expect(worst > 1e-4, "layer \(layer) is not computed in bf16") }
        }
        for stream in EncoderStream.allCases {
            for layer in 1...reference.config.layerCount {
                let cosine = worstTokenCosine(try #require(actual.streams[stream]?[layer]), expected.streams[stream]![layer]!, width: reference.config.hiddenSize)
                print("MiniLM \(stream) branch of layer \(layer), bf16 vs f32: worst per-token cosine \(cosine)")
                #expect(cosine >= 0.999, "\(stream) \(layer)")
            }
        }
    }

    @Test(arguments: ["native", "interpolated"])
    func tinyViTHiddenStatesAgreeWithF32(_ case: String) throws {
        try expectBF16AgreesWithF32(folder: encoderFixtures.appendingPathComponent("tiny_vit"), name: "tiny ViT", case: `case`)
    }
}

/// An image encoder's bf16 hidden states against its f32 ones on the fixture's pixels for `case`:
/// per-token cosine ≥ 0.999 on every layer, and every layer (0 included: it goes through the bf16
/// patch projection) visibly rounded.
func expectBF16AgreesWithF32(folder: URL, name: String, case: String) throws {
    let reference = try ViTEncoder(folder: folder, compute: .f32)
    let reduced = try ViTEncoder(folder: folder, compute: .bf16)
    let pixels = try SafeTensorsFile(path: folder.appendingPathComponent("expected.safetensors").path).tensor("\(`case`).pixel_values")
    let layers = Set(0...reference.config.layerCount)
    let expected = try reference.hiddenStates(pixels: pixels, layers: layers)
    let actual = try reduced.hiddenStates(pixels: pixels, layers: layers)
    for layer in layers.sorted() {
        let cosine = worstTokenCosine(try #require(actual[layer]), expected[layer]!, width: reference.config.hiddenSize)
        let worst = zip(actual[layer]!.scalars, expected[layer]!.scalars).map { abs($0 - $1) }.max()!
        print("\(name) (\(`case`)) layer \(layer), bf16 vs f32: worst per-token cosine \(cosine), max |Δ| \(worst)")
        #expect(cosine >= 0.999, "layer \(layer)")
        #expect(worst > 0, "layer \(layer) is not computed in bf16")
    }
}
