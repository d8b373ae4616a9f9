// The frozen ViT forward pass (inference only): patch embedding as one product over unfolded
// patches, a class token, position embeddings (bicubically interpolated, as PyTorch does, when the
// image size differs from the configuration's), then pre-LN blocks: h = x + Attn(LN(x)),
// z = h + MLP(LN(h)). Hidden states are those of ViTModel's `hidden_states` (no final norm). The
// dense products (patch embedding included) run in f32 or bf16 (see ComputePath); the rest is f32.
// CLIP's vision tower is the same computation with three differences (ViTConfig.Family): no bias
// on the patch projection, a layer norm on the embeddings before the first block (CLIPVisionModel's
// hidden state 0 is its output), and its own weight names; its MLP activation is quick GELU.
// transformers interpolates CLIP's position embeddings exactly as ViT's (interpolate_pos_encoding).
import Foundation
import OneDNN
import SafeTensors
import TensorCore

public final class ViTEncoder: Sendable {
    public struct Layer: Sendable {
        public var normBefore: NormLayer
        /// Query, key and value stacked, [3·D, D]: one product reads the normed input once.
        public var queryKeyValue: DenseLayer
        public var attentionOutput: DenseLayer
        public var query: DenseLayer { queryKeyValue.outputs(0..<width) }
        public var key: DenseLayer { queryKeyValue.outputs(width..<2 * width) }
        public var value: DenseLayer { queryKeyValue.outputs(2 * width..<3 * width) }
        var width: Int { queryKeyValue.weight.shape[1] }
        public var normAfter: NormLayer
        public var intermediate, output: DenseLayer
    }

    public let config: ViTConfig
    /// The arithmetic of the dense products.
    public let compute: ComputePath
    let patchProjection: DenseLayer     // weight [D, C·P·P]
    let classToken: Tensor              // [D]
    let positions: Tensor               // [1 + N, D]
    /// CLIP's pre_layrnorm on the embeddings; nil for ViT.
    let embeddingNorm: NormLayer?
    let layers: [Layer]
    /// ViT's final layernorm; CLIP's post_layernorm (applied to the class token for its pooled output).
    let finalNorm: NormLayer
    private let activation: Activation

    /// The tensor names of one checkpoint layout, without the file's prefix.
    private struct Names {
        var classToken, patchWeight, positions, finalNorm: String
        /// Nil where the checkpoint has none (CLIP's patch projection, ViT's embedding norm).
        var patchBias, embeddingNorm: String?
        /// Block l's names: norm before attention, query, key, value, attention output, norm
        /// before the MLP, MLP in, MLP out.
        var block: (Int) -> [String]

        static func of(_ family: ViTConfig.Family) -> Names {
            switch family {
            case .vit:
                Names(classToken: "embeddings.cls_token", patchWeight: "embeddings.patch_embeddings.projection.weight",
                      positions: "embeddings.position_embeddings", finalNorm: "layernorm",
                      patchBias: "embeddings.patch_embeddings.projection.bias", embeddingNorm: nil) { l in
                    ["layernorm_before", "attention.attention.query", "attention.attention.key", "attention.attention.value",
                     "attention.output.dense", "layernorm_after", "intermediate.dense", "output.dense"].map { "encoder.layer.\(l).\($0)" }
                }
            case .clip:
                Names(classToken: "embeddings.class_embedding", patchWeight: "embeddings.patch_embedding.weight",
                      positions: "embeddings.position_embedding.weight", finalNorm: "post_layernorm",
                      patchBias: nil, embeddingNorm: "pre_layrnorm") { l in
                    ["layer_norm1", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                     "self_attn.out_proj", "layer_norm2", "mlp.fc1", "mlp.fc2"].map { "encoder.layers.\(l).\($0)" }
                }
            }
        }
    }

    /// Reads `config.json` and `model.safetensors` from `folder`, checking every shape; for bf16,
    /// packs every dense layer's weights for oneDNN (throws when this CPU cannot compute bf16).
    /// A CLIP checkpoint's tensors may carry the prefix "vision_model." (CLIPModel,
    /// CLIPVisionModelWithProjection, CLIPVisionModel saved by transformers 4) or none
    /// (CLIPVisionModel saved by transformers 5); tensors outside the vision tower are ignored.
    public init(folder: URL, compute: ComputePath = .f32) throws {
        let config = try ViTConfig(contentsOf: folder.appendingPathComponent("config.json"))
        let file = try SafeTensorsFile(path: folder.appendingPathComponent("model.safetensors").path)
        let names = Names.of(config.family)
        let prefixes = config.family == .clip ? ["", "vision_model."] : ["", "vit."]
        let prefix = prefixes.first { file.names.contains($0 + names.classToken) }
        guard let prefix else {
            throw EncoderError("\(file.path): no tensor \"\(prefixes.last! + names.classToken)\" (is this a \(config.family == .clip ? "CLIP" : "ViT") checkpoint?)")
        }
        func load(_ name: String, _ shape: [Int]) throws -> Tensor { try file.tensor(prefix + name, expectedShape: shape) }
        let d = config.hiddenSize, c = config.channelCount, p = config.patchSize, n = config.patchesPerSide * config.patchesPerSide
        func dense(_ name: String, out: Int, in inputs: Int) throws -> DenseLayer {
            DenseLayer(weight: try load(name + ".weight", [out, inputs]), bias: try load(name + ".bias", [out]))
        }
        func norm(_ name: String) throws -> NormLayer {
            NormLayer(gain: try load(name + ".weight", [d]), bias: try load(name + ".bias", [d]))
        }
        self.config = config
        self.compute = compute
        // The shapes as each layout stores them: ViT keeps leading unit dimensions.
        let leading = config.family == .vit ? [1] : []
        // CLIP's patch convolution has no bias: a zero one keeps one product for both layouts.
        patchProjection = try DenseLayer(
            weight: try load(names.patchWeight, [d, c, p, p]).reshaped([d, c * p * p]),
            bias: try names.patchBias.map { try load($0, [d]) } ?? Tensor(zeros: [d])).computing(in: compute)
        classToken = try load(names.classToken, leading + leading + [d]).reshaped([d])
        positions = try load(names.positions, leading + [n + 1, d]).reshaped([n + 1, d])
        embeddingNorm = try names.embeddingNorm.map(norm)
        layers = try (0..<config.layerCount).map { l in
            let block = names.block(l)
            return Layer(
                normBefore: try norm(block[0]),
                queryKeyValue: try DenseLayer(stacking: block[1...3].map { try dense($0, out: d, in: d) }).computing(in: compute),
                attentionOutput: try dense(block[4], out: d, in: d).computing(in: compute),
                normAfter: try norm(block[5]),
                intermediate: try dense(block[6], out: config.intermediateSize, in: d).computing(in: compute),
                output: try dense(block[7], out: d, in: config.intermediateSize).computing(in: compute))
        }
        finalNorm = try norm(names.finalNorm)
        activation = config.activation
    }

    /// Hidden states z_l, l ∈ `layers` (0 = embeddings), for images [B, C, H, W] (preprocessed).
    /// Each is [B·(1 + patches), D]: per image its class token, then its patches row by row.
    public func hiddenStates(pixels: Tensor, layers keep: Set<Int>) throws -> [Int: Tensor] {
        try hiddenStates(pixels: pixels, layers: keep, streams: []).hidden
    }

    /// Hidden states z_l, l ∈ `layers`, and for every such l ≥ 1 the requested branch outputs of
    /// block l: A_l and M_l before their residual adds, so z_l = z_{l-1} + A_l + M_l.
    public func hiddenStates(pixels: Tensor, layers keep: Set<Int>, streams: Set<EncoderStream>) throws -> EncoderOutputs {
        guard pixels.rank == 4, pixels.shape[1] == config.channelCount else {
            throw EncoderError("images must be [batch, \(config.channelCount), height, width], got \(pixels.shape)")
        }
        let (batch, height, width) = (pixels.shape[0], pixels.shape[2], pixels.shape[3])
        let p = config.patchSize
        guard height % p == 0, width % p == 0 else {
            throw EncoderError("image size \(height)×\(width) is not a multiple of the patch size \(p)")
        }
        guard let deepest = keep.max() else { return EncoderOutputs() }
        precondition(keep.allSatisfy { (0...config.layerCount).contains($0) }, "layers \(keep.sorted()) outside 0...\(config.layerCount)")
        let rowsPerImage = 1 + (height / p) * (width / p)
        var x = embed(pixels, batch: batch, height: height, width: width)
        var out = EncoderOutputs()
        if keep.contains(0) { out.hidden[0] = x }
        let segments = Segments(lengths: Array(repeating: rowsPerImage, count: batch))
        let (rows, d) = (x.rowCount, config.hiddenSize)
        var scratch = Scratch(rows: rows, width: d, intermediate: config.intermediateSize)
        for l in 0..<deepest {
            if streams.isEmpty || !keep.contains(l + 1) {
                block(layers[l], x: &x, segments: segments, scratch: &scratch, capture: nil)
            } else {
                block(layers[l], x: &x, segments: segments, scratch: &scratch) { stream, values in
                    guard streams.contains(stream) else { return }
                    out.streams[stream, default: [:]][l + 1] = Tensor(shape: [rows, d], scalars: Array(UnsafeBufferPointer(start: values, count: rows * d)))
                }
            }
            if keep.contains(l + 1) { out.hidden[l + 1] = x }
        }
        return out
    }

    /// The final layer norm on every row: ViTModel's `last_hidden_state` is this applied to the
    /// last state; CLIPVisionModel's `pooler_output` is its class-token rows.
    public func finalNormed(_ state: Tensor) -> Tensor {
        var out = state
        out.withUnsafeMutableBufferPointer { o in finalNorm.apply(o.baseAddress!, o.baseAddress!, rows: state.rowCount, eps: config.layerNormEpsilon) }
        return out
    }

    private func embed(_ pixels: Tensor, batch: Int, height: Int, width: Int) -> Tensor {
        let (c, p, d) = (config.channelCount, config.patchSize, config.hiddenSize)
        let (rowsOut, colsOut) = (height / p, width / p)
        let patches = rowsOut * colsOut, patchWidth = c * p * p
        // Unfold every patch into a row (channel, then patch row, then patch column: the
        // convolution weight's order), so the patch embedding is one product.
        var unfolded = [Float](repeating: 0, count: batch * patches * patchWidth)
        for b in 0..<batch {
            for py in 0..<rowsOut {
                for px in 0..<colsOut {
                    let row = (b * patches + py * colsOut + px) * patchWidth
                    for ch in 0..<c {
                        for dy in 0..<p {
                            let source = ((b * c + ch) * height + py * p + dy) * width + px * p
                            for dx in 0..<p { unfolded[row + (ch * p + dy) * p + dx] = pixels.scalars[source + dx] }
                        }
                    }
                }
            }
        }
        var projected = [Float](repeating: 0, count: batch * patches * d)
        projected.withUnsafeMutableBufferPointer { out in
            unfolded.withUnsafeBufferPointer { patchesIn in patchProjection.apply(out.baseAddress!, patchesIn.baseAddress!, rows: batch * patches) }
        }
        let position = rowsOut == config.patchesPerSide && colsOut == config.patchesPerSide
            ? positions : interpolatedPositions(rows: rowsOut, columns: colsOut)
        var x = Tensor(zeros: [batch * (1 + patches), d])
        for b in 0..<batch {
            let base = b * (1 + patches) * d
            for j in 0..<d { x.scalars[base + j] = classToken.scalars[j] + position.scalars[j] }
            for t in 0..<patches {
                for j in 0..<d {
                    x.scalars[base + (1 + t) * d + j] = projected[(b * patches + t) * d + j] + position.scalars[(1 + t) * d + j]
                }
            }
        }
        if let embeddingNorm {
            let rows = x.rowCount
            x.withUnsafeMutableBufferPointer { o in embeddingNorm.apply(o.baseAddress!, o.baseAddress!, rows: rows, eps: config.layerNormEpsilon) }
        }
        return x
    }

    /// Position embeddings for a rows × columns patch grid: the class position unchanged, the patch
    /// grid resized with PyTorch's bicubic interpolation (A = −0.75, align_corners=False).
    func interpolatedPositions(rows: Int, columns: Int) -> Tensor {
        let d = config.hiddenSize, side = config.patchesPerSide
        func weights(_ t: Float) -> [Float] {
            let a: Float = -0.75
            func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
            func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
            return [far(t + 1), near(t), near(1 - t), far(2 - t)]
        }
        func taps(_ output: Int, size: Int) -> [(index: Int, weight: Float)] {
            let scale = Float(side) / Float(size)
            let source = scale * (Float(output) + 0.5) - 0.5
            let floor = Int(source.rounded(.down))
            return zip(-1...2, weights(source - Float(floor))).map { (min(max(floor + $0, 0), side - 1), $1) }
        }
        var out = Tensor(zeros: [1 + rows * columns, d])
        for j in 0..<d { out.scalars[j] = positions.scalars[j] }
        for y in 0..<rows {
            let ys = taps(y, size: rows)
            for x in 0..<columns {
                let xs = taps(x, size: columns)
                let target = (1 + y * columns + x) * d
                for j in 0..<d {
                    var value: Float = 0
                    for (yi, wy) in ys {
                        var line: Float = 0
                        for (xi, wx) in xs { line += wx * positions.scalars[(1 + yi * side + xi) * d + j] }
                        value += wy * line
                    }
                    out.scalars[target + j] = value
                }
            }
        }
        return out
    }

    /// Buffers reused by every block of a batch (each block overwrites what it reads of them).
    private struct Scratch {
        /// [T, 3·D]: each row's query, key and value.
        var queryKeyValue: [Float]
        var normed, context, projected: [Float]
        var inner: [Float]
        init(rows: Int, width: Int, intermediate: Int) {
            queryKeyValue = [Float](repeating: 0, count: rows * 3 * width)
            normed = [Float](repeating: 0, count: rows * width)
            context = normed
            projected = normed
            inner = [Float](repeating: 0, count: rows * intermediate)
        }
    }

    /// One pre-LN block, in place on x [T, D]; `capture` sees each branch output [T, D] before its
    /// residual add.
    private func block(_ layer: Layer, x: inout Tensor, segments: Segments, scratch: inout Scratch,
                       capture: ((EncoderStream, UnsafePointer<Float>) -> Void)?) {
        let rows = x.rowCount, d = config.hiddenSize, eps = config.layerNormEpsilon
        x.withUnsafeMutableBufferPointer { xb in
            let xp = xb.baseAddress!
            scratch.normed.withUnsafeMutableBufferPointer { n in
                layer.normBefore.apply(n.baseAddress!, xp, rows: rows, eps: eps)
                scratch.queryKeyValue.withUnsafeMutableBufferPointer { layer.queryKeyValue.apply($0.baseAddress!, n.baseAddress!, rows: rows) }
            }
            scratch.context.withUnsafeMutableBufferPointer { ctx in
                scratch.queryKeyValue.withUnsafeBufferPointer { qkv in
                    let q = qkv.baseAddress!
                    AttentionKernel.forward(out: ctx.baseAddress!, probabilities: nil, q: q, k: q + d, v: q + 2 * d, inputStride: 3 * d,
                                            segments: segments, heads: config.headCount, headSize: d / config.headCount, keyMask: nil)
                }
                scratch.projected.withUnsafeMutableBufferPointer { proj in
                    layer.attentionOutput.apply(proj.baseAddress!, ctx.baseAddress!, rows: rows)
                    capture?(.attention, proj.baseAddress!)
                    for i in 0..<(rows * d) { xp[i] += proj[i] }
                }
            }
            scratch.normed.withUnsafeMutableBufferPointer { n in
                layer.normAfter.apply(n.baseAddress!, xp, rows: rows, eps: eps)
                scratch.inner.withUnsafeMutableBufferPointer { h in
                    layer.intermediate.apply(h.baseAddress!, n.baseAddress!, rows: rows)
                    ActivationKernel.forward(activation, out: h.baseAddress!, x: h.baseAddress!, count: h.count)
                    scratch.projected.withUnsafeMutableBufferPointer { proj in
                        layer.output.apply(proj.baseAddress!, h.baseAddress!, rows: rows)
                        capture?(.mlp, proj.baseAddress!)
                        for i in 0..<(rows * d) { xp[i] += proj[i] }
                    }
                }
            }
        }
    }
}
