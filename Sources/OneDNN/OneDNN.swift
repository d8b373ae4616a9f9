// The few oneDNN calls Sidecar needs, wrapped so that every status is checked and every error says
// which step failed: one CPU engine for the process, memory descriptors, reorders, execution, and
// the thread count. Debian's oneDNN uses OpenMP, whose thread count is per calling thread, so each
// call sets it from OpenBLAS's (one thread per worker while extraction runs a batch per core).
#if canImport(Glibc)
import Glibc
#endif
import CDNNL
import TensorCore

/// A oneDNN failure: which step, and oneDNN's status.
public struct OneDNNError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum OneDNN {
    /// "2.6.3".
    public static var version: String {
        let v = dnnl_version()!.pointee
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// The instruction set oneDNN dispatches to (the CPU's, unless ONEDNN_MAX_CPU_ISA lowers it).
    public static var instructionSet: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_avx512_core_amx: "AVX-512 with AMX (bf16 tiles)"
        case dnnl_cpu_isa_avx512_core_bf16: "AVX-512 with AVX512-BF16"
        case dnnl_cpu_isa_avx512_core_vnni: "AVX-512 with VNNI, no bf16 instructions"
        case dnnl_cpu_isa_avx512_core: "AVX-512, no bf16 instructions"
        case dnnl_cpu_isa_avx2_vnni: "AVX2 with VNNI"
        case dnnl_cpu_isa_avx2: "AVX2"
        case let other: "oneDNN ISA code 0x\(String(other.rawValue, radix: 16))"
        }
    }

    /// Whether oneDNN computes bf16 products natively here (AMX or AVX512-BF16), not emulated.
    public static var hasBF16Instructions: Bool {
        [dnnl_cpu_isa_avx512_core_amx, dnnl_cpu_isa_avx512_core_bf16].contains(dnnl_get_effective_cpu_isa())
    }

    /// Whether oneDNN has a bf16 matrix product for this CPU (AVX-512 at least; ONEDNN_MAX_CPU_ISA
    /// can lower what it uses).
    public static let supportsBF16: Bool = {
        var one: Float = 1
        return (try? BF16Linear(weight: &one, bias: nil, inFeatures: 1, outFeatures: 1)) != nil
    }()

    /// The error for a CPU where oneDNN has no bf16 matrix product.
    static func noBF16Products() -> OneDNNError {
        OneDNNError("oneDNN \(version) has no bf16 matrix product for this CPU (its instruction set as oneDNN sees it: "
                    + "\(instructionSet)); bf16 needs AVX-512 (native with AVX512-BF16 or AMX, emulated and slower with "
                    + "plain AVX-512); use --compute f32")
    }

    /// The process's CPU engine.
    static func engine() throws -> dnnl_engine_t {
        switch sharedEngine {
        case .success(let engine): return engine.handle
        case .failure(let error): throw error
        }
    }

    private struct Engine: @unchecked Sendable { let handle: dnnl_engine_t }
    private static let sharedEngine: Result<Engine, OneDNNError> = {
        var engine: dnnl_engine_t?
        let status = dnnl_engine_create(&engine, dnnl_cpu, 0)
        guard status == dnnl_success, let engine else { return .failure(OneDNNError("creating oneDNN's CPU engine: status \(status.rawValue)")) }
        return .success(Engine(handle: engine))
    }()

    static func check(_ status: dnnl_status_t, _ step: @autoclosure () -> String) throws {
        guard status == dnnl_success else { throw OneDNNError("oneDNN \(version): \(step()): \(describe(status))") }
    }

    private static func describe(_ status: dnnl_status_t) -> String {
        switch status {
        case dnnl_out_of_memory: "out of memory"
        case dnnl_invalid_arguments: "invalid arguments"
        case dnnl_unimplemented: "not implemented for these types on this CPU"
        default: "status \(status.rawValue)"
        }
    }

    /// A dense descriptor of `dims` with the given type and layout tag.
    static func descriptor(_ dims: [Int], _ type: dnnl_data_type_t, _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var out = dnnl_memory_desc_t()
        let shape = dims.map { dnnl_dim_t($0) }
        // Only fails for invalid arguments, which the callers' preconditions rule out.
        let status = dnnl_memory_desc_init_by_tag(&out, Int32(dims.count), shape, type, tag)
        precondition(status == dnnl_success, "dnnl_memory_desc_init_by_tag \(dims): status \(status.rawValue)")
        return out
    }

    /// DNNL_MEMORY_ALLOCATE, a macro Swift does not import: the library allocates (and frees) the buffer.
    static var allocate: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt.max) }

    /// A memory object over caller-owned storage (not freed with it).
    static func memory(_ descriptor: inout dnnl_memory_desc_t, _ data: UnsafeMutableRawPointer, engine: dnnl_engine_t) throws -> dnnl_memory_t {
        var memory: dnnl_memory_t?
        try check(dnnl_memory_create(&memory, &descriptor, engine, data), "wrapping a buffer")
        return memory!
    }

    /// Copies `data` (laid out as `source` says) into `target`, converting type and layout.
    static func reorder(from source: inout dnnl_memory_desc_t, _ data: UnsafeMutableRawPointer, to target: dnnl_memory_t,
                        engine: dnnl_engine_t) throws {
        let sourceMemory = try memory(&source, data, engine: engine)
        defer { dnnl_memory_destroy(sourceMemory) }
        var targetDescriptor: UnsafePointer<dnnl_memory_desc_t>?
        try check(dnnl_memory_get_memory_desc(target, &targetDescriptor), "reading a memory descriptor")
        var descriptor: dnnl_primitive_desc_t?
        try check(dnnl_reorder_primitive_desc_create(&descriptor, &source, engine, targetDescriptor, engine, nil), "describing a reorder")
        defer { dnnl_primitive_desc_destroy(descriptor) }
        var primitive: dnnl_primitive_t?
        try check(dnnl_primitive_create(&primitive, descriptor), "creating a reorder")
        defer { dnnl_primitive_destroy(primitive) }
        try execute(primitive!, [dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: sourceMemory),
                                 dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: target)], engine: engine)
    }

    /// Runs `primitive` to completion on a stream of its own (streams are not shared between threads).
    static func execute(_ primitive: dnnl_primitive_t, _ arguments: [dnnl_exec_arg_t], engine: dnnl_engine_t) throws {
        var stream: dnnl_stream_t?
        try check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "creating a stream")
        defer { dnnl_stream_destroy(stream) }
        try arguments.withUnsafeBufferPointer { list in
            try check(dnnl_primitive_execute(primitive, stream, Int32(list.count), list.baseAddress), "executing")
        }
        try check(dnnl_stream_wait(stream), "waiting for the stream")
    }

    /// Runs `body` with this thread's OpenMP thread count set to OpenBLAS's. oneDNN reads it when a
    /// primitive is created (its cache keys on it) and runs with that many, so it is set for both.
    static func withThreads<R>(_ body: () throws -> R) rethrows -> R {
        openMPSetThreads?(Int32(threadCount))
        return try body()
    }

    /// The thread count `withThreads` sets.
    static var threadCount: Int { max(1, BLAS.threadCount) }

    private typealias SetThreads = @convention(c) (Int32) -> Void
    /// libgomp's omp_set_num_threads, loaded with libdnnl (Debian ships no unversioned libgomp.so
    /// to link against by name).
    private static let openMPSetThreads: SetThreads? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return nil }
        return unsafeBitCast(symbol, to: SetThreads.self)
    }()
}
