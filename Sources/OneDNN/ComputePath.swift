// Which arithmetic the frozen encoders' dense products use. f32 (OpenBLAS) is the reference and the
// default; bf16 (oneDNN) rounds inputs and weights to bfloat16 and accumulates in f32. A cache
// records the path it was extracted with, and `predict` runs the same one.

/// The arithmetic of the encoders' dense products.
public enum ComputePath: String, Sendable, CaseIterable, Codable {
    case f32
    case bf16

    /// bf16 where the CPU has bf16 instructions (AMX tiles, or AVX512-BF16's dot products: there
    /// extraction measured 1.57× f32 on 2 cores); f32 everywhere else, where bf16 would be emulated
    /// and slower than f32.
    public static var automatic: ComputePath { OneDNN.hasBF16Instructions ? .bf16 : .f32 }

    /// Parses a `--compute` value: f32, bf16 or auto (resolved for this CPU).
    public static func parse(_ text: String, flag: String = "--compute") throws -> ComputePath {
        if text == "auto" { return automatic }
        guard let path = ComputePath(rawValue: text) else {
            throw OneDNNError("\(flag) \(text): expected f32, bf16 or auto")
        }
        return path
    }

    /// The path a cache's settings record; caches from before the field was recorded are f32.
    public static func recorded(_ value: String?) throws -> ComputePath {
        guard let value else { return .f32 }
        guard let path = ComputePath(rawValue: value) else {
            throw OneDNNError("the cache records compute path \"\(value)\", which this version does not know (f32, bf16)")
        }
        return path
    }
}
