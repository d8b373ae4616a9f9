// Element-wise binary operations with NumPy broadcasting, and the sum back to a broadcast operand's
// shape that their backward needs. One strided loop serves every case (a broadcast dimension has
// stride 0); the innermost dimension runs as a plain loop so the common shapes ([B, N, D] with
// [D], equal shapes) vectorise.

/// The binary element-wise operations with broadcasting.
public enum BinaryOperation: Sendable {
    case add, subtract, multiply
}

/// Broadcasting geometry of two shapes: the output shape and each operand's strides over it.
public struct Broadcast: Sendable, Equatable {
    public let shape: [Int]
    /// Element strides of each operand over `shape` (0 where the operand is broadcast).
    public let stridesA: [Int]
    public let stridesB: [Int]

    /// NumPy's rules: align the shapes on the right; each pair of dimensions must be equal or 1.
    /// Returns nil when the shapes do not broadcast.
    public init?(_ a: [Int], _ b: [Int]) {
        let rank = max(a.count, b.count)
        let pa = Array(repeating: 1, count: rank - a.count) + a
        let pb = Array(repeating: 1, count: rank - b.count) + b
        var shape = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            guard pa[d] == pb[d] || pa[d] == 1 || pb[d] == 1 else { return nil }
            shape[d] = pa[d] == 1 ? pb[d] : pa[d]
        }
        func strides(_ s: [Int]) -> [Int] {
            var out = [Int](repeating: 0, count: rank)
            var step = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                out[d] = s[d] == 1 ? 0 : step
                step *= s[d]
            }
            return out
        }
        self.shape = shape
        self.stridesA = strides(pa)
        self.stridesB = strides(pb)
    }

    public var count: Int { Tensor.elementCount(shape) }

    /// Calls `body(outOffset, aOffset, bOffset, length, aStep, bStep)` for each run of the
    /// innermost dimension.
    @inlinable
    func forEachRow(_ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        let rank = shape.count
        if rank == 0 { body(0, 0, 0, 1, 0, 0); return }
        let inner = shape[rank - 1]
        let rows = inner == 0 ? 0 : count / inner
        var index = [Int](repeating: 0, count: rank - 1)
        var offsetA = 0, offsetB = 0
        for row in 0..<rows {
            body(row * inner, offsetA, offsetB, inner, stridesA[rank - 1], stridesB[rank - 1])
            // Odometer over the outer dimensions.
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                offsetA += stridesA[d]
                offsetB += stridesB[d]
                if index[d] < shape[d] { break }
                offsetA -= stridesA[d] * shape[d]
                offsetB -= stridesB[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }
}

/// out = a ∘ b with broadcasting, for ∘ in {+, −, ×}.
public enum BinaryKernel {
    /// out: [broadcast.count]; a, b: their own shapes' element counts.
    public static func forward(
        _ operation: BinaryOperation, out: UnsafeMutablePointer<Float>,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, broadcast: Broadcast
    ) {
        broadcast.forEachRow { o, ia, ib, n, sa, sb in
            switch (operation, sa, sb) {
            case (.add, 1, 1): for j in 0..<n { out[o + j] = a[ia + j] + b[ib + j] }
            case (.add, 1, 0): let v = b[ib]; for j in 0..<n { out[o + j] = a[ia + j] + v }
            case (.add, _, _): for j in 0..<n { out[o + j] = a[ia + j * sa] + b[ib + j * sb] }
            case (.subtract, 1, 1): for j in 0..<n { out[o + j] = a[ia + j] - b[ib + j] }
            case (.subtract, _, _): for j in 0..<n { out[o + j] = a[ia + j * sa] - b[ib + j * sb] }
            case (.multiply, 1, 1): for j in 0..<n { out[o + j] = a[ia + j] * b[ib + j] }
            case (.multiply, 1, 0): let v = b[ib]; for j in 0..<n { out[o + j] = a[ia + j] * v }
            case (.multiply, _, _): for j in 0..<n { out[o + j] = a[ia + j * sa] * b[ib + j * sb] }
            }
        }
    }
}

extension Tensor {
    /// a ∘ b with NumPy broadcasting.
    public static func binary(_ operation: BinaryOperation, _ a: Tensor, _ b: Tensor) -> Tensor {
        if a.shape == b.shape { return elementwise(operation, a, b) }
        if a.rank >= 1, b.shape == Array(a.shape.dropLast()) + [1] { return perRow(operation, a, b) }
        guard let geometry = Broadcast(a.shape, b.shape) else {
            preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        var out = Tensor(zeros: geometry.shape)
        if out.count == 0 { return out }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    BinaryKernel.forward(operation, out: po.baseAddress!, a: pa.baseAddress!, b: pb.baseAddress!, broadcast: geometry)
                }
            }
        }
        return out
    }

    /// out[r, j] = a[r, j] ∘ b[r] (a per-example weight [T, 1] against [T, D]): the general
    /// kernel's scalar-per-row case, row by row into an unzeroed output (the consolidator's branch
    /// drop spent 3% of its step in the general walk).
    static func perRow(_ operation: BinaryOperation, _ a: Tensor, _ b: Tensor) -> Tensor {
        let cols = a.columnCount, rows = a.rowCount
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
    /// work), 16 lanes at a time into an output that is not zeroed first; the general kernel walks
    /// rows with an odometer and took a tenth of LoSA's step. Each element is the same single
    /// operation either way, so the same bits.
    static func elementwise(_ operation: BinaryOperation, _ a: Tensor, _ b: Tensor) -> Tensor {
        let n = a.count
        return Tensor(uninitialized: a.shape) { buffer in
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
        }
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

    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(.add, a, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(.subtract, a, b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(.multiply, a, b) }

    /// Sums over the dimensions along which `target` broadcasts to this tensor's shape: the
    /// gradient of an operand that was broadcast. Rows go in order, each added into a contiguous
    /// target row or, where the target has one element per row, through a local sum first.
    public func summed(to target: [Int]) -> Tensor {
        guard let geometry = Broadcast(target, shape), geometry.shape == shape else {
            preconditionFailure("summed: \(target) does not broadcast to \(shape)")
        }
        var out = Tensor(zeros: target)
        guard count > 0 else { return out }
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, t = dst.baseAddress!
                geometry.forEachRow { o, it, _, n, step, _ in
                    if step == 1 {
                        for j in 0..<n { t[it + j] += s[o + j] }
                    } else {
                        var sum: Float = 0
                        for j in 0..<n { sum += s[o + j] }
                        t[it] += sum
                    }
                }
            }
        }
        return out
    }

    /// Every element times `factor`.
    public func scaled(by factor: Float) -> Tensor {
        var out = self
        out.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= factor } }
        return out
    }
}
