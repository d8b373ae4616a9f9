// A one-hidden-layer probe: pooled states of the chosen layers → LN → dense → GELU → dropout →
// classifier.
import Autodiff
import TensorCore

public final class MLPHead: Head, HeadKind {
    public static let name = "mlp"
    public static let summary = "probe with one GELU hidden layer on the pooled hidden states of the chosen layers"
    public static let schema: [Hyperparameter] = [
        Hyperparameter("layers", .layers, default: "last", "layers whose pooled states are concatenated"),
        .pool,
        Hyperparameter("hidden", .int(1...65536), default: "256", "hidden width"),
        .dropout("0.1", "dropout after the hidden layer"),
    ]
    public static let defaultLearningRate: Float = 1e-3

    public let parameters = ParameterSet()
    public let features: [Feature]
    let pooling: PoolingMode
    let dropout: Float
    let norm: Norm
    let hidden: Dense
    let classifier: Dense

    public static func make(_ h: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head {
        let layers = try context.resolveLayers(h.string("layers"), head: name)
        return MLPHead(layers: layers, pooling: poolingMode(h, context), hidden: h.int("hidden"), dropout: h.float("dropout"),
                       context: context, seed: seed)
    }

    init(layers: [Int], pooling: PoolingMode, hidden width: Int, dropout: Float, context: HeadContext, seed: UInt64) {
        features = layers.map { .hidden($0) }
        self.pooling = pooling
        self.dropout = dropout
        var rng = SeededGenerator(seed: seed)
        let inputs = context.width * layers.count
        norm = Norm(parameters, "norm", width: inputs)
        hidden = Dense(parameters, "hidden", in: inputs, out: width, rng: &rng)
        classifier = Dense(parameters, "classifier", in: width, out: context.classes, rng: &rng)
    }

    public func logits(_ batch: Batch, on tape: Tape) -> Variable {
        let pooled = features.map { pooledConstant($0, batch, pooling, on: tape) }
        let x = pooled.count == 1 ? pooled[0] : Variable.concat(pooled, axis: 1)
        let h = hidden(norm(x, parameters), parameters).gelu().dropout(dropout)
        return classifier(h, parameters)
    }
}
