// y = bf16(x)·bf16(W)ᵀ (+ b) for callers whose row count changes on every call (a training
// batch's tokens). oneDNN builds a kernel per row count and its primitive cache keeps them all:
// fine for extraction's few batch shapes (BF16Linear), but an epoch of training has hundreds of
// row counts, and their kernels held 17 MB, a third of the whole f32 consolidator head. A primitive
// with the rows left to run time gets oneDNN's gemm kernels instead of brgemm, and held 15-20 MB
// more. So the rows go in chunks of `chunk`, the last one padded to a multiple of `step`: at most
// chunk/step + 1 row counts ever reach oneDNN.
import CDNNL
import Synchronization
import TensorCore

/// W [out, in] frozen, rounded to bf16 and packed once; each call rounds x to bf16 and
/// accumulates in f32, adding in f32 a bias given per call (with `hasBias`).
public final class BF16RowsProduct: @unchecked Sendable {
    // Immutable after init; oneDNN primitives and memory objects may be used from several threads
    // at once for execution.
    public let inFeatures: Int
    public let outFeatures: Int
    public let hasBias: Bool
    private let packed: dnnl_memory_t
    private var packedDescriptor: dnnl_memory_desc_t
    private let engine: dnnl_engine_t
    static let chunk = 256, step = 16
    /// The matmul primitive of each row count and OpenMP thread count, built on first use and kept:
    /// building it on every call (its descriptor, oneDNN's search for an implementation, then the
    /// primitive cache's lookup) was half of libdnnl's 1.5% of a consolidator epoch.
    private let primitives = Mutex<[PrimitiveKey: BF16Linear.Matmul]>([:])

    private struct PrimitiveKey: Hashable {
        let rows: Int, threads: Int
    }

    /// Converts and packs `weight` [outFeatures, inFeatures] (PyTorch's layout) once. Throws when
    /// oneDNN cannot compute bf16 products on this CPU.
    public init(weight: UnsafePointer<Float>, inFeatures: Int, outFeatures: Int, hasBias: Bool) throws {
        precondition(inFeatures > 0 && outFeatures > 0, "BF16RowsProduct: \(outFeatures)×\(inFeatures) weight")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.hasBias = hasBias
        let engine = try OneDNN.engine()
        self.engine = engine
        (packed, packedDescriptor) = try BF16Linear.pack(weight, inFeatures: inFeatures, outFeatures: outFeatures,
                                                         hasBias: hasBias, engine: engine)
    }

    deinit { dnnl_memory_destroy(packed) }

    /// The primitive for `rows` rows (a multiple of `step`, at most `chunk`) on this thread's
    /// OpenMP thread count (set by `OneDNN.withThreads`).
    private func primitive(rows: Int) throws -> BF16Linear.Matmul {
        let key = PrimitiveKey(rows: rows, threads: OneDNN.threadCount)
        return try primitives.withLock { built in
            if let matmul = built[key] { return matmul }
            let matmul = try BF16Linear.Matmul(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures,
                                               weights: packedDescriptor, hasBias: hasBias, callerScratchpad: true, engine: engine)
            built[key] = matmul
            return matmul
        }
    }

    /// y[rows, outFeatures] = x[rows, inFeatures] · Wᵀ (+ bias [outFeatures], given exactly when
    /// `hasBias`). Runs on as many threads as OpenBLAS is set to use.
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows: Int, bias: UnsafePointer<Float>? = nil) {
        precondition((bias != nil) == hasBias, "BF16RowsProduct \(outFeatures)×\(inFeatures): bias given \(bias != nil), built for \(hasBias)")
        if rows == 0 { return }
        let (k, n) = (inFeatures, outFeatures)
        let padded = (rows + Self.step - 1) / Self.step * Self.step
        // x rounded, with zero rows up to the padded count (their outputs are dropped).
        let rounded = UnsafeMutablePointer<UInt16>.allocate(capacity: padded * k)
        defer { rounded.deallocate() }
        HalfPrecision.bfloat16FromFloat(x, into: rounded, count: rows * k)
        (rounded + rows * k).initialize(repeating: 0, count: (padded - rows) * k)
        // Rows are multiplied in whole steps of 16 straight into y; only the last step, when
        // partial, goes through `tail` (its padded rows have nowhere else to go). Padding the
        // whole last chunk instead copied up to 256 rows back (2% of a consolidator epoch).
        let whole = rows / Self.step * Self.step
        let tail = whole < rows ? UnsafeMutablePointer<Float>.allocate(capacity: Self.step * n) : nil
        defer { tail?.deallocate() }
        OneDNN.withThreads {
            do {
                func multiply(_ start: Int, _ count: Int, into target: UnsafeMutablePointer<Float>) throws {
                    try BF16Linear.run(try primitive(rows: count), rows: count, rounded: rounded + start * k, packed: packed,
                                       inFeatures: k, outFeatures: n, bias: bias, y: target, engine: engine)
                }
                for start in stride(from: 0, to: whole, by: Self.chunk) {
                    try multiply(start, min(Self.chunk, whole - start), into: y + start * n)
                }
                if let tail {
                    try multiply(whole, Self.step, into: tail)
                    (y + whole * n).update(from: tail, count: (rows - whole) * n)
                }
            } catch {
                // init built this very product for another row count, so this is a oneDNN fault.
                preconditionFailure("BF16RowsProduct \(outFeatures)×\(inFeatures), \(rows) rows: \(error)")
            }
        }
    }
}
