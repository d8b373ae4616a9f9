// The attention and MLP branch outputs (E3VA's A_l and M_l) against forward hooks in Hugging Face
// transformers (Fixtures/minilm_streams.safetensors, tiny_vit/streams.safetensors, made by
// make_encoder_fixtures.py), and against the block identities on the encoder's own states.
import Encoders
import Foundation
import SafeTensors
import Testing
import TensorCore

func worstDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? .infinity
}

/// The largest |a − b| / max(1, |b|): MiniLM's FFN outputs reach ±195 (outlier channels), where
/// one float32 step is already 1.5e-5, so an absolute 1e-4 would demand a few ulps after a
/// 1536-term sum; values within ±1 are still held to 1e-4 absolute.
func worstScaledDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
}

/// Row-wise layer norm with a gain and bias, for checking post-LN identities.
func layerNormRows(_ x: [Float], width: Int, gain: Tensor, bias: Tensor, eps: Float) -> [Float] {
    var out = x
    for r in 0..<(x.count / width) {
        let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
        let mean = row.reduce(0, +) / Double(width)
        let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
        let rstd = 1 / (variance + Double(eps)).squareRoot()
        for j in 0..<width { out[r * width + j] = Float((row[j] - mean) * rstd) * gain.scalars[j] + bias.scalars[j] }
    }
    return out
}

@Suite struct StreamParityTests {
    @Test func miniLMBranchOutputsMatchTransformersHooks() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let encoder = try BertEncoder(folder: folder)
        let inputs = try SafeTensorsFile(path: encoderFixtures.appendingPathComponent("minilm_hidden_states.safetensors").path)
        let fixture = try SafeTensorsFile(path: encoderFixtures.appendingPathComponent("minilm_streams.safetensors").path)
        let ids = try inputs.tensor("input_ids").scalars.map { Int32($0) }
        let types = try inputs.tensor("token_type_ids").scalars.map { Int32($0) }
        let segments = Segments(offsets: try inputs.tensor("offsets").scalars.map { Int($0) })
        let out = try encoder.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: Set(0...6), streams: [.attention, .mlp])
        for layer in 1...6 {
            for (stream, name) in [(EncoderStream.attention, "attention"), (.mlp, "mlp")] {
                let expected = try fixture.tensor("\(name).\(layer)")
                let actual = try #require(out.streams[stream]?[layer])
                #expect(actual.shape == expected.shape)
                let worst = worstScaledDifference(actual, expected)
                print("MiniLM \(name) \(layer): max |Swift − transformers| = \(worstDifference(actual, expected)), scaled by max(1, |ref|) \(worst)")
                #expect(worst <= 1e-4, "\(name) \(layer): \(worst)")
            }
        }
        // Asking for streams leaves the hidden states as they were.
        let plain = try encoder.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: Set(0...6))
        for layer in 0...6 { #expect(plain[layer] == out.hidden[layer]) }
    }

    @Test func miniLMStatesFollowFromTheBranches() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let encoder = try BertEncoder(folder: folder)
        let tokenizer = try WordPieceTokenizer(directory: folder)
        let encoding = tokenizer.encode("Fast, scalable, distributed revision control system")
        let out = try encoder.hiddenStates(ids: encoding.ids.map(Int32.init), tokenTypes: encoding.tokenTypeIds.map(Int32.init),
                                           segments: Segments(lengths: [encoding.ids.count]), layers: [1, 2, 3], streams: [.attention, .mlp])
        // Only the kept layers ≥ 1 get streams; z_0 is not kept, but block 1 still runs.
        #expect(Set(out.streams[.attention]!.keys) == [1, 2, 3] && Set(out.streams[.mlp]!.keys) == [1, 2, 3])
        let eps = encoder.config.layerNormEpsilon, width = encoder.config.hiddenSize
        for layer in [2, 3] {
            let weights = encoder.weights.layers[layer - 1]
            let previous = out.hidden[layer - 1]!.scalars
            let a = out.streams[.attention]![layer]!.scalars, m = out.streams[.mlp]![layer]!.scalars
            let middle = layerNormRows(zip(previous, a).map(+), width: width, gain: weights.attentionNorm.gain, bias: weights.attentionNorm.bias, eps: eps)
            let z = layerNormRows(zip(middle, m).map(+), width: width, gain: weights.outputNorm.gain, bias: weights.outputNorm.bias, eps: eps)
            let worst = zip(z, out.hidden[layer]!.scalars).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-4, "layer \(layer): z_l = LN2(LN1(z_{l-1} + A_l) + M_l) off by \(worst)")
        }
    }

    @Test func tinyViTBranchOutputsMatchTransformersHooksAndAddUp() throws {
        let folder = encoderFixtures.appendingPathComponent("tiny_vit")
        let encoder = try ViTEncoder(folder: folder)
        let pixels = try SafeTensorsFile(path: folder.appendingPathComponent("expected.safetensors").path).tensor("native.pixel_values")
        let fixture = try SafeTensorsFile(path: folder.appendingPathComponent("streams.safetensors").path)
        let layers = encoder.config.layerCount
        let out = try encoder.hiddenStates(pixels: pixels, layers: Set(0...layers), streams: [.attention, .mlp])
        for layer in 1...layers {
            for (stream, name) in [(EncoderStream.attention, "attention"), (.mlp, "mlp")] {
                let actual = try #require(out.streams[stream]?[layer])
                let worst = worstDifference(actual, try fixture.tensor("\(name).\(layer)"))
                print("tiny ViT \(name) \(layer): max |Swift − transformers| = \(worst)")
                #expect(worst <= 1e-4, "\(name) \(layer): \(worst)")
            }
            // Pre-LN: z_l = z_{l-1} + A_l + M_l.
            let sum = zip(zip(out.hidden[layer - 1]!.scalars, out.streams[.attention]![layer]!.scalars).map(+), out.streams[.mlp]![layer]!.scalars).map(+)
            #expect(zip(sum, out.hidden[layer]!.scalars).map { abs($0 - $1) }.max()! <= 1e-5)
        }
        let only = try encoder.hiddenStates(pixels: pixels, layers: [2], streams: [.mlp])
        #expect(only.streams[.attention] == nil && Set(only.streams[.mlp]!.keys) == [2])
    }
}
