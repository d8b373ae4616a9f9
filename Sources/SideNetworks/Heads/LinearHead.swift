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
        return LinearHead(layers: layers, pooling: try poolingMode(h, context), dropout: h.float("dropout"), context: context, seed: seed)
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
func poolingMode(_ h: Hyperparameters, _ context: HeadContext) throws -> PoolingMode {
    let mode: PoolingMode = switch h.string("pool") {
    case "cls": .cls
    case "mean": .mean
    default: context.pooling
    }
    // A cache of one row per example was pooled when it was extracted: another pooling here would
    // be recorded in the head's config and never applied.
    if h.string("pool") != "auto", [.cls, .mean].contains(context.layout), mode.rawValue != context.layout.rawValue {
        throw HeadError("--set pool=\(mode.rawValue): this cache holds one \(context.layout.rawValue) row per example (--tokens \(context.layout.rawValue)); "
                        + "extract with --tokens all or cls+mean to choose the pooling when fitting")
    }
    return mode
}
