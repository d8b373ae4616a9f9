// The fields of a Hugging Face ViT/DeiT `config.json` that the forward pass reads; unknown
// fields are ignored, missing or out-of-range ones are errors naming the file and key.
import Foundation

/// Architecture hyperparameters of a ViT-family encoder.
public struct ViTConfig: Sendable, Equatable, Decodable {
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var imageSize: Int
    public var patchSize: Int
    public var channelCount: Int = 3
    public var layerNormEpsilon: Float = 1e-12
    public var hiddenActivation: String = "gelu"

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", layerCount = "num_hidden_layers", headCount = "num_attention_heads"
        case intermediateSize = "intermediate_size", imageSize = "image_size", patchSize = "patch_size"
        case channelCount = "num_channels", layerNormEpsilon = "layer_norm_eps", hiddenActivation = "hidden_act"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        layerCount = try c.decode(Int.self, forKey: .layerCount)
        headCount = try c.decode(Int.self, forKey: .headCount)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        imageSize = try c.decode(Int.self, forKey: .imageSize)
        patchSize = try c.decode(Int.self, forKey: .patchSize)
        channelCount = try c.decodeIfPresent(Int.self, forKey: .channelCount) ?? channelCount
        layerNormEpsilon = try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? layerNormEpsilon
        hiddenActivation = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? hiddenActivation
    }

    /// Reads and checks `config.json`.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw EncoderError("\(url.path): cannot read the file") }
        do {
            self = try JSONDecoder().decode(ViTConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw EncoderError("\(url.path): missing key \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw EncoderError("\(url.path): \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type")
        } catch {
            throw EncoderError("\(url.path): not valid JSON")
        }
        for (key, value) in [("hidden_size", hiddenSize), ("num_hidden_layers", layerCount), ("num_attention_heads", headCount),
                             ("intermediate_size", intermediateSize), ("image_size", imageSize), ("patch_size", patchSize),
                             ("num_channels", channelCount)] where value <= 0 {
            throw EncoderError("\(url.path): \"\(key)\" must be positive, got \(value)")
        }
        guard hiddenSize % headCount == 0 else {
            throw EncoderError("\(url.path): hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        }
        guard imageSize % patchSize == 0 else {
            throw EncoderError("\(url.path): image_size \(imageSize) is not a multiple of patch_size \(patchSize)")
        }
        guard ["gelu", "gelu_new", "gelu_pytorch_tanh"].contains(hiddenActivation) else {
            throw EncoderError("\(url.path): hidden_act \"\(hiddenActivation)\" is not supported (gelu, gelu_new, gelu_pytorch_tanh)")
        }
    }

    /// Patches per side at the configured image size.
    public var patchesPerSide: Int { imageSize / patchSize }
}
