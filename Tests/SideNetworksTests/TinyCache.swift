// A tiny synthetic "cache" for head tests: a context with every stream and blob a head can ask for,
// and packed batches of random activations. Blob weights are random with the shapes extraction
// writes, so LST and the consolidator run exactly the code they run on a real cache.
import ActivationStore
import Autodiff
import SideNetworks
import TensorCore

enum Tiny {
    static let width = 8, layers = 2, heads = 2, intermediate = 16, classes = 3, maxTokens = 6

    static func blockTensors(_ l: Int, width d: Int, inner: Int, rng: inout SeededGenerator) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        func linear(_ name: String, out o: Int, in i: Int) {
            out[name + ".weight"] = Tensor.randomNormal([o, i], std: 0.3, using: &rng)
            out[name + ".bias"] = Tensor.randomNormal([o], std: 0.1, using: &rng)
        }
        for n in ["query", "key", "value", "output"] { linear("block.\(l).attention.\(n)", out: d, in: d) }
        linear("block.\(l).intermediate", out: inner, in: d)
        linear("block.\(l).output", out: d, in: inner)
        for n in ["attention.norm", "output.norm"] {
            out["block.\(l).\(n).weight"] = Tensor.randomUniform([d], low: 0.8, high: 1.2, using: &rng)
            out["block.\(l).\(n).bias"] = Tensor.randomNormal([d], std: 0.1, using: &rng)
        }
        return out
    }

    static func blobs() -> [String: Blob] {
        var rng = SeededGenerator(seed: 77)
        let meta = ["layout": "post-ln", "heads": "\(heads)", "eps": "1e-12", "activation": "gelu", "layers": "\(layers)"]
        var lst: [String: Tensor] = ["embeddings.kept": Tensor(shape: [4], scalars: [0, 2, 5, 7])]
        for l in 1...layers { lst.merge(blockTensors(l, width: 4, inner: intermediate / 2, rng: &rng)) { a, _ in a } }
        var top: [String: Tensor] = [:]
        for l in 1...layers { top.merge(blockTensors(l, width: width, inner: intermediate, rng: &rng)) { a, _ in a } }
        return ["lst.r2": Blob(tensors: lst, metadata: meta.merging(["reduction": "2"]) { a, _ in a }, label: "tiny cache: blob lst.r2"),
                "top_blocks": Blob(tensors: top, metadata: meta.merging(["count": "2"]) { a, _ in a }, label: "tiny cache: blob top_blocks")]
    }

    static func context(layout: RowLayout = .tokens, pooling: PoolingMode = .mean, streams: [String] = ["attn", "mlp"],
                        blobNames: [String]? = nil) -> HeadContext {
        let blobs = blobs()
        return HeadContext(width: width, layerCount: layers, layers: Array(0...layers), streams: streams, layout: layout,
                           pooling: pooling, classes: classes, maxTokens: maxTokens, blobNames: blobNames ?? Array(blobs.keys).sorted(),
                           loadBlob: { blobs[$0] })
    }

    /// Three examples of 3, 5 and 2 tokens with every feature, labels 0, 1, 2.
    static func batch(seed: UInt64 = 5, lengths: [Int] = [3, 5, 2], layout: RowLayout = .tokens) -> Batch {
        var rng = SeededGenerator(seed: seed)
        let rows = layout == .tokens ? lengths : lengths.map { _ in layout == .clsAndMean ? 2 : 1 }
        let segments = Segments(lengths: rows)
        var features: [Feature: Tensor] = [:]
        for l in 0...layers {
            features[.hidden(l)] = Tensor.randomNormal([segments.totalRows, width], using: &rng)
            if l > 0 {
                features[.attention(l)] = Tensor.randomNormal([segments.totalRows, width], using: &rng)
                features[.mlp(l)] = Tensor.randomNormal([segments.totalRows, width], using: &rng)
            }
        }
        return Batch(labels: lengths.indices.map { $0 % classes }, segments: segments, features: features, layout: layout)
    }

    static func head(_ name: String, _ settings: [String: String] = [:], context: HeadContext = context(), seed: UInt64 = 1) throws -> any Head {
        try HeadRegistry.make(name, settings: settings, context: context, seed: seed)
    }

    /// The per-head settings used for the tiny configuration (widths that divide the tiny sizes).
    static let settings: [String: [String: String]] = [
        "linear": ["layers": "all"], "mlp": ["hidden": "6", "layers": "1,2"],
        "losa": ["rank_tokens": "3", "rank_channels": "4"], "lst": ["reduction": "2"], "unipt": ["reduction": "2"],
        "e3va": ["rank": "3"], "consolidator": ["K": "2", "groups": "2,4", "shuffle": "true", "branch_drop": "0.3",
                         "block_dropout": "0.2"],
    ]
}

/// Mean cross-entropy of a head on a batch, on a fresh tape with a fixed dropout seed.
func loss(_ head: any Head, _ batch: Batch, training: Bool = true) -> (Tape, Variable) {
    let tape = Tape(training: training, rng: SeededGenerator(seed: 9))
    return (tape, head.logits(batch, on: tape).crossEntropy(labels: batch.labels))
}
