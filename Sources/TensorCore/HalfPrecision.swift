// Float32 ↔ IEEE half (F16) and bfloat16 with integer bit operations: Float16(x) is a library call
// on x86-64 Linux, several times slower. Used by safetensors and by the activation cache.

/// Bit-level conversions between Float32 and the 16-bit float formats.
public enum HalfPrecision {
    /// bfloat16 bits → Float32 (exact: bf16 is the top half of an fp32).
    @inlinable
    public static func floatFromBFloat16(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float32 → bfloat16 bits, rounding to nearest even; NaN stays NaN.
    @inlinable
    public static func bfloat16FromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(bits >> 16) | 0x0040 }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }

    /// `bfloat16FromFloat` over a buffer, 16 lanes at a time (the bf16 products round every input
    /// row on every call).
    public static func bfloat16FromFloat(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<UInt16>, count: Int) {
        var i = 0
        while i + 16 <= count {
            let values = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<Float>.self)
            let bits = unsafeBitCast(values, to: SIMD16<UInt32>.self)
            var rounded = (bits &+ (0x7FFF &+ ((bits &>> 16) & 1))) &>> 16
            // NaN found by a float compare: an integer lane compare here went one lane at a time
            // through memory (37% of a consolidator epoch).
            rounded.replace(with: (bits &>> 16) | 0x0040, where: values .!= values)
            UnsafeMutableRawPointer(target + i).storeBytes(of: SIMD16<UInt16>(truncatingIfNeeded: rounded), as: SIMD16<UInt16>.self)
            i += 16
        }
        while i < count {
            target[i] = bfloat16FromFloat(source[i])
            i += 1
        }
    }

    /// IEEE binary16 bits → Float32, with subnormals, infinities and NaN.
    @inlinable
    public static func floatFromFloat16(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h) & 0x3FF
        if exponent == 0 {
            // Zero or subnormal: mantissa · 2^-24.
            let magnitude = Float(mantissa) * (1.0 / 16_777_216.0)
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// Float32 → IEEE binary16 bits, rounding to nearest even, overflowing to infinity.
    @inlinable
    public static func float16FromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF)
        let mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }
        let halfExponent = exponent - 127 + 15
        if halfExponent >= 0x1F { return sign | 0x7C00 }
        if halfExponent <= 0 {
            // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
            if halfExponent < -10 { return sign }
            let full = mantissa | 0x80_0000
            let shift = UInt32(14 - halfExponent)
            var half = full >> shift
            let remainder = full & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if remainder > halfway || (remainder == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(halfExponent) << 10 | (mantissa >> 13)
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1) { half += 1 }  // may carry into ∞: correct
        return sign | UInt16(half)
    }

    /// Floats from bfloat16 values stored as two byte planes (all low bytes, then all high
    /// bytes: a byte-shuffled cache block), which are each float's top two bytes. Written as a
    /// loop over UInt32 so that it vectorises (the scalar float form did not: 4% of LoSA's step).
    public static func floatsFromBFloat16Planes(low: UnsafePointer<UInt8>, high: UnsafePointer<UInt8>,
                                                into target: UnsafeMutablePointer<Float>, count: Int) {
        target.withMemoryRebound(to: UInt32.self, capacity: count) { bits in
            for i in 0..<count { bits[i] = UInt32(low[i]) &<< 16 | UInt32(high[i]) &<< 24 }
        }
    }

    /// Floats from IEEE binary16 values stored as two byte planes, as `floatFromFloat16` gives
    /// them. Both of its special cases are computed for every value and one is selected, so that
    /// the loop has no branch and vectorises.
    public static func floatsFromFloat16Planes(low: UnsafePointer<UInt8>, high: UnsafePointer<UInt8>,
                                               into target: UnsafeMutablePointer<Float>, count: Int) {
        target.withMemoryRebound(to: UInt32.self, capacity: count) { out in
            for i in 0..<count {
                let h = UInt32(low[i]) | UInt32(high[i]) &<< 8
                let sign = (h & 0x8000) &<< 16, exponent = (h &>> 10) & 0x1F, mantissa = h & 0x3FF
                let normal = sign | ((exponent &+ 112) &<< 23) | (mantissa &<< 13)
                let special = sign | 0x7F80_0000 | (mantissa &<< 13)
                // Zero or subnormal: mantissa · 2^-24, exact in a Float.
                let small = sign | (Float(mantissa) * (1.0 / 16_777_216.0)).bitPattern
                out[i] = exponent == 0 ? small : exponent == 0x1F ? special : normal
            }
        }
    }
}
