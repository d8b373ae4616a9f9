// A sum over a row on 16 lanes: a scalar sum is one chain of dependent adds, and the kernels that
// reduce rows (layer norm, a side network's bias gradients) run over every token several times.

/// Σ_j f(x[j]) for j < count: 16 lanes at a time, then the lanes' sum, then the tail in order.
@inlinable
public func laneSum(_ x: UnsafePointer<Float>, count: Int, _ f: (SIMD16<Float>) -> SIMD16<Float> = { $0 }) -> Float {
    var acc = SIMD16<Float>()
    var j = 0
    while j + 16 <= count {
        acc += f(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self))
        j += 16
    }
    var sum = acc.sum()
    while j < count {
        sum += f(SIMD16(repeating: x[j]))[0]
        j += 1
    }
    return sum
}
