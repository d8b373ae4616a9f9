// OpenBLAS kernel selection and what the linked OpenBLAS says about itself.
//
// Debian's OpenBLAS 0.3.21 is built with DYNAMIC_ARCH and picks its kernels from the CPU model at
// load time. On CPUs newer than that release (e.g. Sapphire Rapids behind a hypervisor) it falls
// back to the generic "Prescott" SSE3 kernels, measured here at 63 GFLOP/s against 300 for the
// SkylakeX AVX-512 kernels on the same 4096×384·384×1536 product. When the user has not chosen a
// core with OPENBLAS_CORETYPE, we re-run OpenBLAS's own dynamic selection with the best kernel set
// the CPU's flags allow. Nothing here changes results beyond floating-point summation order.
#if canImport(Glibc)
import Glibc
#endif
import CBLAS

extension BLAS {
    /// OpenBLAS's build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
    public static var configuration: String {
        _ = kernelSelection
        return String(cString: openblas_get_config())
    }

    /// The kernel set in use, e.g. "SkylakeX".
    public static var coreName: String {
        _ = kernelSelection
        return String(cString: openblas_get_corename())
    }

    /// The number of threads OpenBLAS will use.
    public static var threadCount: Int {
        Int(openblas_get_num_threads())
    }

    /// Runs once, before the first product: re-selects OpenBLAS's kernels when it fell back to the
    /// generic set on a CPU that has AVX-512 or AVX2. Holds the core name chosen, or nil if untouched.
    public static let kernelSelection: String? = selectKernels()

    private static func selectKernels() -> String? {
        #if os(Linux) && arch(x86_64)
        guard getenv("OPENBLAS_CORETYPE") == nil,
              String(cString: openblas_get_corename()).lowercased() == "prescott",
              let flags = cpuFlags()
        else { return nil }
        let core: String
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) {
            core = "SkylakeX"
        } else if ["avx2", "fma"].allSatisfy(flags.contains) {
            core = "Haswell"
        } else {
            return nil
        }
        // gotoblas_dynamic_quit/init are exported by DYNAMIC_ARCH builds only: look them up.
        guard let quitSymbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gotoblas_dynamic_quit"),
              let initSymbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gotoblas_dynamic_init")
        else { return nil }
        typealias VoidFunction = @convention(c) () -> Void
        setenv("OPENBLAS_CORETYPE", core, 1)
        unsafeBitCast(quitSymbol, to: VoidFunction.self)()
        unsafeBitCast(initSymbol, to: VoidFunction.self)()
        unsetenv("OPENBLAS_CORETYPE")
        return core
        #else
        return nil
        #endif
    }

    private static func cpuFlags() -> Set<String>? {
        guard let file = fopen("/proc/cpuinfo", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("flags") {
                let list = text.split(separator: ":", maxSplits: 1).last ?? ""
                return Set(list.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
            }
        }
        return nil
    }
}
