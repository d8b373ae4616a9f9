// Heap tuning for the loops that allocate and free the same large buffers on every batch (a
// backbone's activations, a training step's tape).
#if canImport(Glibc)
import CMalloc
#endif

/// By default glibc maps each large buffer fresh and unmaps it on free, so every batch page-faults
/// (and the kernel zeroes) its whole working set again: a sixth of a LoSA step, and 6% of a bf16
/// extraction. Keeping freed memory in the heap for reuse removes that; what is kept is bounded by
/// the largest working set of one batch.
public func keepFreedMemory() {
    #if canImport(Glibc)
    mallopt(M_MMAP_THRESHOLD, 256 << 20)
    mallopt(M_TRIM_THRESHOLD, 512 << 20)
    #endif
}
