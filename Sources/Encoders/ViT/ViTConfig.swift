// The fields of a Hugging Face ViT-family `config.json` that the forward pass reads; unknown
// fields are ignored, missing or out-of-range ones are errors naming the file and key. ViT and
// DeiT keep them at the top level; CLIP's vision tower ("clip_vision_model") too, while a full
// CLIPModel ("clip") nests them under "vision_config". CLIP's keys default as transformers'
// CLIPVisionConfig does (its saved configs may leave defaults out); ViT's are required.
import Foundation
import TensorCore

/// Architecture hyperparameters of a ViT-family encoder.
public struct ViTConfig: Sendable, Equatable, Decodable {
    /// Which checkpoint layout and embedding the forward pass follows.
    public enum Family: String, Sendable, Equatable {
        /// ViTModel / DeiTModel: patch projection with bias, final norm over every token.
        case vit
        /// CLIPVisionModel: patch projection without bias, a layer norm right after the
        /// embeddings (its output is hidden state 0), the final norm only for the pooled output.
        case clip

        /// The backbone architecture a cache manifest records.
        public var architecture: String {
            switch self {
            case .vit: "vit"
            case .clip: "clip-vit"
            }
        }

        /// The family of a config.json `model_type`, nil when it is not a ViT-family image encoder.
        public init?(modelType: String) {
            switch modelType {
            case "vit", "deit": self = .vit
            case "clip_vision_model", "clip": self = .clip
            default: return nil
            }
        }

        /// The family of a recorded manifest architecture (`architecture`), nil for others.
        public init?(architecture: String) {
            guard let family = [Family.vit, .clip].first(where: { $0.architecture == architecture }) else { return nil }
            self = family
        }
    }

    public var family: Family = .vit
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var imageSize: Int
    public var patchSize: Int
    public var channelCount: Int = 3
    public var layerNormEpsilon: Float = 1e-12
    public var hiddenActivation: String = "gelu"

    /// Hugging Face `hidden_act` names this forward pass computes.
    static let activations: [String: Activation] = [
        "gelu": .gelu, "gelu_new": .geluTanh, "gelu_pytorch_tanh": .geluTanh, "quick_gelu": .quickGelu,
    ]

    /// The MLP's activation.
    public var activation: Activation { Self.activations[hiddenActivation]! }

    /// The activation's name in side-block blob metadata (what SideNetworks' BlockShape reads).
    public var sideBlockActivation: String {
        switch activation {
        case .gelu: "gelu"
        case .quickGelu: "quick_gelu"
        default: "gelu_tanh"
        }
    }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", layerCount = "num_hidden_layers", headCount = "num_attention_heads"
        case intermediateSize = "intermediate_size", imageSize = "image_size", patchSize = "patch_size"
        case channelCount = "num_channels", layerNormEpsilon = "layer_norm_eps", hiddenActivation = "hidden_act"
    }

    static let familyKey = CodingUserInfoKey(rawValue: "ViTConfig.family")!

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = decoder.userInfo[Self.familyKey] as? Family ?? .vit
        if family == .clip {
            // transformers' CLIPVisionConfig defaults (ViT-B/32).
            hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 768
            layerCount = try c.decodeIfPresent(Int.self, forKey: .layerCount) ?? 12
            headCount = try c.decodeIfPresent(Int.self, forKey: .headCount) ?? 12
            intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 3072
            imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? 224
            patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 32
            layerNormEpsilon = 1e-5
            hiddenActivation = "quick_gelu"
        } else {
            hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
            layerCount = try c.decode(Int.self, forKey: .layerCount)
            headCount = try c.decode(Int.self, forKey: .headCount)
            intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
            imageSize = try c.decode(Int.self, forKey: .imageSize)
            patchSize = try c.decode(Int.self, forKey: .patchSize)
        }
        channelCount = try c.decodeIfPresent(Int.self, forKey: .channelCount) ?? channelCount
        layerNormEpsilon = try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? layerNormEpsilon
        hiddenActivation = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? hiddenActivation
    }

    /// Reads and checks `config.json`.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw EncoderError("\(url.path): cannot read the file") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw EncoderError("\(url.path): not valid JSON (an object expected)")
        }
        let modelType = object["model_type"] as? String
        let family = modelType.flatMap(Family.init(modelType:)) ?? .vit
        // Where the vision keys live, for decoding and for messages.
        var section = object, keyPrefix = ""
        if modelType == "clip" {
            // transformers builds a default CLIPVisionConfig when vision_config is absent.
            let nested = object["vision_config"].flatMap { $0 is NSNull ? nil : $0 } ?? [String: Any]()
            guard let vision = nested as? [String: Any] else { throw EncoderError("\(url.path): \"vision_config\" is not an object") }
            (section, keyPrefix) = (vision, "vision_config.")
        }
        do {
            let decoder = JSONDecoder()
            decoder.userInfo[Self.familyKey] = family
            self = try decoder.decode(ViTConfig.self, from: JSONSerialization.data(withJSONObject: section))
        } catch let DecodingError.keyNotFound(key, _) {
            throw EncoderError("\(url.path): missing key \"\(keyPrefix)\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw EncoderError("\(url.path): \"\(keyPrefix)\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type")
        } catch {
            throw EncoderError("\(url.path): not valid JSON")
        }
        for (key, value) in [("hidden_size", hiddenSize), ("num_hidden_layers", layerCount), ("num_attention_heads", headCount),
                             ("intermediate_size", intermediateSize), ("image_size", imageSize), ("patch_size", patchSize),
                             ("num_channels", channelCount)] where value <= 0 {
            throw EncoderError("\(url.path): \"\(keyPrefix)\(key)\" must be positive, got \(value)")
        }
        guard hiddenSize % headCount == 0 else {
            throw EncoderError("\(url.path): \(keyPrefix)hidden_size \(hiddenSize) is not a multiple of \(keyPrefix)num_attention_heads \(headCount)")
        }
        guard imageSize % patchSize == 0 else {
            throw EncoderError("\(url.path): \(keyPrefix)image_size \(imageSize) is not a multiple of \(keyPrefix)patch_size \(patchSize)")
        }
        guard Self.activations[hiddenActivation] != nil else {
            throw EncoderError("\(url.path): \(keyPrefix)hidden_act \"\(hiddenActivation)\" is not supported (\(Self.activations.keys.sorted().joined(separator: ", ")))")
        }
    }

    /// Patches per side at the configured image size.
    public var patchesPerSide: Int { imageSize / patchSize }
}
