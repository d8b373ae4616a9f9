// A sum over a row on 16 lanes: a scalar sum is one chain of dependent adds, and the kernels that
// reduce rows (layer norm, a side network's bias gradients) run over every token several times.

/// Σ_j x[j] for j < count: 16 lanes at a time, then the lanes' sum, then the tail in order. (No
/// function of the elements: a closure given for one, layer norm's squared deviations, stayed a
/// call per 16 lanes.)
@inlinable
public func laneSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD16<Float>()
    var j = 0
    while j + 16 <= count {
        acc += UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self)
        j += 16
    }
    var sum = laneTotal(acc)
    while j < count {
        sum += x[j]
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
