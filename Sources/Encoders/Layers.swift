// The dense pieces every encoder is made of, bound from checkpoint tensors and applied in place
// on row-major buffers: a linear layer (weight [out, in] as PyTorch stores it; in f32 through
// OpenBLAS, or in bf16 through oneDNN) and a layer norm (always f32).
import OneDNN
import TensorCore

/// A dense layer y = x·Wᵀ + b.
public struct DenseLayer: Sendable {
    public var weight: Tensor   // [out, in]
    public var bias: Tensor     // [out]
    /// The same product in bf16 (weights packed by oneDNN), when the encoder computes in bf16.
    var reduced: BF16Linear?

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// This layer computing in `path`: for bf16 its weights are converted and packed here, once.
    func computing(in path: ComputePath) throws -> DenseLayer {
        var out = self
        switch path {
        case .f32:
            out.reduced = nil
        case .bf16:
            out.reduced = try weight.withUnsafeBufferPointer { w in
                try bias.withUnsafeBufferPointer { b in
                    try BF16Linear(weight: w.baseAddress!, bias: b.baseAddress!, inFeatures: weight.shape[1], outFeatures: weight.shape[0])
                }
            }
        }
        return out
    }

    /// out[rows, out] = x[rows, in] · Wᵀ + b.
    func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int) {
        if let reduced {
            reduced.forward(y: out, x: x, rows: rows)
            return
        }
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                LinearKernel.forward(y: out, x: x, weight: w.baseAddress!, bias: b.baseAddress!, rows: rows,
                                     inFeatures: weight.shape[1], outFeatures: weight.shape[0])
            }
        }
    }
}

extension DenseLayer {
    /// Layers that read the same input as one product: weights stacked by output rows, biases
    /// joined in the same order.
    init(stacking layers: [DenseLayer]) {
        let inputs = layers[0].weight.shape[1]
        precondition(layers.allSatisfy { $0.weight.shape[1] == inputs }, "stacked layers must read the same input width")
        let outputs = layers.reduce(0) { $0 + $1.weight.shape[0] }
        self.init(weight: Tensor(shape: [outputs, inputs], scalars: layers.flatMap(\.weight.scalars)),
                  bias: Tensor(shape: [outputs], scalars: layers.flatMap(\.bias.scalars)))
    }

    /// Output features `range` as a layer of their own (f32).
    func outputs(_ range: Range<Int>) -> DenseLayer {
        let inputs = weight.shape[1]
        return DenseLayer(weight: Tensor(shape: [range.count, inputs],
                                         scalars: Array(weight.scalars[range.lowerBound * inputs ..< range.upperBound * inputs])),
                          bias: Tensor(shape: [range.count], scalars: Array(bias.scalars[range])))
    }
}

/// Layer-norm gain and bias, each [width].
public struct NormLayer: Sendable {
    public var gain: Tensor
    public var bias: Tensor

    public init(gain: Tensor, bias: Tensor) {
        self.gain = gain
        self.bias = bias
    }

    /// out[rows, width] = LN(x); `out` may equal `x`.
    func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, eps: Float) {
        gain.withUnsafeBufferPointer { g in
            bias.withUnsafeBufferPointer { b in
                LayerNormKernel.forward(out: out, mean: nil, rstd: nil, x: x, gain: g.baseAddress!, bias: b.baseAddress!,
                                        rows: rows, cols: gain.count, eps: eps)
            }
        }
    }
}

/// A block-internal branch output an encoder can return besides its hidden states.
public enum EncoderStream: Sendable, Hashable, CaseIterable {
    /// A_l: the attention branch after its output projection, before the residual add and any LN.
    case attention
    /// M_l: the FFN's output projection, before the residual add and any LN.
    case mlp
}

/// Hidden states and branch outputs by layer, each [T, hidden].
public struct EncoderOutputs: Sendable {
    public var hidden: [Int: Tensor] = [:]
    /// Per stream, per layer l ≥ 1.
    public var streams: [EncoderStream: [Int: Tensor]] = [:]
}
