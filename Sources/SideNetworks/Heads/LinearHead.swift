// The linear probe: a classifier on the pooled hidden state of one or more layers (concatenated).
// The baseline every side network is measured against; zero-initialised, so training is a convex
// problem that starts from uniform predictions.
import Autodiff
import TensorCore

public final class LinearHead: Head, HeadKind {
    public static let name = "linear"
    public static let summary = "linear probe on the pooled hidden state of the chosen layers (concatenated)"
    public static let schema: [Hyperparameter] = [
        Hyperparameter("layers", .layers, default: "last", "layers whose pooled states are concatenated"),
        .pool,
        .dropout("0", "dropout on the pooled features"),
    ]
    public static let defaultLearningRate: Float = 1e-2

    public let parameters = ParameterSet()
    public let features: [Feature]
    let pooling: PoolingMode
    let dropout: Float
    let classifier: Dense

    public static func make(_ h: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head {
        let layers = try context.resolveLayers(h.string("layers"), head: name)
        return LinearHead(layers: layers, pooling: poolingMode(h, context), dropout: h.float("dropout"), context: context, seed: seed)
    }

    init(layers: [Int], pooling: PoolingMode, dropout: Float, context: HeadContext, seed: UInt64) {
        features = layers.map { .hidden($0) }
        self.pooling = pooling
        self.dropout = dropout
        var rng = SeededGenerator(seed: seed)
        let inputs = context.width * layers.count
        classifier = Dense.zero(parameters, "classifier", in: inputs, out: context.classes, rng: &rng)
    }

    public func logits(_ batch: Batch, on tape: Tape) -> Variable {
        let pooled = features.map { pooledConstant($0, batch, pooling, on: tape) }
        let x = pooled.count == 1 ? pooled[0] : Variable.concat(pooled, axis: 1)
        return classifier(x.dropout(dropout), parameters)
    }
}

/// The `pool` hyperparameter resolved against the backbone's own pooling.
func poolingMode(_ h: Hyperparameters, _ context: HeadContext) -> PoolingMode {
    switch h.string("pool") {
    case "cls": .cls
    case "mean": .mean
    default: context.pooling
    }
}

extension Hyperparameters {
    /// Refuses a `pool` other than the cache's own on a cache of one pooled row per example: it
    /// would be recorded in the head's config and never applied. Checked before training only, so
    /// that heads fitted before the check still load.
    public func checkPoolingForTraining(context: HeadContext) throws {
        guard case .string(let pool) = values["pool"], pool != "auto", [.cls, .mean].contains(context.layout),
              pool != context.layout.rawValue else { return }
        throw HeadError("--set pool=\(pool): this cache holds one \(context.layout.rawValue) row per example (--tokens \(context.layout.rawValue)); "
                        + "extract with --tokens all or cls+mean to choose the pooling when fitting")
    }
}
