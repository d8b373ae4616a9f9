// A seeded random number generator: one seed gives the same stream on every run on the same
// machine. xoshiro256** seeded through SplitMix64, as its authors recommend. Not cryptographic.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// A seeded xoshiro256** generator.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    /// A second normal deviate from the last Box–Muller pair, kept so no draw is wasted.
    private var spareNormal: Float?

    public init(seed: UInt64) {
        var mix = SplitMix64(seed: seed)
        s0 = mix.next(); s1 = mix.next(); s2 = mix.next(); s3 = mix.next()
    }

    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Sets each element of `out` to `value` with probability `p`, else to 0 (a dropout mask).
    /// Each 64-bit draw gives two 24-bit uniforms, high bits then middle bits: one draw per
    /// element was a third of dropout's time in LST.
    public mutating func fillBernoulli(_ out: UnsafeMutableBufferPointer<Float>, probability p: Float, value: Float) {
        // u = k·2⁻²⁴ < p exactly when k < p·2²⁴ (scaling by a power of two is exact).
        let threshold = p * 16_777_216
        var i = 0
        while i + 1 < out.count {
            let r = next()
            out[i] = Float(r >> 40) < threshold ? value : 0
            out[i + 1] = Float((r >> 16) & 0xFF_FFFF) < threshold ? value : 0
            i += 2
        }
        if i < out.count { out[i] = Float(next() >> 40) < threshold ? value : 0 }
    }

    /// Standard normal deviate (Box–Muller).
    public mutating func nextNormal() -> Float {
        if let spare = spareNormal {
            spareNormal = nil
            return spare
        }
        var u1 = nextUniform()
        while u1 <= Float.leastNormalMagnitude { u1 = nextUniform() }
        let u2 = nextUniform()
        let radius = (-2 * logf(u1)).squareRoot()
        let angle = 2 * Float.pi * u2
        spareNormal = radius * sinf(angle)
        return radius * cosf(angle)
    }

    /// An independent generator for a named purpose, so adding draws in one place does not shift
    /// the stream of another (e.g. dropout masks vs. initialisation).
    public func derived(_ stream: UInt64) -> SeededGenerator {
        var copy = self
        return SeededGenerator(seed: copy.next() ^ (stream &* 0x9E37_79B9_7F4A_7C15))
    }
}

extension Tensor {
    /// Elements drawn from N(0, std²).
    public static func randomNormal(_ shape: [Int], std: Float = 1, using rng: inout SeededGenerator) -> Tensor {
        var t = Tensor(zeros: shape)
        for i in 0..<t.count { t.scalars[i] = rng.nextNormal() * std }
        return t
    }

    /// Elements drawn uniformly from [low, high).
    public static func randomUniform(
        _ shape: [Int], low: Float = 0, high: Float = 1, using rng: inout SeededGenerator
    ) -> Tensor {
        var t = Tensor(zeros: shape)
        for i in 0..<t.count { t.scalars[i] = low + (high - low) * rng.nextUniform() }
        return t
    }
}

/// SplitMix64: a tiny generator whose stream is fixed by its published constants. It seeds
/// xoshiro, and draws what must never change with a library's generator (a sweep's random trials
/// and so their ids).
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
