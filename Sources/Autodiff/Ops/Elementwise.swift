// Differentiable element-wise arithmetic: broadcast add/subtract/multiply and scalar scaling.
import TensorCore

extension Variable {
    /// a ∘ b with NumPy broadcasting; gradients are summed over broadcast dimensions.
    public func binary(_ operation: BinaryOperation, _ other: Variable) -> Variable {
        let a = value, b = other.value
        guard Broadcast(a.shape, b.shape) != nil else {
            preconditionFailure("\(operation): shapes \(a.shape) and \(other.shape) do not broadcast")
        }
        let out = Self.fast(operation, a, b) ?? Tensor.binary(operation, a, b)
        let (lhs, rhs) = (handle, other.handle)
        // A sum's or difference's backward needs only the shapes: its inputs' values are not
        // kept alive for it.
        let (aShape, bShape) = (a.shape, b.shape)
        let (savedA, savedB): (Tensor?, Tensor?) = operation == .multiply ? (a, b) : (nil, nil)
        return tape.record(out, inputs: [lhs, rhs]) { gradOut, tape in
            guard gradOut.count > 0 else { return }
            // Each input's gradient over the output's shape through the forward kernel (whose
            // contiguous and scalar-per-row cases vectorise), then summed over the dimensions the
            // input was broadcast along; an input of the output's shape takes it as it is.
            if tape.needsGradient(lhs) {
                let full = operation == .multiply ? Self.multiply(gradOut, savedB!) : gradOut
                tape.accumulate(lhs, full.shape == aShape ? full : full.summed(to: aShape))
            }
            if tape.needsGradient(rhs) {
                let full = switch operation {
                case .add: gradOut
                case .subtract: gradOut.scaled(by: -1)
                case .multiply: Self.multiply(gradOut, savedA!)
                }
                tape.accumulate(rhs, full.shape == bShape ? full : full.summed(to: bShape))
            }
        }
    }

    /// gradOut ∘ x for the multiply's backward, through a fast path when one applies.
    static func multiply(_ gradOut: Tensor, _ x: Tensor) -> Tensor {
        fast(.multiply, gradOut, x) ?? Tensor.binary(.multiply, gradOut, x)
    }

    /// a ∘ b when the operands have one shape, or b holds one value per row of a (a per-example
    /// mask [T, 1] against [T, D]); nil otherwise.
    static func fast(_ operation: BinaryOperation, _ a: Tensor, _ b: Tensor) -> Tensor? {
        if a.shape == b.shape { return elementwise(operation, a, b) }
        if a.rank >= 1, b.shape == Array(a.shape.dropLast()) + [1] { return perRow(operation, a, b) }
        return nil
    }

    /// out[r, j] = a[r, j] ∘ b[r]: the broadcast kernel's scalar-per-row case, row by row into an
    /// unzeroed output (the consolidator's branch drop spent 3% of its step in the general walk).
    static func perRow(_ operation: BinaryOperation, _ a: Tensor, _ b: Tensor) -> Tensor {
        let cols = a.columnCount, rows = a.rowCount
        guard a.count > 0 else { return Tensor(zeros: a.shape) }
        return Tensor(uninitialized: a.shape) { out in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    for r in 0..<rows {
                        let v = pb[r], x = pa.baseAddress! + r * cols, o = out.baseAddress! + r * cols
                        switch operation {
                        case .add: for j in 0..<cols { o[j] = x[j] + v }
                        case .subtract: for j in 0..<cols { o[j] = x[j] - v }
                        case .multiply: for j in 0..<cols { o[j] = x[j] * v }
                        }
                    }
                }
            }
        }
    }

    /// a ∘ b for operands of one shape (residual sums, most of a side network's element-wise
    /// work), 16 lanes at a time into an output that is not zeroed first; the general broadcast
    /// kernel walks rows with an odometer and took a tenth of LoSA's step. Each element is the
    /// same single operation either way, so the same bits.
    static func elementwise(_ operation: BinaryOperation, _ a: Tensor, _ b: Tensor) -> Tensor {
        let n = a.count
        guard n > 0 else { return Tensor(zeros: a.shape) }
        let scalars = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    let out = buffer.baseAddress!, x = pa.baseAddress!, y = pb.baseAddress!
                    switch operation {
                    case .add: lanes(out, x, y, n, +, +)
                    case .subtract: lanes(out, x, y, n, -, -)
                    case .multiply: lanes(out, x, y, n, *, *)
                    }
                }
            }
            initialized = n
        }
        return Tensor(shape: a.shape, scalars: scalars)
    }

    @inline(__always)
    private static func lanes(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int,
                              _ vector: (SIMD16<Float>, SIMD16<Float>) -> SIMD16<Float>, _ scalar: (Float, Float) -> Float) {
        var i = 0
        while i + 16 <= n {
            let u = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            let v = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(out + i).storeBytes(of: vector(u, v), as: SIMD16<Float>.self)
            i += 16
        }
        while i < n {
            out[i] = scalar(x[i], y[i])
            i += 1
        }
    }

    public static func + (a: Variable, b: Variable) -> Variable { a.binary(.add, b) }
    public static func - (a: Variable, b: Variable) -> Variable { a.binary(.subtract, b) }
    public static func * (a: Variable, b: Variable) -> Variable { a.binary(.multiply, b) }

    /// Every element times a constant.
    public func scaled(by factor: Float) -> Variable {
        let input = handle
        return tape.record(value.scaled(by: factor), inputs: [input]) { g, tape in
            g.withUnsafeBufferPointer { src in
                tape.accumulate(input) { dst in
                    for i in 0..<dst.count { dst[i] += factor * src[i] }
                }
            }
        }
    }

    public static func * (a: Variable, factor: Float) -> Variable { a.scaled(by: factor) }
    public static prefix func - (a: Variable) -> Variable { a.scaled(by: -1) }

    /// The same elements with another shape of equal count.
    public func reshaped(_ shape: [Int]) -> Variable {
        let input = handle
        return tape.record(value.reshaped(shape), inputs: [input]) { g, tape in
            tape.accumulate(input, g)
        }
    }
}
