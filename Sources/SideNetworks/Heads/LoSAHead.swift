// LoSA (Mercea et al., CVPR 2024): a side stream refined layer by layer by low-rank mixers that read
// the frozen features, a_l = a_{l−1} + g_l(z_l + a_{l−1}), f = z_L + a_L. There is no public code;
// this follows the reconstruction in methods-reference §1.2: g = low-rank token mixing along the
// position axis (tied to positions, so sequences are re-padded to N_max), then low-rank channel
// mixing. The up-projections start at zero, so training starts exactly as a linear probe on z_L
// behind a layer norm.
import Autodiff
import TensorCore

public final class LoSAHead: Head, HeadKind {
    public static let name = "losa"
    public static let summary = "LoSA: side stream refined by low-rank token and channel mixers over z_1..z_L"
    public static let schema: [Hyperparameter] = [
        Hyperparameter("rank_tokens", .int(1...4096), default: "16", "rank of each token-mixing MLP (along positions)"),
        Hyperparameter("rank_channels", .int(1...4096), default: "32", "rank of each channel-mixing MLP"),
        Hyperparameter("layers", .layers, default: "all", "blocks whose outputs get a mixer (0 is skipped); z_L is always read"),
        .pool,
        .dropout("0.1"),
    ]
    public static let defaultLearningRate: Float = 1e-3
    public static let batchShards = 2

    struct Mixer {
        let layer: Int
        let tokenNorm: Norm
        let tokenDown: Dense   // V_t [r_t, N]
        let tokenUp: Dense     // U_t [N, r_t], zero
        let channelNorm: Norm
        let channelDown: Dense // A_c
        let channelUp: Dense   // B_c, zero
    }

    public let parameters = ParameterSet()
    public let features: [Feature]
    let mixers: [Mixer]
    let lastLayer: Int
    let maxTokens: Int
    let pooling: PoolingMode
    let dropout: Float
    let headNorm: Norm
    let classifier: Dense

    public static func make(_ h: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head {
        try context.requireAllTokens(head: name)
        guard let maxTokens = context.maxTokens else {
            throw HeadError("head losa mixes tokens by position and needs N_max, which this cache's manifest lacks; extract it again with this version of sidecar")
        }
        let layers = try context.resolveLayers(h.string("layers"), head: name).filter { $0 > 0 }
        try context.requireLayers([context.layerCount], head: name)
        return LoSAHead(layers: layers, maxTokens: maxTokens, rankTokens: h.int("rank_tokens"), rankChannels: h.int("rank_channels"),
                        pooling: poolingMode(h, context), dropout: h.float("dropout"), context: context, seed: seed)
    }

    init(layers: [Int], maxTokens: Int, rankTokens: Int, rankChannels: Int, pooling: PoolingMode, dropout: Float,
         context: HeadContext, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let d = context.width
        self.maxTokens = maxTokens
        self.pooling = pooling
        self.dropout = dropout
        lastLayer = context.layerCount
        let parameters = self.parameters
        mixers = layers.map { l in
            let p = "mixer.\(l)"
            return Mixer(layer: l,
                         tokenNorm: Norm(parameters, p + ".token_norm", width: d),
                         tokenDown: Dense(parameters, p + ".token_down", in: maxTokens, out: rankTokens, rng: &rng),
                         tokenUp: .zero(parameters, p + ".token_up", in: rankTokens, out: maxTokens, rng: &rng),
                         channelNorm: Norm(parameters, p + ".channel_norm", width: d),
                         channelDown: Dense(parameters, p + ".channel_down", in: d, out: rankChannels, rng: &rng),
                         channelUp: .zero(parameters, p + ".channel_up", in: rankChannels, out: d, rng: &rng))
        }
        features = Array(Set(layers + [lastLayer])).sorted().map { .hidden($0) }
        headNorm = Norm(parameters, "head_norm", width: d)
        classifier = Dense(parameters, "classifier", in: d, out: context.classes, rng: &rng)
    }

    public func logits(_ batch: Batch, on tape: Tape) -> Variable {
        let longest = batch.segments.lengths.max() ?? 0
        precondition(longest <= maxTokens, "losa: a sequence of \(longest) tokens is longer than the cache's N_max \(maxTokens)")
        // Positions past the batch's longest sequence are zero in every example, so their slice of
        // the token-mixing weights contributes nothing: mix over n = longest positions only.
        let n = max(longest, 1)
        let padding = Padding(batch.segments, length: n)
        var a: Variable? = nil
        for mixer in mixers {
            let z = tape.constant(batch.tensor(.hidden(mixer.layer)))
            let u = a.map { z + $0 } ?? z
            a = a.map { $0 + update(u, mixer, padding, n) } ?? update(u, mixer, padding, n)
        }
        let zL = tape.constant(batch.tensor(.hidden(lastLayer)))
        let f = a.map { zL + $0 } ?? zL
        let pooled = pool(headNorm(f, parameters), batch, pooling)
        return classifier(pooled.dropout(dropout), parameters)
    }

    /// g(u) = t′ + c′: token mixing along positions, then channel mixing of u + t′.
    func update(_ u: Variable, _ m: Mixer, _ padding: Padding, _ n: Int) -> Variable {
        let tape = u.tape, d = u.shape[1], b = padding.examples
        let t = padding.pad(m.tokenNorm(u, parameters))                        // [B·n, D], padding rows zero
            .reshaped([b, n, d]).transposed()                                    // [B, D, n]
        let down = tape.parameter(parameters, m.tokenDown.weight).slice(0..<n, axis: 1)
        let up = tape.parameter(parameters, m.tokenUp.weight).slice(0..<n, axis: 0)
        let upBias = tape.parameter(parameters, m.tokenUp.bias!).slice(0..<n, axis: 0)
        let mixed = t.linear(down, tape.parameter(parameters, m.tokenDown.bias!)).gelu().linear(up, upBias)  // [B, D, n]
        let tokenUpdate = padding.unpad(mixed.transposed().reshaped([b * n, d]))  // [T, D]
        let v = u + tokenUpdate
        let channelUpdate = m.channelUp(m.channelDown(m.channelNorm(v, parameters), parameters).gelu(), parameters)
        return tokenUpdate + channelUpdate
    }
}
