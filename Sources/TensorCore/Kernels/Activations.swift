// Point-wise activations as forward/backward pairs: GELU (erf and tanh forms), CLIP's quick GELU,
// sigmoid, tanh, ReLU.
// Forward kernels write `out` and are also the backbone's inference path; backward kernels add
// into gradX. Each backward takes what its derivative is cheapest from (the input or the output).
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The activations that side networks and backbones use.
public enum Activation: String, Sendable, CaseIterable {
    /// x·Φ(x), with Φ the normal CDF through erf (BERT's "gelu", PyTorch's default).
    case gelu
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hugging Face "gelu_new", "gelu_pytorch_tanh").
    case geluTanh
    /// x·σ(1.702·x) (Hugging Face "quick_gelu", CLIP's activation).
    case quickGelu
    case sigmoid
    case tanh
    case relu
}

public enum ActivationKernel {
    static let sqrtHalf: Float = 0.707_106_781_186_547_6
    static let inverseSqrtTwoPi: Float = 0.398_942_280_401_432_7
    static let sqrtTwoOverPi: Float = 0.797_884_560_802_865_4
    static let quickGeluSlope: Float = 1.702

    /// out[i] = f(x[i]) for i < count. `out` may equal `x` (in place).
    public static func forward(_ f: Activation, out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int) {
        switch f {
        case .gelu:
            // 16 lanes at a time through SIMD types, so the rational erf runs as vector code.
            var i = 0
            while i + 16 <= count {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                let y = 0.5 * v * (1 + fastErf(v * sqrtHalf))
                UnsafeMutableRawPointer(out + i).storeBytes(of: y, as: SIMD16<Float>.self)
                i += 16
            }
            while i < count { let v = x[i]; out[i] = 0.5 * v * (1 + fastErf(v * sqrtHalf)); i += 1 }
        case .geluTanh:
            for i in 0..<count {
                let v = x[i]
                out[i] = 0.5 * v * (1 + tanhf(sqrtTwoOverPi * (v + 0.044715 * v * v * v)))
            }
        case .quickGelu:
            // 16 lanes at a time as GELU: it is CLIP's whole MLP non-linearity.
            var i = 0
            while i + 16 <= count {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                let y = v / (1 + fastExp(-quickGeluSlope * v))
                UnsafeMutableRawPointer(out + i).storeBytes(of: y, as: SIMD16<Float>.self)
                i += 16
            }
            while i < count { let v = x[i]; out[i] = v / (1 + expf(-quickGeluSlope * v)); i += 1 }
        case .sigmoid:
            for i in 0..<count { out[i] = 1 / (1 + expf(-x[i])) }
        case .tanh:
            for i in 0..<count { out[i] = tanhf(x[i]) }
        case .relu:
            for i in 0..<count { out[i] = max(x[i], 0) }
        }
    }

    /// out[i] = GELU(x[i]) and slope[i] = GELU′(x[i]) in one pass, for a caller that keeps the
    /// slope for its backward instead of the input (the backward is then one multiply, not erf
    /// and exp again). `slope` may equal `x`.
    public static func geluAndSlope(out: UnsafeMutablePointer<Float>, slope: UnsafeMutablePointer<Float>,
                                    x: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            let cdf = 0.5 * (1 + fastErf(v * sqrtHalf))
            let pdf = inverseSqrtTwoPi * fastExp(-0.5 * v * v)
            UnsafeMutableRawPointer(out + i).storeBytes(of: v * cdf, as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(slope + i).storeBytes(of: fused(v, pdf, cdf), as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            let v = x[i]
            let cdf = 0.5 * (1 + fastErf(v * sqrtHalf))
            out[i] = v * cdf
            slope[i] = cdf + v * inverseSqrtTwoPi * expf(-0.5 * v * v)
            i += 1
        }
    }

    /// gradX[i] += f′(x[i]) · gradOut[i], or with `overwrite` gradX[i] = f′(x[i]) · gradOut[i]
    /// (gradX need not be initialised then). `x` is the forward input and `y` its output.
    public static func backward(
        _ f: Activation, gradX: UnsafeMutablePointer<Float>, gradOut: UnsafePointer<Float>,
        x: UnsafePointer<Float>, y: UnsafePointer<Float>, count: Int, overwrite: Bool = false
    ) {
        if overwrite && f != .gelu { gradX.update(repeating: 0, count: count) }
        switch f {
        case .gelu:
            // d/dx x·Φ(x) = Φ(x) + x·φ(x); 16 lanes at a time, as the forward (training a side
            // network spends a tenth of its time here otherwise).
            var i = 0
            while i + 16 <= count {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                let g = UnsafeRawPointer(gradOut + i).loadUnaligned(as: SIMD16<Float>.self)
                let cdf = 0.5 * (1 + fastErf(v * sqrtHalf))
                let pdf = inverseSqrtTwoPi * fastExp(-0.5 * v * v)
                let old = overwrite ? SIMD16() : UnsafeRawPointer(gradX + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(gradX + i).storeBytes(of: old + g * (cdf + v * pdf), as: SIMD16<Float>.self)
                i += 16
            }
            for i in i..<count {
                let v = x[i]
                let cdf = 0.5 * (1 + fastErf(v * sqrtHalf))
                let pdf = inverseSqrtTwoPi * expf(-0.5 * v * v)
                gradX[i] = (overwrite ? 0 : gradX[i]) + gradOut[i] * (cdf + v * pdf)
            }
        case .geluTanh:
            for i in 0..<count {
                let v = x[i]
                let inner = sqrtTwoOverPi * (v + 0.044715 * v * v * v)
                let t = tanhf(inner)
                let dInner = sqrtTwoOverPi * (1 + 3 * 0.044715 * v * v)
                gradX[i] += gradOut[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * dInner)
            }
        case .quickGelu:
            // d/dx x·s(x) with s = σ(a·x): s + a·x·s·(1 − s).
            var i = 0
            while i + 16 <= count {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                let g = UnsafeRawPointer(gradOut + i).loadUnaligned(as: SIMD16<Float>.self)
                let s = 1 / (1 + fastExp(-quickGeluSlope * v))
                let old = UnsafeRawPointer(gradX + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(gradX + i).storeBytes(of: old + g * (s + quickGeluSlope * v * s * (1 - s)), as: SIMD16<Float>.self)
                i += 16
            }
            for i in i..<count {
                let v = x[i]
                let s = 1 / (1 + expf(-quickGeluSlope * v))
                gradX[i] += gradOut[i] * (s + quickGeluSlope * v * s * (1 - s))
            }
        case .sigmoid:
            for i in 0..<count { gradX[i] += gradOut[i] * y[i] * (1 - y[i]) }
        case .tanh:
            for i in 0..<count { gradX[i] += gradOut[i] * (1 - y[i] * y[i]) }
        case .relu:
            for i in 0..<count where x[i] > 0 { gradX[i] += gradOut[i] }
        }
    }
}

/// erf(x) as a rational function on [−4, 4] (beyond, erf is ±1 in Float32): within 4e-7 of the
/// exact value, and unlike libm's erff it vectorises, which makes GELU — over a third of the
/// backbone's non-matrix time — several times cheaper. The coefficients are Eigen's
/// `generic_fast_erf_float`.
@inline(__always)
public func fastErf(_ value: Float) -> Float {
    // One lane of the vector form, so that a row's tail gets the same values as its body.
    fastErf(SIMD16(repeating: value))[0]
}

/// `fastErf` on 16 lanes.
@inline(__always)
public func fastErf(_ value: SIMD16<Float>) -> SIMD16<Float> {
    // Clamped by compare and blend, as in fastExp.
    var x = value
    x.replace(with: -4, where: x .< -4)
    x.replace(with: 4, where: x .> 4)
    let x2 = x * x
    var p = SIMD16<Float>(repeating: -2.72614225801306e-10)
    p = fused(p, x2, 2.77068142495902e-08)
    p = fused(p, x2, -2.10102402082508e-06)
    p = fused(p, x2, -5.69250639462346e-05)
    p = fused(p, x2, -7.34990630326855e-04)
    p = fused(p, x2, -2.95459980854025e-03)
    p = fused(p, x2, -1.60960333262415e-02)
    var q = SIMD16<Float>(repeating: -1.45660718464996e-05)
    q = fused(q, x2, -2.13374055278905e-04)
    q = fused(q, x2, -1.68282697438203e-03)
    q = fused(q, x2, -7.37332916720468e-03)
    q = fused(q, x2, -1.42647390514189e-02)
    return x * p / q
}

/// eˣ on 16 lanes: 2ⁿ·e^r with n = round(x/ln 2) and a degree-6 polynomial for e^r on
/// |r| ≤ ln 2 / 2 (Cephes' coefficients), relative error about 2e-7. Inputs below −87 give 0's
/// neighbourhood (clamped), above 88 are clamped too.
@inline(__always)
public func fastExp(_ value: SIMD16<Float>) -> SIMD16<Float> {
    // Clamped by compare and blend, written out here: pointwiseMin and pointwiseMax went one lane
    // at a time through memory where they were not inlined (16% of LST in attention's softmax),
    // and a helper function for the clamp kept this function from being inlined.
    var x = value
    x.replace(with: -87, where: x .< -87)
    x.replace(with: 88, where: x .> 88)
    let n = (x * 1.442_695_040_888_963_4).rounded(.toNearestOrEven)
    // r = x − n·ln 2 with ln 2 split in two, so r keeps its low bits.
    let r = fused(n, SIMD16(repeating: 2.121_944_4e-4), fused(n, SIMD16(repeating: -0.693_359_375), x))
    var p = SIMD16<Float>(repeating: 1.987_569_1e-4)
    p = fused(p, r, 1.398_199_9e-3)
    p = fused(p, r, 8.333_451_9e-3)
    p = fused(p, r, 4.166_579_6e-2)
    p = fused(p, r, 1.666_666_5e-1)
    p = fused(p, r, 5e-1)
    p = fused(p, r * r, r + 1)
    // 2ⁿ from the bits: adding 2²³ puts the integer n + 127 in the low mantissa bits (a float→int
    // conversion here compiled to a generic, unvectorised call).
    let shifted = unsafeBitCast(n + (8_388_608 + 127), to: SIMD16<UInt32>.self) &- 0x4B00_0000
    return p * unsafeBitCast(shifted &<< 23, to: SIMD16<Float>.self)
}

extension Tensor {
    /// f applied to every element.
    public func applying(_ f: Activation) -> Tensor {
        // Written into a fresh buffer: a copy of self made unique first cost a pass over it.
        Tensor(uninitialized: shape) { o in
            guard let po = o.baseAddress else { return }
            withUnsafeBufferPointer { x in ActivationKernel.forward(f, out: po, x: x.baseAddress!, count: count) }
        }
    }
}

/// a·b + c with one rounding, as one FMA instruction: Swift does not contract `a * b + c` on its
/// own, and the polynomials above are chains of them (GELU's erf and its backward's exp were a
/// tenth of LoSA's step as separate multiplies and adds).
@inline(__always)
func fused(_ a: SIMD16<Float>, _ b: SIMD16<Float>, _ c: Float) -> SIMD16<Float> { SIMD16(repeating: c).addingProduct(a, b) }

@inline(__always)
func fused(_ a: SIMD16<Float>, _ b: SIMD16<Float>, _ c: SIMD16<Float>) -> SIMD16<Float> { c.addingProduct(a, b) }
