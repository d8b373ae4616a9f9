// The ViT forward pass against Hugging Face transformers (fp32) on a tiny random-initialised model
// whose weights and expected states are committed (Fixtures/tiny_vit, made by
// make_encoder_fixtures.py): at the configured image size, and at a larger one where the position
// embeddings are interpolated.
import Encoders
import Foundation
import SafeTensors
import Testing
import TensorCore

@Suite struct ViTParityTests {
    @Test(arguments: ["native", "interpolated"])
    func hiddenStatesMatchTransformers(_ case: String) throws {
        let folder = encoderFixtures.appendingPathComponent("tiny_vit")
        let encoder = try ViTEncoder(folder: folder)
        let expected = try SafeTensorsFile(path: folder.appendingPathComponent("expected.safetensors").path)
        let pixels = try expected.tensor("\(`case`).pixel_values")
        let states = try encoder.hiddenStates(pixels: pixels, layers: Set(0...encoder.config.layerCount))
        for layer in 0...encoder.config.layerCount {
            let reference = try expected.tensor("\(`case`).hidden_state.\(layer)")
            let actual = try #require(states[layer])
            #expect(actual.count == reference.count)
            let worst = zip(actual.scalars, reference.scalars).map { abs($0 - $1) }.max() ?? .infinity
            print("tiny ViT (\(`case`)) hidden state \(layer): max |Swift − transformers| = \(worst)")
            #expect(worst <= 1e-4)
        }
        let last = encoder.finalNormed(states[encoder.config.layerCount]!)
        let reference = try expected.tensor("\(`case`).last_hidden_state")
        #expect(zip(last.scalars, reference.scalars).map { abs($0 - $1) }.max()! <= 1e-4)
    }

    @Test func badImagesAreErrors() throws {
        let encoder = try ViTEncoder(folder: encoderFixtures.appendingPathComponent("tiny_vit"))
        #expect(throws: EncoderError.self) { try encoder.hiddenStates(pixels: Tensor(zeros: [1, 3, 15, 16]), layers: [1]) }
        #expect(throws: EncoderError.self) { try encoder.hiddenStates(pixels: Tensor(zeros: [1, 1, 16, 16]), layers: [1]) }
    }
}
