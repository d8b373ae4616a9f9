// Heap tuning for the loops that allocate and free the same large buffers on every batch (a
// backbone's activations, a training step's tape), and the limit on the address space.
#if canImport(Glibc)
import CMalloc
import Glibc
#endif
import Foundation

/// By default glibc maps each large buffer fresh and unmaps it on free, so every batch page-faults
/// (and the kernel zeroes) its whole working set again: a sixth of a LoSA step, 6% of a bf16
/// extraction. Keeping freed memory in the heap for reuse removes that; what is kept is bounded by
/// the working set of one batch.
///
/// One arena for every thread: glibc gives each new thread its own, and batches (or a batch's
/// parts) run on whichever pooled threads claim them, so every arena that ever ran one kept its
/// whole working set free for itself alone (LoSA: 211 MiB resident for 23 MiB in use between
/// batches). The few hundred large allocations per batch hardly contend for its lock.
public func keepFreedMemory() {
    #if canImport(Glibc)
    mallopt(M_MMAP_THRESHOLD, 256 << 20)
    mallopt(M_TRIM_THRESHOLD, 512 << 20)
    mallopt(M_ARENA_MAX, 1)
    #endif
}

/// The soft limit on this process's address space (RLIMIT_AS: `ulimit -v`, or a scheduler's, as
/// Grid Engine's h_vmem) in bytes, or nil where there is none.
public func addressSpaceLimit() -> Int? {
    #if os(Linux)
    let resource = __rlimit_resource_t(RLIMIT_AS.rawValue)
    #else
    let resource = RLIMIT_AS
    #endif
    var limit = rlimit()
    // RLIM_INFINITY is all ones on Linux and 2^63 − 1 on Darwin: no address space comes near either.
    guard getrlimit(resource, &limit) == 0, limit.rlim_cur < 1 << 62 else { return nil }
    return Int(limit.rlim_cur)
}

/// The size of this process's address space now (mapped, not resident), from /proc/self/statm;
/// nil where that file does not exist.
public func mappedBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = text.split(separator: " ").first.flatMap({ Int($0) }) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The threads that may run products at once unless told fewer: the cores' and this one.
public var productThreads: Int { ProcessInfo.processInfo.activeProcessorCount + 1 }

/// Address space to keep free for OpenBLAS, which maps 129 MiB for each thread that runs a
/// product at once and, where it cannot, retries forever at full CPU; and 256 MiB for everything
/// else that is not counted otherwise.
public func reservedAddressSpace(threads: Int = productThreads) -> Int {
    threads * (129 << 20) + (256 << 20)
}
