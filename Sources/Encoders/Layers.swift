// The dense pieces every encoder is made of, bound from checkpoint tensors and applied in place
// on row-major buffers: a linear layer (weight [out, in] as PyTorch stores it) and a layer norm.
import TensorCore

/// A dense layer y = x·Wᵀ + b.
public struct DenseLayer: Sendable {
    public var weight: Tensor   // [out, in]
    public var bias: Tensor     // [out]

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// out[rows, out] = x[rows, in] · Wᵀ + b.
    func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                LinearKernel.forward(y: out, x: x, weight: w.baseAddress!, bias: b.baseAddress!, rows: rows,
                                     inFeatures: weight.shape[1], outFeatures: weight.shape[0])
            }
        }
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
