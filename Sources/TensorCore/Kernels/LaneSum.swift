// A sum over a row on 16 lanes: a scalar sum is one chain of dependent adds, and the kernels that
// reduce rows (layer norm, a side network's bias gradients) run over every token several times.

/// Σ_j f(x[j]) for j < count: 16 lanes at a time, then the lanes' sum, then the tail in order.
@inlinable @inline(__always)
public func laneSum(_ x: UnsafePointer<Float>, count: Int, _ f: (SIMD16<Float>) -> SIMD16<Float> = { $0 }) -> Float {
    var acc = SIMD16<Float>()
    var j = 0
    while j + 16 <= count {
        acc += f(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self))
        j += 16
    }
    var sum = laneTotal(acc)
    while j < count {
        sum += f(SIMD16(repeating: x[j]))[0]
        j += 1
    }
    return sum
}

/// The sum of 16 lanes by halving: the standard library's `sum()` goes one lane at a time through
/// memory, which for a 384-wide row cost as much as the row's own adds.
@inlinable @inline(__always)
public func laneTotal(_ v: SIMD16<Float>) -> Float {
    let a = v.lowHalf + v.highHalf, b = a.lowHalf + a.highHalf, c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}
