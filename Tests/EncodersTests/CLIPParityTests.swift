// CLIP's vision tower as a ViT-family variant, against Hugging Face transformers (fp32) on a tiny
// random-initialised CLIPVisionModel whose weights and expected outputs are committed
// (Fixtures/tiny_clip, made by make_encoder_fixtures.py): every hidden state, the pooled output
// and the branch outputs, at the configured image size and at a non-square one where the position
// embeddings are interpolated; the same tower inside a full CLIPModel folder
// (Fixtures/tiny_clip_model); bf16 against f32; and broken folders, which fail naming what is wrong.
import Encoders
import Foundation
import OneDNN
import SafeTensors
import Testing
import TensorCore

let tinyCLIP = encoderFixtures.appendingPathComponent("tiny_clip")
let tinyCLIPModel = encoderFixtures.appendingPathComponent("tiny_clip_model")

/// A scratch copy of `folder` (its files, not linked), removed by the caller.
func scratchCopy(of folder: URL) throws -> URL {
    let copy = FileManager.default.temporaryDirectory.appendingPathComponent("clip-\(UUID().uuidString)")
    do {
        try FileManager.default.copyItem(at: folder, to: copy)
    } catch {
        try? FileManager.default.removeItem(at: copy)
        throw error
    }
    return copy
}

/// Rewrites `folder`/model.safetensors through `edit`, which may drop, rename or replace tensors.
func rewriteWeights(_ folder: URL, _ edit: ([(name: String, tensor: Tensor)]) -> [(name: String, tensor: Tensor)]) throws {
    let path = folder.appendingPathComponent("model.safetensors").path
    let file = try SafeTensorsFile(path: path)
    let tensors = try file.names.map { (name: $0, tensor: try file.tensor($0)) }
    try SafeTensorsWriter.write(edit(tensors), to: path)
}

@Suite struct CLIPParityTests {
    static func expected() throws -> SafeTensorsFile {
        try SafeTensorsFile(path: tinyCLIP.appendingPathComponent("expected.safetensors").path)
    }

    /// Compares every hidden state and the pooled output of `encoder` with the fixture's.
    static func expectMatchesTransformers(_ encoder: ViTEncoder, _ case: String, _ what: String) throws {
        let expected = try expected()
        let pixels = try expected.tensor("\(`case`).pixel_values")
        let layers = encoder.config.layerCount
        let states = try encoder.hiddenStates(pixels: pixels, layers: Set(0...layers))
        for layer in 0...layers {
            let reference = try expected.tensor("\(`case`).hidden_state.\(layer)")
            let actual = try #require(states[layer])
            #expect(actual.shape == [reference.shape[0] * reference.shape[1], reference.shape[2]])
            let worst = worstDifference(actual, reference)
            print("\(what) (\(`case`)) hidden state \(layer): max |Swift − transformers| = \(worst)")
            #expect(worst <= 1e-4, "\(what) \(`case`) layer \(layer): \(worst)")
        }
        // pooler_output = post_layernorm(class token of the last state).
        let normed = encoder.finalNormed(states[layers]!)
        let pooled = try expected.tensor("\(`case`).pooler_output")
        let (images, width) = (pooled.shape[0], pooled.shape[1])
        let rowsPerImage = normed.rowCount / images
        let classRows = (0..<images).flatMap { i in normed.scalars[(i * rowsPerImage * width)..<((i * rowsPerImage + 1) * width)] }
        let worst = zip(classRows, pooled.scalars).map { abs($0 - $1) }.max()!
        #expect(classRows.count == pooled.count && worst <= 1e-4, "\(what) \(`case`) pooled output: \(worst)")
    }

    @Test(arguments: ["native", "interpolated"])
    func hiddenStatesMatchTransformers(_ case: String) throws {
        let encoder = try ViTEncoder(folder: tinyCLIP)
        #expect(encoder.config.family == .clip && encoder.config.activation == .quickGelu)
        #expect(encoder.config.layerNormEpsilon == 1e-5)
        try Self.expectMatchesTransformers(encoder, `case`, "tiny CLIP")
    }

    @Test func branchOutputsMatchTransformersHooksAndAddUp() throws {
        let encoder = try ViTEncoder(folder: tinyCLIP)
        let expected = try Self.expected()
        let layers = encoder.config.layerCount
        let out = try encoder.hiddenStates(pixels: try expected.tensor("native.pixel_values"), layers: Set(0...layers), streams: [.attention, .mlp])
        for layer in 1...layers {
            for (stream, name) in [(EncoderStream.attention, "attention"), (.mlp, "mlp")] {
                let worst = worstDifference(try #require(out.streams[stream]?[layer]), try expected.tensor("native.\(name).\(layer)"))
                print("tiny CLIP \(name) \(layer): max |Swift − transformers| = \(worst)")
                #expect(worst <= 1e-4, "\(name) \(layer): \(worst)")
            }
        }
    }

    /// A CLIPModel folder: "clip" config with vision_config nested, tensors under "vision_model.",
    /// a text tower and projections beside them.
    @Test(arguments: ["native", "interpolated"])
    func fullCLIPModelFolderLoadsTheSameTower(_ case: String) throws {
        let full = try ViTEncoder(folder: tinyCLIPModel)
        #expect(full.config == (try ViTEncoder(folder: tinyCLIP)).config)
        try Self.expectMatchesTransformers(full, `case`, "tiny CLIPModel")
    }

    /// Saved CLIP configs may leave out what equals transformers' CLIPVisionConfig defaults.
    @Test func missingConfigKeysTakeCLIPVisionConfigDefaults() throws {
        let folder = try scratchCopy(of: tinyCLIPModel)
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var vision = try #require(config["vision_config"] as? [String: Any])
        for key in ["hidden_act", "layer_norm_eps", "num_channels"] { vision.removeValue(forKey: key) }
        config["vision_config"] = vision
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        let encoder = try ViTEncoder(folder: folder)
        #expect(encoder.config.hiddenActivation == "quick_gelu" && encoder.config.layerNormEpsilon == 1e-5 && encoder.config.channelCount == 3)
        try Self.expectMatchesTransformers(encoder, "native", "tiny CLIPModel with defaults")
        // Without hidden_size the default 768 does not fit the weights, and the error says which tensor.
        vision.removeValue(forKey: "hidden_size")
        config["vision_config"] = vision
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        let error = try #require(throws: SafeTensorsError.self) { try ViTEncoder(folder: folder) }
        #expect(error.tensor == "vision_model.embeddings.patch_embedding.weight" && error.description.contains("768"), "\(error)")
    }

    @Test(arguments: [
        ("encoder.layers.1.mlp.fc1.bias", "tiny_clip"), ("pre_layrnorm.weight", "tiny_clip"),
        ("vision_model.post_layernorm.bias", "tiny_clip_model"), ("vision_model.encoder.layers.0.self_attn.k_proj.weight", "tiny_clip_model"),
    ])
    func aMissingTensorIsNamed(_ missing: String, _ fixture: String) throws {
        let folder = try scratchCopy(of: encoderFixtures.appendingPathComponent(fixture))
        defer { try? FileManager.default.removeItem(at: folder) }
        try rewriteWeights(folder) { $0.filter { $0.name != missing } }
        let error = try #require(throws: SafeTensorsError.self) { try ViTEncoder(folder: folder) }
        #expect(error.tensor == missing && error.description.contains("no such tensor"), "\(error)")
    }

    @Test(arguments: ["embeddings.position_embedding.weight", "embeddings.class_embedding", "encoder.layers.0.self_attn.out_proj.weight",
                      "embeddings.patch_embedding.weight"])
    func aWrongShapeIsNamed(_ name: String) throws {
        let folder = try scratchCopy(of: tinyCLIP)
        defer { try? FileManager.default.removeItem(at: folder) }
        try rewriteWeights(folder) { tensors in
            tensors.map { $0.name == name ? (name: name, tensor: Tensor(zeros: [$0.tensor.count / 2, 2])) : $0 }
        }
        let error = try #require(throws: SafeTensorsError.self) { try ViTEncoder(folder: folder) }
        #expect(error.tensor == name && error.description.contains("expected"), "\(error)")
    }

    @Test func aFolderWithoutTheVisionTowerIsRefused() throws {
        let folder = try scratchCopy(of: tinyCLIPModel)
        defer { try? FileManager.default.removeItem(at: folder) }
        try rewriteWeights(folder) { $0.filter { !$0.name.hasPrefix("vision_model.") } }
        let error = try #require(throws: EncoderError.self) { try ViTEncoder(folder: folder) }
        #expect("\(error)".contains("vision_model.embeddings.class_embedding") && "\(error)".contains("CLIP"), "\(error)")
    }

    @Test func badConfigsAreNamed() throws {
        let folder = try scratchCopy(of: tinyCLIPModel)
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("config.json")
        let original = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        func load(_ change: (inout [String: Any]) -> Void) throws -> String {
            var config = original
            change(&config)
            try JSONSerialization.data(withJSONObject: config).write(to: url)
            do { _ = try ViTEncoder(folder: folder) } catch { return "\(error)" }
            return "loaded"
        }
        func vision(_ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
            { config in
                var vision = config["vision_config"] as! [String: Any]
                vision[key] = value
                config["vision_config"] = vision
            }
        }
        var message = try load(vision("hidden_act", "swish"))
        #expect(message.contains("vision_config.hidden_act") && message.contains("swish") && message.contains("quick_gelu"), "\(message)")
        message = try load(vision("patch_size", 7))
        #expect(message.contains("image_size 32 is not a multiple of vision_config.patch_size 7"), "\(message)")
        message = try load(vision("num_attention_heads", "4"))
        #expect(message.contains("\"vision_config.num_attention_heads\" has the wrong type"), "\(message)")
        message = try load { $0["vision_config"] = [1, 2] }
        #expect(message.contains("\"vision_config\" is not an object"), "\(message)")
    }

    @Test func badImagesAreErrors() throws {
        let encoder = try ViTEncoder(folder: tinyCLIP)
        #expect(throws: EncoderError.self) { try encoder.hiddenStates(pixels: Tensor(zeros: [1, 3, 30, 32]), layers: [1]) }
        #expect(throws: EncoderError.self) { try encoder.hiddenStates(pixels: Tensor(zeros: [1, 1, 32, 32]), layers: [1]) }
    }

    /// The side blobs describe CLIP's blocks with their real activation, so stage two's copies of
    /// them compute what the backbone computes.
    @Test func sideBlocksCarryQuickGelu() throws {
        let blob = try SideBlobs.topBlocks(try ViTEncoder(folder: tinyCLIP).sideBlocks, count: 1)
        #expect(blob.metadata["activation"] == "quick_gelu" && blob.metadata["layout"] == "pre-ln" && blob.metadata["eps"] == "1e-05")
    }
}

@Suite(.enabled(if: OneDNN.supportsBF16, "oneDNN has no bf16 product on this CPU (needs AVX-512)"))
struct CLIPBF16Tests {
    @Test(arguments: ["native", "interpolated"])
    func tinyCLIPHiddenStatesAgreeWithF32(_ case: String) throws {
        try expectBF16AgreesWithF32(folder: tinyCLIP, name: "tiny CLIP", case: `case`)
    }
}
