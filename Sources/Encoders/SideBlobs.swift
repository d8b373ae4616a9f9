// What stage two needs from a backbone's weights, computed once at extraction so `fit` never
// opens them: LST's magnitude-pruned side-block initialisation (methods-reference §2.3, the
// "pruning_without_residual" v2 path with importance I = W) and the full weights of the top K
// blocks for the Consolidator head (§5.3). Both work on a layout-neutral view of the blocks, so
// BERT (post-LN) and ViT (pre-LN) share one implementation and differ only in the LN order.
import Foundation
import TensorCore

/// The weights of one transformer block, whichever the layout.
public struct BlockWeights: Sendable {
    public var query, key, value, attentionOutput: DenseLayer
    /// Post-LN: the LN after attention (BERT attention.output.LayerNorm). Pre-LN: the LN before it.
    public var norm1: NormLayer
    /// Post-LN: the LN after the FFN (BERT output.LayerNorm). Pre-LN: the LN before the FFN.
    public var norm2: NormLayer
    public var intermediate, output: DenseLayer
}

/// A backbone seen as stage two's blobs see it.
public struct BackboneBlocks: Sendable {
    public enum Layout: String, Sendable { case postLN = "post-ln", preLN = "pre-ln" }
    public var layout: Layout
    public var heads: Int
    public var eps: Float
    /// "gelu" (erf), "gelu_tanh" or "quick_gelu".
    public var activation: String
    public var blocks: [BlockWeights]
    /// Per residual channel, the L1 norm of its embedding weights (BERT: a word-embedding column
    /// over the vocabulary; ViT: a patch-projection row over its inputs).
    public var embeddingImportance: [Double]
    /// ViT's final LayerNorm (BERT has none after the last block).
    public var finalNorm: NormLayer?

    var width: Int { blocks[0].query.weight.shape[1] }
    var inner: Int { blocks[0].intermediate.weight.shape[0] }
}

/// A named set of tensors (in order) and string metadata, ready to store in a cache.
public struct WeightBlob: Sendable {
    public var name: String
    public var tensors: [(name: String, tensor: Tensor)]
    public var metadata: [String: String]
}

public enum SideBlobs {
    /// LST's side-block initialisation for reduction `r` for all L blocks: blob "lst.r{r}".
    ///
    /// Side width d = D/r. The embedding keeps the d channels of largest importance; then per block
    /// each linear group takes the previous group's kept indices as its input columns and keeps its
    /// output rows of largest L1 norm (q, k, v jointly by |Wq|⊙|Wk|⊙|Wv|), ties to the lower index,
    /// kept indices in ascending order. LNs take the indices of the sublayer they normalise.
    public static func lst(_ backbone: BackboneBlocks, reduction r: Int) throws -> WeightBlob {
        let width = backbone.width, inner = backbone.inner, heads = backbone.heads
        guard r >= 1 else { throw EncoderError("reduction \(r) must be at least 1") }
        guard width % r == 0, inner % r == 0 else {
            throw EncoderError("reduction \(r) must divide the width \(width) and the FFN width \(inner)")
        }
        let d = width / r
        guard d % heads == 0 else {
            throw EncoderError("reduction \(r) gives side width \(d), not a multiple of the \(heads) heads (side blocks keep the head count)")
        }
        var tensors: [(name: String, tensor: Tensor)] = []
        func add(_ name: String, _ tensor: Tensor) { tensors.append((name, tensor)) }
        func addLinear(_ name: String, _ layer: DenseLayer, rows: [Int], columns: [Int]) {
            add(name + ".weight", slice(layer.weight, rows: rows, columns: columns))
            add(name + ".bias", pick(layer.bias, rows))
        }
        func addNorm(_ name: String, _ norm: NormLayer, _ indices: [Int]) {
            add(name + ".weight", pick(norm.gain, indices))
            add(name + ".bias", pick(norm.bias, indices))
        }
        var previous = top(backbone.embeddingImportance, d)
        add("embeddings.kept", Tensor(shape: [d], scalars: previous.map(Float.init)))
        let post = backbone.layout == .postLN
        for (i, block) in backbone.blocks.enumerated() {
            let p = "block.\(i + 1)."
            if !post { addNorm(p + "norm1", block.norm1, previous) }
            let qkv = rowL1([block.query.weight, block.key.weight, block.value.weight], columns: previous)
            let kept = top(qkv, d)
            addLinear(p + "attention.query", block.query, rows: kept, columns: previous)
            addLinear(p + "attention.key", block.key, rows: kept, columns: previous)
            addLinear(p + "attention.value", block.value, rows: kept, columns: previous)
            let attended = top(rowL1([block.attentionOutput.weight], columns: kept), d)
            addLinear(p + "attention.output", block.attentionOutput, rows: attended, columns: kept)
            addNorm(p + (post ? "attention.norm" : "norm2"), post ? block.norm1 : block.norm2, attended)
            let hidden = top(rowL1([block.intermediate.weight], columns: attended), inner / r)
            addLinear(p + "intermediate", block.intermediate, rows: hidden, columns: attended)
            let outputs = top(rowL1([block.output.weight], columns: hidden), d)
            addLinear(p + "output", block.output, rows: outputs, columns: hidden)
            if post { addNorm(p + "output.norm", block.norm2, outputs) }
            previous = outputs
        }
        if let final = backbone.finalNorm { addNorm("final_norm", final, previous) }
        var metadata = commonMetadata(backbone)
        metadata["reduction"] = String(r)
        return WeightBlob(name: "lst.r\(r)", tensors: tensors, metadata: metadata)
    }

    /// The full weights of the top `count` blocks (L−count+1...L), named as in `lst`, plus the final
    /// norm where there is one: blob "top_blocks".
    public static func topBlocks(_ backbone: BackboneBlocks, count: Int) throws -> WeightBlob {
        let layers = backbone.blocks.count
        guard (1...layers).contains(count) else { throw EncoderError("\(count) top blocks asked for, the backbone has 1...\(layers)") }
        var tensors: [(name: String, tensor: Tensor)] = []
        let post = backbone.layout == .postLN
        for l in (layers - count + 1)...layers {
            let block = backbone.blocks[l - 1], p = "block.\(l)."
            func linear(_ name: String, _ layer: DenseLayer) {
                tensors += [(p + name + ".weight", layer.weight), (p + name + ".bias", layer.bias)]
            }
            func norm(_ name: String, _ norm: NormLayer) {
                tensors += [(p + name + ".weight", norm.gain), (p + name + ".bias", norm.bias)]
            }
            if !post { norm("norm1", block.norm1) }
            linear("attention.query", block.query)
            linear("attention.key", block.key)
            linear("attention.value", block.value)
            linear("attention.output", block.attentionOutput)
            norm(post ? "attention.norm" : "norm2", post ? block.norm1 : block.norm2)
            linear("intermediate", block.intermediate)
            linear("output", block.output)
            if post { norm("output.norm", block.norm2) }
        }
        if let final = backbone.finalNorm { tensors += [("final_norm.weight", final.gain), ("final_norm.bias", final.bias)] }
        var metadata = commonMetadata(backbone)
        metadata["count"] = String(count)
        return WeightBlob(name: "top_blocks", tensors: tensors, metadata: metadata)
    }

    static func commonMetadata(_ backbone: BackboneBlocks) -> [String: String] {
        ["heads": String(backbone.heads), "layout": backbone.layout.rawValue, "eps": "\(backbone.eps)",
         "activation": backbone.activation, "layers": String(backbone.blocks.count)]
    }

    /// The `k` indices of largest score (ties to the lower index), ascending.
    static func top(_ scores: [Double], _ k: Int) -> [Int] {
        scores.indices.sorted { (scores[$0], $1) > (scores[$1], $0) }.prefix(k).sorted()
    }

    /// Per row, Σ over `columns` of the product of |W| over `weights` (all the same shape), in Double.
    static func rowL1(_ weights: [Tensor], columns: [Int]) -> [Double] {
        let rows = weights[0].shape[0], width = weights[0].shape[1]
        return (0..<rows).map { r in
            var sum = 0.0
            for c in columns {
                var product = 1.0
                for w in weights { product *= Double(abs(w.scalars[r * width + c])) }
                sum += product
            }
            return sum
        }
    }

    static func slice(_ weight: Tensor, rows: [Int], columns: [Int]) -> Tensor {
        let width = weight.shape[1]
        var out = [Float]()
        out.reserveCapacity(rows.count * columns.count)
        for r in rows { for c in columns { out.append(weight.scalars[r * width + c]) } }
        return Tensor(shape: [rows.count, columns.count], scalars: out)
    }

    static func pick(_ vector: Tensor, _ indices: [Int]) -> Tensor {
        Tensor(shape: [indices.count], scalars: indices.map { vector.scalars[$0] })
    }
}

extension BertEncoder {
    /// This encoder's blocks for the side blobs (post-LN).
    public var sideBlocks: BackboneBlocks {
        let (vocab, width) = (weights.wordEmbeddings.shape[0], config.hiddenSize)
        var importance = [Double](repeating: 0, count: width)
        for v in 0..<vocab { for j in 0..<width { importance[j] += Double(abs(weights.wordEmbeddings.scalars[v * width + j])) } }
        return BackboneBlocks(
            layout: .postLN, heads: config.headCount, eps: config.layerNormEpsilon,
            activation: config.hiddenActivation == "gelu" ? "gelu" : "gelu_tanh",
            blocks: weights.layers.map {
                BlockWeights(query: $0.query, key: $0.key, value: $0.value, attentionOutput: $0.attentionOutput, norm1: $0.attentionNorm,
                             norm2: $0.outputNorm, intermediate: $0.intermediate, output: $0.output)
            },
            embeddingImportance: importance, finalNorm: nil)
    }
}

extension ViTEncoder {
    /// This encoder's blocks for the side blobs (pre-LN, with the final norm).
    public var sideBlocks: BackboneBlocks {
        let projection = patchProjection.weight, inputs = projection.shape[1]
        let importance = (0..<projection.shape[0]).map { j in
            (0..<inputs).reduce(0.0) { $0 + Double(abs(projection.scalars[j * inputs + $1])) }
        }
        return BackboneBlocks(
            layout: .preLN, heads: config.headCount, eps: config.layerNormEpsilon,
            activation: config.sideBlockActivation,
            blocks: layers.map {
                BlockWeights(query: $0.query, key: $0.key, value: $0.value, attentionOutput: $0.attentionOutput, norm1: $0.normBefore,
                             norm2: $0.normAfter, intermediate: $0.intermediate, output: $0.output)
            },
            embeddingImportance: importance, finalNorm: finalNorm)
    }
}
