// The frozen BERT forward pass (inference only) over packed sequences: no padding is ever
// computed, and only the layers up to the deepest one asked for are run. Post-LN blocks as in
// BertModel: h = LN(x + Attn(x)); z = LN(h + FFN(h)). Every product is one sgemm over all tokens
// of the batch (f32 through OpenBLAS, or bf16 through oneDNN: see ComputePath); attention scores,
// softmax, GELU and layer norms stay f32 either way; attention runs per example and head on
// strided views.
import Foundation
import OneDNN
import SafeTensors
import TensorCore

/// A pretrained BERT-family encoder (BERT, MiniLM, …) loaded from a Hugging Face folder.
public final class BertEncoder: Sendable {
    public let config: BertConfig
    public let weights: BertWeights
    /// The arithmetic of the dense products.
    public let compute: ComputePath
    private let activation: Activation

    /// Reads `config.json` and `model.safetensors` from `folder`; for bf16, packs every dense
    /// layer's weights for oneDNN (throws when this CPU cannot compute bf16).
    public init(folder: URL, compute: ComputePath = .f32) throws {
        config = try BertConfig(contentsOf: folder.appendingPathComponent("config.json"))
        let file = try SafeTensorsFile(path: folder.appendingPathComponent("model.safetensors").path)
        weights = try BertWeights(file: file, config: config).computing(in: compute)
        self.compute = compute
        activation = config.hiddenActivation == "gelu" ? .gelu : .geluTanh
    }

    public init(config: BertConfig, weights: BertWeights, compute: ComputePath = .f32) throws {
        self.config = config
        self.weights = try weights.computing(in: compute)
        self.compute = compute
        activation = config.hiddenActivation == "gelu" ? .gelu : .geluTanh
    }

    /// The hidden states z_l, l ∈ `layers` (0 = embedding output, L = last block), of a packed batch.
    ///
    /// ids, tokenTypes: [T]; segments: which rows belong to which example. Returns one [T, hidden]
    /// tensor per requested layer. Throws when an id, a token type or a sequence length is out of
    /// the model's range.
    public func hiddenStates(ids: [Int32], tokenTypes: [Int32], segments: Segments, layers: Set<Int>) throws -> [Int: Tensor] {
        try hiddenStates(ids: ids, tokenTypes: tokenTypes, segments: segments, layers: layers, streams: []).hidden
    }

    /// The hidden states z_l, l ∈ `layers`, and for every such l ≥ 1 the requested branch outputs
    /// of block l: A_l (attention output projection) and M_l (FFN output projection), both before
    /// the residual add and LayerNorm, so z_l = LN2(LN1(z_{l-1} + A_l) + M_l).
    public func hiddenStates(ids: [Int32], tokenTypes: [Int32], segments: Segments, layers: Set<Int>,
                             streams: Set<EncoderStream>) throws -> EncoderOutputs {
        precondition(ids.count == segments.totalRows && tokenTypes.count == ids.count,
                     "hiddenStates: \(ids.count) ids, \(tokenTypes.count) token types for \(segments.totalRows) rows")
        guard let deepest = layers.max() else { return EncoderOutputs() }
        precondition(layers.allSatisfy { (0...config.layerCount).contains($0) }, "layers \(layers.sorted()) outside 0...\(config.layerCount)")
        if let long = segments.lengths.max(), long > config.maxPositions {
            throw EncoderError("a sequence of \(long) tokens is longer than the model's \(config.maxPositions) positions")
        }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= config.vocabularySize }) {
            throw EncoderError("token id \(bad) is outside the vocabulary of \(config.vocabularySize)")
        }
        if let bad = tokenTypes.first(where: { $0 < 0 || Int($0) >= config.typeVocabularySize }) {
            throw EncoderError("token type \(bad) is outside 0..<\(config.typeVocabularySize)")
        }
        let rows = ids.count, width = config.hiddenSize
        var out = EncoderOutputs()
        var x = embed(ids: ids, tokenTypes: tokenTypes, segments: segments)
        if layers.contains(0) { out.hidden[0] = x }
        var scratch = Scratch(rows: rows, width: width, intermediate: config.intermediateSize)
        for l in 0..<deepest {
            if streams.isEmpty || !layers.contains(l + 1) {
                block(weights.layers[l], x: &x, segments: segments, scratch: &scratch, capture: nil)
            } else {
                block(weights.layers[l], x: &x, segments: segments, scratch: &scratch) { stream, values in
                    guard streams.contains(stream) else { return }
                    out.streams[stream, default: [:]][l + 1] = Tensor(shape: [rows, width], scalars: Array(UnsafeBufferPointer(start: values, count: rows * width)))
                }
            }
            if layers.contains(l + 1) { out.hidden[l + 1] = x }
        }
        return out
    }

    /// z_0 = LN(word[id] + position[p] + type[t]) for each packed token.
    private func embed(ids: [Int32], tokenTypes: [Int32], segments: Segments) -> Tensor {
        let width = config.hiddenSize
        var x = Tensor(zeros: [ids.count, width])
        x.withUnsafeMutableBufferPointer { out in
            weights.wordEmbeddings.withUnsafeBufferPointer { word in
                weights.positionEmbeddings.withUnsafeBufferPointer { position in
                    weights.tokenTypeEmbeddings.withUnsafeBufferPointer { type in
                        for b in 0..<segments.count {
                            for (p, t) in segments.range(b).enumerated() {
                                let row = out.baseAddress! + t * width
                                let w = word.baseAddress! + Int(ids[t]) * width
                                let pe = position.baseAddress! + p * width
                                let te = type.baseAddress! + Int(tokenTypes[t]) * width
                                for j in 0..<width { row[j] = w[j] + pe[j] + te[j] }
                            }
                        }
                    }
                }
            }
            layerNorm(out.baseAddress!, weights.embeddingNorm, rows: ids.count)
        }
        return x
    }

    /// Buffers reused by every block of a batch.
    private struct Scratch {
        /// [T, 3·hidden]: each row's query, key and value.
        var queryKeyValue: [Float]
        var context, projected: [Float]
        var inner: [Float]
        init(rows: Int, width: Int, intermediate: Int) {
            queryKeyValue = [Float](repeating: 0, count: rows * 3 * width)
            context = [Float](repeating: 0, count: rows * width)
            projected = context
            inner = [Float](repeating: 0, count: rows * intermediate)
        }
    }

    /// One post-LN block, in place on x [T, hidden]; `capture` sees each branch output [T, hidden]
    /// before its residual add.
    private func block(_ layer: BertWeights.Layer, x: inout Tensor, segments: Segments, scratch: inout Scratch,
                       capture: ((EncoderStream, UnsafePointer<Float>) -> Void)?) {
        let rows = x.rowCount, width = config.hiddenSize, inner = config.intermediateSize
        let heads = config.headCount
        x.withUnsafeMutableBufferPointer { xb in
            let xp = xb.baseAddress!
            scratch.queryKeyValue.withUnsafeMutableBufferPointer { qkv in
                scratch.context.withUnsafeMutableBufferPointer { context in
                    scratch.projected.withUnsafeMutableBufferPointer { projected in
                        scratch.inner.withUnsafeMutableBufferPointer { hidden in
                            let q = qkv.baseAddress!
                            linear(q, xp, layer.queryKeyValue, rows: rows)
                            AttentionKernel.forward(out: context.baseAddress!, probabilities: nil, q: q, k: q + width, v: q + 2 * width,
                                                    inputStride: 3 * width, segments: segments,
                                                    heads: heads, headSize: width / heads, keyMask: nil)
                            linear(projected.baseAddress!, context.baseAddress!, layer.attentionOutput, rows: rows)
                            capture?(.attention, projected.baseAddress!)
                            // h = LN(x + attention), written over x.
                            for i in 0..<(rows * width) { xp[i] += projected[i] }
                            layerNorm(xp, layer.attentionNorm, rows: rows)
                            // z = LN(h + W2·gelu(W1·h)), written over x.
                            linear(hidden.baseAddress!, xp, layer.intermediate, rows: rows)
                            ActivationKernel.forward(activation, out: hidden.baseAddress!, x: hidden.baseAddress!, count: rows * inner)
                            linear(projected.baseAddress!, hidden.baseAddress!, layer.output, rows: rows)
                            capture?(.mlp, projected.baseAddress!)
                            for i in 0..<(rows * width) { xp[i] += projected[i] }
                            layerNorm(xp, layer.outputNorm, rows: rows)
                        }
                    }
                }
            }
        }
    }

    private func linear(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ layer: DenseLayer, rows: Int) {
        layer.apply(out, x, rows: rows)
    }

    private func layerNorm(_ x: UnsafeMutablePointer<Float>, _ norm: NormLayer, rows: Int) {
        norm.apply(x, x, rows: rows, eps: config.layerNormEpsilon)
    }
}
