// The backbone's own block type, differentiable, for heads that run blocks on the tape: LST's side
// blocks (pruned copies) and the consolidator's top blocks (full copies with grouped branches).
// Which linear and norm to apply is left to the caller, so both heads share one forward.
import ActivationStore
import Autodiff
import TensorCore

/// Where the layer norms sit.
public enum BlockLayout: String, Sendable {
    /// BERT: h = LN₁(x + Attn(x)); z = LN₂(h + FFN(h)).
    case postLN = "post-ln"
    /// ViT: h = x + Attn(LN₁(x)); z = h + FFN(LN₂(h)).
    case preLN = "pre-ln"

    /// Blob tensor names of the two norms of block l.
    func normNames(_ l: Int) -> (String, String) {
        switch self {
        case .postLN: ("block.\(l).attention.norm", "block.\(l).output.norm")
        case .preLN: ("block.\(l).norm1", "block.\(l).norm2")
        }
    }
}

/// The block settings stored with a blob's metadata.
public struct BlockShape: Sendable {
    public var layout: BlockLayout
    public var heads: Int
    public var eps: Float
    public var activation: Activation

    /// Reads layout, heads, eps and activation from a blob's metadata.
    public init(blob: Blob) throws {
        guard let layout = blob.metadata["layout"].flatMap(BlockLayout.init(rawValue:)) else {
            throw HeadError("\(blob.label) has no known block layout in its metadata")
        }
        self.layout = layout
        heads = try blob.int("heads", atLeast: 1)
        eps = try blob.positiveFloat("eps")
        switch blob.metadata["activation"] {
        case "gelu": activation = .gelu
        case "gelu_tanh": activation = .geluTanh
        case "quick_gelu": activation = .quickGelu
        case nil: throw HeadError("\(blob.label) has no activation in its metadata")
        case let other?: throw HeadError("\(blob.label) has activation \(other); sidecar knows gelu, gelu_tanh and quick_gelu")
        }
    }

    /// Checks that `blob` holds blocks `blocks` of this shape at `width`: its heads divide the
    /// width, every matrix and vector has the shape a block of that width applies, and the two
    /// feed-forward matrices agree on their inner width.
    public func checkBlocks(in blob: Blob, _ blocks: [Int], width: Int) throws {
        guard width % heads == 0 else {
            throw HeadError("\(blob.label): width \(width) is not a multiple of its \(heads) heads")
        }
        func vector(_ name: String, _ count: Int) throws { _ = try blob.tensor(name, [count]) }
        for l in blocks {
            for name in ["query", "key", "value", "output"].map({ "block.\(l).attention.\($0)" }) {
                _ = try blob.tensor(name + ".weight", [width, width])
                try vector(name + ".bias", width)
            }
            let inner = try blob.matrix("block.\(l).intermediate.weight").shape[0]
            _ = try blob.tensor("block.\(l).intermediate.weight", [inner, width])
            try vector("block.\(l).intermediate.bias", inner)
            _ = try blob.tensor("block.\(l).output.weight", [width, inner])
            try vector("block.\(l).output.bias", width)
            let (n1, n2) = layout.normNames(l)
            for n in [n1, n2] {
                try vector(n + ".weight", width)
                try vector(n + ".bias", width)
            }
        }
        if layout == .preLN {
            try vector("final_norm.weight", width)
            try vector("final_norm.bias", width)
        }
    }

    public init(layout: BlockLayout, heads: Int, eps: Float, activation: Activation) {
        self.layout = layout
        self.heads = heads
        self.eps = eps
        self.activation = activation
    }
}

/// The linear layers of block l, by their blob tensor names.
public func blockLinearNames(_ l: Int) -> [String] {
    ["query", "key", "value", "output"].map { "block.\(l).attention.\($0)" } + ["block.\(l).intermediate", "block.\(l).output"]
}

/// Runs one block on packed rows x [T, D]. `linear(name, x)` applies the layer named
/// `block.l.attention.query`, …; `norm(name, x)` the norm named per `BlockLayout.normNames`.
/// `dropout` is applied where BERT's and timm's blocks apply their hidden (projection) dropout: to
/// the attention and feed-forward outputs, before each joins the residual; a no-op off training.
public func transformerBlock(
    _ x: Variable, block l: Int, shape: BlockShape, segments: Segments, dropout: Float = 0,
    linear: (String, Variable) -> Variable, norm: (String, Variable) -> Variable
) -> Variable {
    let (norm1, norm2) = shape.layout.normNames(l)
    let p = "block.\(l)"
    func attention(_ input: Variable) -> Variable {
        let q = linear(p + ".attention.query", input)
        let k = linear(p + ".attention.key", input)
        let v = linear(p + ".attention.value", input)
        return linear(p + ".attention.output", q.attention(keys: k, values: v, heads: shape.heads, segments: segments))
            .dropout(dropout)
    }
    func feedForward(_ input: Variable) -> Variable {
        linear(p + ".output", linear(p + ".intermediate", input).applying(shape.activation)).dropout(dropout)
    }
    switch shape.layout {
    case .postLN:
        let h = norm(norm1, x + attention(x))
        return norm(norm2, h + feedForward(h))
    case .preLN:
        let h = x + attention(norm(norm1, x))
        return h + feedForward(norm(norm2, h))
    }
}
