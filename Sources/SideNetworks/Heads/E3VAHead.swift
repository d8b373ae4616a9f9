// E3VA (Yin et al., 2023): low-rank adapters on a gradient highway parallel to the backbone. There
// is no public code; this follows the reconstruction in methods-reference §4.2: one adapter on each
// block's attention-branch output A_l and one on its MLP-branch output M_l, all in parallel, summed
// into the highway e, and f = z_L + Norm(e). The up-projections start at zero, so training starts
// as a probe on z_L behind a layer norm. The "dual low-rank" reading (b) is the optional inner rank.
import Autodiff
import TensorCore

public final class E3VAHead: Head, HeadKind {
    public static let name = "e3va"
    public static let summary = "E3VA: parallel low-rank adapters on each block's attention and MLP branch outputs"
    public static let schema: [Hyperparameter] = [
        Hyperparameter("rank", .int(1...4096), default: "16", "adapter rank r"),
        Hyperparameter("inner_rank", .int(0...4096), default: "0", "dual low-rank: factor each projection through this rank (0: off)"),
        Hyperparameter("layers", .layers, default: "all", "blocks whose branches get adapters (0 is skipped)"),
        .pool,
        .dropout("0.1"),
    ]
    public static let defaultLearningRate: Float = 1e-3
    public static let batchShards = 2

    public func stepFlops(tokens: Double) -> StepFlops { .perToken(parameters: parameterCount, tokens: tokens) }

    /// E(x) = GELU(x·W_d + b_d)·W_u + b_u, each projection optionally through an inner rank.
    struct Adapter {
        let feature: Feature
        let down: [Dense]
        let up: [Dense]
    }

    public let parameters = ParameterSet()
    public let features: [Feature]
    let adapters: [Adapter]
    let lastLayer: Int
    let highwayNorm: Norm
    let headNorm: Norm
    let classifier: Dense
    let pooling: PoolingMode
    let dropout: Float

    /// The adapters act token by token: a CLS head needs only the CLS rows, but they are
    /// non-linear, so a mean head needs every token (on a mean row they compute another function
    /// than the mean of their outputs). Refused before training only: heads fitted on mean rows
    /// before the check still load.
    public static func checkForTraining(_ h: Hyperparameters, context: HeadContext) throws {
        try h.checkPoolingForTraining(context: context)
        if poolingMode(h, context) == .mean && context.layout != .tokens {
            throw HeadError("head e3va with mean pooling needs all tokens (its adapters are non-linear, so they cannot act on a mean row), "
                            + "but the cache stores '\(context.layout.rawValue)' rows; extract again with --tokens all, or set pool=cls")
        }
    }

    public static func make(_ h: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head {
        let missing = ["attn", "mlp"].filter { !context.streams.contains($0) }
        guard missing.isEmpty else {
            throw HeadError("head e3va reads each block's attention and MLP branch outputs, but this cache lacks the \(missing.joined(separator: ", ")) stream\(missing.count == 1 ? "" : "s"); extract again with --streams attn,mlp")
        }
        let pooling = poolingMode(h, context)
        if pooling == .mean && context.layout == .cls || pooling == .cls && context.layout == .mean {
            throw HeadError("head e3va with \(pooling.rawValue) pooling needs all tokens (or, for cls, the cls rows), but the cache stores "
                            + "'\(context.layout.rawValue)' rows; extract again with --tokens all")
        }
        let layers = try context.resolveBlocks(h.string("layers"), head: name)
        try context.requireLayers([context.layerCount], head: name)
        return E3VAHead(layers: layers, rank: h.int("rank"), innerRank: h.int("inner_rank"), pooling: pooling,
                        dropout: h.float("dropout"), context: context, seed: seed)
    }

    init(layers: [Int], rank: Int, innerRank: Int, pooling: PoolingMode, dropout: Float, context: HeadContext, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let d = context.width
        self.pooling = pooling
        self.dropout = dropout
        lastLayer = context.layerCount
        var adapters: [Adapter] = []
        for l in layers {
            for (feature, kind) in [(Feature.attention(l), "attn"), (Feature.mlp(l), "mlp")] {
                let p = "adapter.\(l).\(kind)"
                let down: [Dense], up: [Dense]
                if innerRank > 0 {
                    down = [Dense(parameters, p + ".down.0", in: d, out: innerRank, bias: false, rng: &rng),
                            Dense(parameters, p + ".down.1", in: innerRank, out: rank, rng: &rng)]
                    up = [Dense(parameters, p + ".up.0", in: rank, out: innerRank, bias: false, rng: &rng),
                          .zero(parameters, p + ".up.1", in: innerRank, out: d, rng: &rng)]
                } else {
                    down = [Dense(parameters, p + ".down", in: d, out: rank, rng: &rng)]
                    up = [.zero(parameters, p + ".up", in: rank, out: d, rng: &rng)]
                }
                adapters.append(Adapter(feature: feature, down: down, up: up))
            }
        }
        self.adapters = adapters
        features = adapters.map(\.feature) + [.hidden(lastLayer)]
        highwayNorm = Norm(parameters, "highway_norm", width: d)
        headNorm = Norm(parameters, "head_norm", width: d)
        classifier = Dense(parameters, "classifier", in: d, out: context.classes, rng: &rng)
    }

    public func logits(_ batch: Batch, on tape: Tape) -> Variable {
        // The adapters act token by token, so a class-token head needs only the class-token rows.
        // A mean head fitted on mean rows (before `checkForTraining` refused it) reads them.
        let rows: [Int]? = batch.layout == .tokens && pooling == .cls ? batch.segments.firstRows
            : batch.layout == .clsAndMean ? batch.segments.firstRows.map { pooling == .cls ? $0 : $0 + 1 } : nil
        func input(_ feature: Feature) -> Variable {
            let x = tape.constant(batch.tensor(feature))
            return rows.map { x.gather(rows: $0) } ?? x
        }
        var highway: Variable? = nil
        for adapter in adapters {
            var h = input(adapter.feature)
            for (i, dense) in adapter.down.enumerated() { h = dense(h, parameters); if i == adapter.down.count - 1 { h = h.gelu() } }
            for dense in adapter.up { h = dense(h, parameters) }
            highway = highway.map { $0 + h } ?? h
        }
        let zL = input(.hidden(lastLayer))
        let f = highway.map { zL + highwayNorm($0, parameters) } ?? zL
        let normed = headNorm(f, parameters)
        let pooled = rows != nil || batch.layout != .tokens ? normed : pool(normed, batch, pooling)
        return classifier(pooled.dropout(dropout), parameters)
    }
}
