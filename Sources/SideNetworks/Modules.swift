// Small building blocks the heads share: a dense layer, a layer norm and pooling over packed rows.
// Each holds parameter IDs into its head's set.
import Autodiff
import TensorCore

/// y = x·Wᵀ + b with W [out, in] (PyTorch's layout, so exported weights load anywhere).
public struct Dense: Sendable {
    public let weight: ParameterSet.ID
    public let bias: ParameterSet.ID?

    /// Adds `name.weight` and `name.bias` to `set`. Default init: PyTorch's nn.Linear.
    public init(_ set: ParameterSet, _ name: String, in inputs: Int, out: Int, bias: Bool = true,
                weight initial: Tensor? = nil, biasValue: Tensor? = nil, rng: inout SeededGenerator) {
        let w = initial ?? Initializer.linearWeight(out: out, in: inputs, using: &rng)
        precondition(w.shape == [out, inputs], "\(name).weight: \(w.shape), expected [\(out), \(inputs)]")
        weight = set.add(name + ".weight", w)
        if bias {
            let b = biasValue ?? Initializer.linearBias(out: out, in: inputs, using: &rng)
            self.bias = set.add(name + ".bias", b, decays: false)
        } else {
            self.bias = nil
        }
    }

    /// A dense layer whose weight and bias are zero (an up-projection that starts as a no-op).
    public static func zero(_ set: ParameterSet, _ name: String, in inputs: Int, out: Int, rng: inout SeededGenerator) -> Dense {
        Dense(set, name, in: inputs, out: out, weight: Tensor(zeros: [out, inputs]), biasValue: Tensor(zeros: [out]), rng: &rng)
    }

    /// Init N(0, std²) for the weight and zero bias (LST's side-path linears).
    public static func normal(_ set: ParameterSet, _ name: String, in inputs: Int, out: Int, std: Float, rng: inout SeededGenerator) -> Dense {
        let w = Initializer.normal([out, inputs], std: std, using: &rng)
        return Dense(set, name, in: inputs, out: out, weight: w, biasValue: Tensor(zeros: [out]), rng: &rng)
    }

    public func callAsFunction(_ x: Variable, _ set: ParameterSet) -> Variable {
        let tape = x.tape
        return x.linear(tape.parameter(set, weight), bias.map { tape.parameter(set, $0) })
    }

    /// self(norm(x)) as one node that keeps x rather than the norm's output (SavedLayerNorm),
    /// for a norm nothing else reads.
    public func callAsFunction(_ x: Variable, normalizedBy norm: Norm, _ set: ParameterSet) -> Variable {
        let tape = x.tape
        return x.layerNormLinear(gain: tape.parameter(set, norm.gain), bias: tape.parameter(set, norm.bias), eps: norm.eps,
                                 weight: tape.parameter(set, weight), linearBias: bias.map { tape.parameter(set, $0) })
    }
}

/// Layer norm over the last dimension with a trainable gain and bias.
public struct Norm: Sendable {
    public let gain: ParameterSet.ID
    public let bias: ParameterSet.ID
    public let eps: Float

    public init(_ set: ParameterSet, _ name: String, width: Int, eps: Float = 1e-5, gain: Tensor? = nil, bias: Tensor? = nil) {
        self.gain = set.add(name + ".weight", gain ?? Tensor(repeating: 1, shape: [width]), decays: false)
        self.bias = set.add(name + ".bias", bias ?? Tensor(zeros: [width]), decays: false)
        self.eps = eps
    }

    public func callAsFunction(_ x: Variable, _ set: ParameterSet) -> Variable {
        let tape = x.tape
        return x.layerNorm(gain: tape.parameter(set, gain), bias: tape.parameter(set, bias), eps: eps)
    }
}

/// A cached feature pooled to one row per example, as a constant: computed once per batch however
/// many heads read it (eight probes of a sweep pool the same layers).
public func pooledConstant(_ feature: Feature, _ batch: Batch, _ mode: PoolingMode, on tape: Tape) -> Variable {
    tape.constant(batch.pooledMemo.value(feature, mode) {
        pool(Tape(training: false).constant(batch.tensor(feature)), batch, mode).value
    })
}

/// One vector per example from a feature's rows [rows, D] → [B, D], whatever the cache layout.
public func pool(_ x: Variable, _ batch: Batch, _ mode: PoolingMode) -> Variable {
    switch batch.layout {
    case .cls, .mean:
        return x
    case .clsAndMean:
        return x.gather(rows: batch.segments.firstRows.map { mode == .cls ? $0 : $0 + 1 })
    case .tokens:
        switch mode {
        case .cls: return x.gather(rows: batch.segments.firstRows)
        case .mean: return x.pooled(.mean, segments: batch.segments)
        }
    }
}
