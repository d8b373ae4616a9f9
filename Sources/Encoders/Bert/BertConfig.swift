// The fields of a Hugging Face BERT `config.json` that the forward pass reads. Unknown fields are
// ignored (configs carry many); missing, mistyped or out-of-range ones are errors naming the file
// and the key.
import Foundation

/// Architecture hyperparameters of a BERT-family encoder (BERT, MiniLM, other small BERTs).
public struct BertConfig: Sendable, Equatable, Decodable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var maxPositions: Int = 512
    public var typeVocabularySize: Int = 2
    public var layerNormEpsilon: Float = 1e-12
    /// "gelu" (erf form), "gelu_new" or "gelu_pytorch_tanh" (tanh form).
    public var hiddenActivation: String = "gelu"
    public var positionEmbeddingType: String = "absolute"

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", hiddenSize = "hidden_size", layerCount = "num_hidden_layers"
        case headCount = "num_attention_heads", intermediateSize = "intermediate_size"
        case maxPositions = "max_position_embeddings", typeVocabularySize = "type_vocab_size"
        case layerNormEpsilon = "layer_norm_eps", hiddenActivation = "hidden_act"
        case positionEmbeddingType = "position_embedding_type"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabularySize = try c.decode(Int.self, forKey: .vocabularySize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        layerCount = try c.decode(Int.self, forKey: .layerCount)
        headCount = try c.decode(Int.self, forKey: .headCount)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositions) ?? maxPositions
        typeVocabularySize = try c.decodeIfPresent(Int.self, forKey: .typeVocabularySize) ?? typeVocabularySize
        layerNormEpsilon = try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? layerNormEpsilon
        hiddenActivation = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? hiddenActivation
        positionEmbeddingType = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType) ?? positionEmbeddingType
    }

    /// Reads and checks `config.json`.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw EncoderError("\(url.path): cannot read the file")
        }
        do {
            self = try JSONDecoder().decode(BertConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw EncoderError("\(url.path): missing key \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw EncoderError("\(url.path): \"\(key)\" has the wrong type (\(context.debugDescription))")
        } catch {
            throw EncoderError("\(url.path): not valid JSON")
        }
        try validate(url)
    }

    private func validate(_ url: URL) throws {
        let positive: [(String, Int)] = [
            ("vocab_size", vocabularySize), ("hidden_size", hiddenSize), ("num_hidden_layers", layerCount),
            ("num_attention_heads", headCount), ("intermediate_size", intermediateSize),
            ("max_position_embeddings", maxPositions), ("type_vocab_size", typeVocabularySize),
        ]
        for (key, value) in positive where value <= 0 {
            throw EncoderError("\(url.path): \"\(key)\" must be positive, got \(value)")
        }
        guard hiddenSize % headCount == 0 else {
            throw EncoderError("\(url.path): hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        }
        guard ["gelu", "gelu_new", "gelu_pytorch_tanh"].contains(hiddenActivation) else {
            throw EncoderError("\(url.path): hidden_act \"\(hiddenActivation)\" is not supported (gelu, gelu_new, gelu_pytorch_tanh)")
        }
        guard positionEmbeddingType == "absolute" else {
            throw EncoderError("\(url.path): position_embedding_type \"\(positionEmbeddingType)\" is not supported (absolute)")
        }
    }
}
