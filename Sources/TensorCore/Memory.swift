// Heap tuning for the loops that allocate and free the same large buffers on every batch (a
// backbone's activations, a training step's tape).
#if canImport(Glibc)
import CMalloc
#endif

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
