// Tensor: a contiguous, row-major Float32 array with a shape. Value semantics (copy-on-write through
// the underlying Array). Deliberately not a view/stride system: every kernel reads and writes dense
// rows, which keeps each kernel a plain loop or one BLAS call.

/// A contiguous row-major Float32 tensor.
public struct Tensor: Sendable, Equatable, CustomStringConvertible {
    /// Extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.product`.
    public var scalars: [Float]

    /// Wraps `scalars` with `shape`; the element count must match.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(
            scalars.count == Tensor.elementCount(shape),
            "shape \(shape) needs \(Tensor.elementCount(shape)) elements, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// A tensor of `shape` filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: value, count: Tensor.elementCount(shape)))
    }

    /// A tensor of `shape` filled with zeros.
    public init(zeros shape: [Int]) {
        self.init(repeating: 0, shape: shape)
    }

    /// A rank-0 tensor holding one value.
    public init(scalar: Float) {
        self.init(shape: [], scalars: [scalar])
    }

    /// Number of elements for a shape (1 for rank 0).
    public static func elementCount(_ shape: [Int]) -> Int {
        shape.reduce(1, *)
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// The only element of a one-element tensor.
    public var scalar: Float {
        precondition(count == 1, "scalar of a tensor with shape \(shape)")
        return scalars[0]
    }

    /// Rows when viewed as a matrix whose columns are the last dimension.
    public var rowCount: Int { shape.isEmpty ? 1 : count / max(shape[shape.count - 1], 1) }
    /// The last dimension (1 for rank 0).
    public var columnCount: Int { shape.last ?? 1 }

    /// The same elements with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Element at a multi-index (slow; for tests and printing).
    public subscript(_ index: Int...) -> Float {
        get { scalars[flatIndex(index)] }
        set { scalars[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var flat = 0
        for (i, d) in zip(index, shape) {
            precondition(i >= 0 && i < d, "index \(index) out of range for shape \(shape)")
            flat = flat * d + i
        }
        return flat
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try scalars.withUnsafeBufferPointer(body)
    }

    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        try scalars.withUnsafeMutableBufferPointer(body)
    }

    public var description: String {
        let head = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}

extension Tensor {
    /// A tensor whose every element `fill` writes: nothing is zeroed first, for outputs a kernel
    /// overwrites whole (zeroing them was a tenth of LoSA's step).
    public init(uninitialized shape: [Int], _ fill: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        // No array of capacity 0 through unsafeUninitializedCapacity: it sets the count of the
        // standard library's shared empty-array storage, a write that threads building empty
        // tensors at once race on (ThreadSanitizer reports it).
        guard count > 0 else {
            self.init(shape: shape, scalars: [])
            return
        }
        self.init(shape: shape, scalars: [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(buffer)
            initialized = count
        })
    }
}

/// Calls `body` with each tensor's first element, read-only, in order: one closure where nested
/// withUnsafeBufferPointer calls would go as deep as the list is long (a fused op's backward reads
/// half a dozen tensors). No tensor may be empty.
public func withBaseAddresses<R>(_ tensors: [Tensor], _ body: ([UnsafePointer<Float>]) -> R) -> R {
    var pointers: [UnsafePointer<Float>] = []
    pointers.reserveCapacity(tensors.count)
    func next(_ i: Int) -> R {
        if i == tensors.count { return body(pointers) }
        return tensors[i].withUnsafeBufferPointer { p in
            precondition(p.count > 0, "withBaseAddresses: tensor \(i) of shape \(tensors[i].shape) is empty")
            pointers.append(p.baseAddress!)
            return next(i + 1)
        }
    }
    return next(0)
}
