// A dense layer y = x·Wᵀ + b computed by oneDNN in bfloat16: W is rounded to bf16 and reordered
// into the layout oneDNN's kernels want once, when the layer is built; each call rounds x to bf16
// and accumulates in f32, with the bias added in f32. Only the frozen encoders' products use it
// (inference only: there is no backward). Results differ from the f32 path by bf16's rounding of
// the inputs, never by more; the f32 path (OpenBLAS) stays the reference.
import CDNNL
import TensorCore

/// y[rows, out] = bf16(x)[rows, in] · bf16(W)ᵀ + b, accumulated in f32.
public final class BF16Linear: @unchecked Sendable {
    // Immutable after init; oneDNN primitives and memory objects may be used from several threads
    // at once for execution, which is all `forward` does with them.
    public let inFeatures: Int
    public let outFeatures: Int
    /// [outFeatures], owned (oneDNN memory objects point at it), or nil.
    private let bias: UnsafeMutablePointer<Float>?
    private let packed: dnnl_memory_t
    private var packedDescriptor: dnnl_memory_desc_t
    private let engine: dnnl_engine_t

    /// Converts and reorders `weight` [outFeatures, inFeatures] (PyTorch's layout) once. Throws when
    /// oneDNN cannot compute bf16 products on this CPU.
    public init(weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, inFeatures: Int, outFeatures: Int) throws {
        precondition(inFeatures > 0 && outFeatures > 0, "BF16Linear: \(outFeatures)×\(inFeatures) weight")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let engine = try OneDNN.engine()
        self.engine = engine
        (packed, packedDescriptor) = try Self.pack(weight, inFeatures: inFeatures, outFeatures: outFeatures, hasBias: bias != nil,
                                                   engine: engine)
        self.bias = bias.map { source in
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: outFeatures)
            copy.initialize(from: source, count: outFeatures)
            return copy
        }
    }

    deinit {
        dnnl_memory_destroy(packed)
        bias?.deallocate()
    }

    /// y[rows, outFeatures] = x[rows, inFeatures] · Wᵀ + b. Runs on as many threads as OpenBLAS is
    /// set to use (`BLAS.setThreadCount`), so the two paths share cores the same way.
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        if rows == 0 { return }
        let activations = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * inFeatures)
        defer { activations.deallocate() }
        OneDNN.withThreads {
            var source = OneDNN.descriptor([rows, inFeatures], dnnl_f32, dnnl_ab)
            var rounded = OneDNN.descriptor([rows, inFeatures], dnnl_bf16, dnnl_ab)
            do {
                let roundedMemory = try OneDNN.memory(&rounded, activations, engine: engine)
                defer { dnnl_memory_destroy(roundedMemory) }
                try OneDNN.reorder(from: &source, UnsafeMutableRawPointer(mutating: x), to: roundedMemory, engine: engine)
                try Self.multiply(rows: rows, rounded: activations, packed: packed, packedDescriptor: packedDescriptor,
                                  inFeatures: inFeatures, outFeatures: outFeatures, bias: bias.map { UnsafePointer($0) }, y: y, engine: engine)
            } catch {
                // init built this very product for another M, so this is a oneDNN fault, not the input's.
                preconditionFailure("BF16Linear \(outFeatures)×\(inFeatures), \(rows) rows: \(error)")
            }
        }
    }

    /// W [out, in] in f32 converted to bf16 and reordered into the layout oneDNN's kernels want,
    /// with that layout's descriptor.
    static func pack(_ weight: UnsafePointer<Float>, inFeatures: Int, outFeatures: Int, hasBias: Bool,
                     engine: dnnl_engine_t) throws -> (dnnl_memory_t, dnnl_memory_desc_t) {
        // The kernels pick the weights' packed layout from N and K (checked for M = 1 to 4096 on
        // oneDNN 2.6); any M shows it. Every later primitive is then asked for exactly this layout.
        let reference = try OneDNN.withThreads {
            try matmulDescriptor(rows: 1024, inFeatures: inFeatures, outFeatures: outFeatures,
                                 weights: OneDNN.descriptor([inFeatures, outFeatures], dnnl_bf16, dnnl_format_tag_any),
                                 hasBias: hasBias, engine: engine)
        }
        defer { dnnl_primitive_desc_destroy(reference) }
        var descriptor = dnnl_primitive_desc_query_md(reference, dnnl_query_weights_md, 0)!.pointee
        var memory: dnnl_memory_t?
        try OneDNN.check(dnnl_memory_create(&memory, &descriptor, engine, OneDNN.allocate), "allocating packed weights")
        // W stored [out, in] row-major is the matrix [in, out] (K × N) in column-major order: tag "ba".
        var plain = OneDNN.descriptor([inFeatures, outFeatures], dnnl_f32, dnnl_ba)
        do {
            try OneDNN.reorder(from: &plain, UnsafeMutableRawPointer(mutating: weight), to: memory!, engine: engine)
        } catch {
            dnnl_memory_destroy(memory)
            throw error
        }
        return (memory!, descriptor)
    }

    /// y[rows, out] = rounded[rows, in] (bf16) · packed W (+ bias), on this thread's OpenMP team.
    /// The primitive for this row count comes from oneDNN's primitive cache after the first call
    /// (about 2 µs against 100-250 µs to generate the kernel).
    static func multiply(rows: Int, rounded: UnsafeMutablePointer<UInt16>, packed: dnnl_memory_t, packedDescriptor: dnnl_memory_desc_t,
                         inFeatures: Int, outFeatures: Int, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                         engine: dnnl_engine_t) throws {
        let matmul = try Matmul(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, weights: packedDescriptor,
                                hasBias: bias != nil, callerScratchpad: false, engine: engine)
        try run(matmul, rows: rows, rounded: rounded, packed: packed, inFeatures: inFeatures, outFeatures: outFeatures,
                bias: bias, y: y, engine: engine)
    }

    /// The matmul primitive for [rows, in] · packed [in, out] (+ [1, out]) → [rows, out], for this
    /// thread's OpenMP thread count. With `callerScratchpad`, each run is given its scratchpad, and
    /// one primitive can run on any thread, several at once: the library's own scratchpad is
    /// shared per thread, so its primitives must run on the thread that created them (fine for
    /// one built and run per call, as extraction does).
    final class Matmul: @unchecked Sendable {
        let primitive: dnnl_primitive_t
        /// Zero-sized with the library's scratchpad.
        let scratchpad: dnnl_memory_desc_t
        let scratchpadBytes: Int

        init(rows: Int, inFeatures: Int, outFeatures: Int, weights: dnnl_memory_desc_t, hasBias: Bool, callerScratchpad: Bool,
             engine: dnnl_engine_t) throws {
            let descriptor = try matmulDescriptor(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, weights: weights,
                                                  hasBias: hasBias, callerScratchpad: callerScratchpad, engine: engine)
            defer { dnnl_primitive_desc_destroy(descriptor) }
            var scratchpad = dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0)?.pointee ?? dnnl_memory_desc_t()
            scratchpadBytes = dnnl_memory_desc_get_size(&scratchpad)
            self.scratchpad = scratchpad
            var primitive: dnnl_primitive_t?
            try OneDNN.check(dnnl_primitive_create(&primitive, descriptor), "creating the matmul")
            self.primitive = primitive!
        }

        deinit { dnnl_primitive_destroy(primitive) }
    }

    /// Runs `matmul` (built for this row count) on rounded x, W and y.
    static func run(_ matmul: Matmul, rows: Int, rounded: UnsafeMutablePointer<UInt16>, packed: dnnl_memory_t,
                    inFeatures: Int, outFeatures: Int, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                    engine: dnnl_engine_t) throws {
        var source = OneDNN.descriptor([rows, inFeatures], dnnl_bf16, dnnl_ab)
        var output = OneDNN.descriptor([rows, outFeatures], dnnl_f32, dnnl_ab)
        var biasDescriptor = OneDNN.descriptor([1, outFeatures], dnnl_f32, dnnl_ab)
        let sourceMemory = try OneDNN.memory(&source, rounded, engine: engine)
        defer { dnnl_memory_destroy(sourceMemory) }
        let outputMemory = try OneDNN.memory(&output, y, engine: engine)
        defer { dnnl_memory_destroy(outputMemory) }
        var arguments = [
            dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: sourceMemory),
            dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: packed),
            dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: outputMemory),
        ]
        let biasMemory = try bias.map { try OneDNN.memory(&biasDescriptor, UnsafeMutablePointer(mutating: $0), engine: engine) }
        defer { if let biasMemory { dnnl_memory_destroy(biasMemory) } }
        if let biasMemory { arguments.append(dnnl_exec_arg_t(arg: DNNL_ARG_BIAS, memory: biasMemory)) }
        let scratchpad = matmul.scratchpadBytes > 0 ? UnsafeMutableRawPointer.allocate(byteCount: matmul.scratchpadBytes, alignment: 64) : nil
        defer { scratchpad?.deallocate() }
        var scratchpadDescriptor = matmul.scratchpad
        let scratchpadMemory = try scratchpad.map { try OneDNN.memory(&scratchpadDescriptor, $0, engine: engine) }
        defer { if let scratchpadMemory { dnnl_memory_destroy(scratchpadMemory) } }
        if let scratchpadMemory { arguments.append(dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: scratchpadMemory)) }
        try OneDNN.execute(matmul.primitive, arguments, engine: engine)
    }

    /// The matmul primitive descriptor for [rows, in] · [in, out] + [1, out] → [rows, out].
    static func matmulDescriptor(rows: Int, inFeatures: Int, outFeatures: Int, weights: dnnl_memory_desc_t,
                                 hasBias: Bool, callerScratchpad: Bool = false, engine: dnnl_engine_t) throws -> dnnl_primitive_desc_t {
        var source = OneDNN.descriptor([rows, inFeatures], dnnl_bf16, dnnl_ab)
        var weights = weights
        var bias = OneDNN.descriptor([1, outFeatures], dnnl_f32, dnnl_ab)
        var output = OneDNN.descriptor([rows, outFeatures], dnnl_f32, dnnl_ab)
        var operation = dnnl_matmul_desc_t()
        try OneDNN.check(hasBias ? dnnl_matmul_desc_init(&operation, &source, &weights, &bias, &output)
                                 : dnnl_matmul_desc_init(&operation, &source, &weights, nil, &output), "describing the matmul")
        var attributes: dnnl_primitive_attr_t?
        try OneDNN.check(dnnl_primitive_attr_create(&attributes), "creating primitive attributes")
        defer { dnnl_primitive_attr_destroy(attributes) }
        if callerScratchpad {
            try OneDNN.check(dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user), "setting the scratchpad mode")
        }
        var descriptor: dnnl_primitive_desc_t?
        let status = dnnl_primitive_desc_create(&descriptor, &operation, attributes, engine, nil)
        if status == dnnl_unimplemented { throw OneDNN.noBF16Products() }
        try OneDNN.check(status, "creating the bf16 matmul for \(rows)×\(inFeatures) · \(inFeatures)×\(outFeatures)")
        return descriptor!
    }
}
