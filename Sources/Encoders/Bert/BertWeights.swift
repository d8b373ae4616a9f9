// BERT's parameters bound by their Hugging Face checkpoint names, with every shape checked on load.
// Names are used as they are in the file; the one accepted variation is a model-class prefix
// ("bert." in BertFor* checkpoints), detected once, never a chain of string replacements.
import Foundation
import OneDNN
import SafeTensors
import TensorCore

/// The weights of a BERT encoder (no pooler: Sidecar reads hidden states).
public struct BertWeights: Sendable {
    public struct Layer: Sendable {
        /// Query, key and value stacked, [3·hidden, hidden]: one product reads the block's input
        /// once (and in bf16 rounds it once).
        public var queryKeyValue: Linear
        public var query: Linear { queryKeyValue.outputs(0..<hidden) }
        public var key: Linear { queryKeyValue.outputs(hidden..<2 * hidden) }
        public var value: Linear { queryKeyValue.outputs(2 * hidden..<3 * hidden) }
        var hidden: Int { queryKeyValue.weight.shape[1] }
        public var attentionOutput: Linear
        public var attentionNorm: Norm
        public var intermediate: Linear
        public var output: Linear
        public var outputNorm: Norm
    }

    public typealias Linear = DenseLayer
    public typealias Norm = NormLayer

    public var wordEmbeddings: Tensor        // [vocab, hidden]
    public var positionEmbeddings: Tensor    // [maxPositions, hidden]
    public var tokenTypeEmbeddings: Tensor   // [typeVocab, hidden]
    public var embeddingNorm: Norm
    public var layers: [Layer]

    /// Binds every tensor of a BERT checkpoint, checking each shape against `config`.
    public init(file: SafeTensorsFile, config: BertConfig) throws {
        let names = Set(file.names)
        let prefix = ["", "bert."].first { names.contains($0 + "embeddings.word_embeddings.weight") }
        guard let prefix else {
            throw EncoderError("\(file.path): no tensor \"embeddings.word_embeddings.weight\" (is this a BERT checkpoint?)")
        }
        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            try file.tensor(prefix + name, expectedShape: shape)
        }
        let h = config.hiddenSize, i = config.intermediateSize
        func linear(_ name: String, out: Int, in inputs: Int) throws -> Linear {
            Linear(weight: try load(name + ".weight", [out, inputs]), bias: try load(name + ".bias", [out]))
        }
        func norm(_ name: String) throws -> Norm {
            Norm(gain: try load(name + ".weight", [h]), bias: try load(name + ".bias", [h]))
        }
        wordEmbeddings = try load("embeddings.word_embeddings.weight", [config.vocabularySize, h])
        positionEmbeddings = try load("embeddings.position_embeddings.weight", [config.maxPositions, h])
        tokenTypeEmbeddings = try load("embeddings.token_type_embeddings.weight", [config.typeVocabularySize, h])
        embeddingNorm = try norm("embeddings.LayerNorm")
        layers = try (0..<config.layerCount).map { l in
            let p = "encoder.layer.\(l)."
            return Layer(
                queryKeyValue: Linear(stacking: try ["query", "key", "value"].map { try linear(p + "attention.self." + $0, out: h, in: h) }),
                attentionOutput: try linear(p + "attention.output.dense", out: h, in: h),
                attentionNorm: try norm(p + "attention.output.LayerNorm"),
                intermediate: try linear(p + "intermediate.dense", out: i, in: h),
                output: try linear(p + "output.dense", out: h, in: i),
                outputNorm: try norm(p + "output.LayerNorm"))
        }
    }

    /// These weights with every block's dense layers computing in `path`.
    func computing(in path: ComputePath) throws -> BertWeights {
        var out = self
        out.layers = try layers.map { layer in
            var layer = layer
            for key in [\Layer.queryKeyValue, \.attentionOutput, \.intermediate, \.output] {
                layer[keyPath: key] = try layer[keyPath: key].computing(in: path)
            }
            return layer
        }
        return out
    }
}
