// The optimiser's element-wise passes over a head's flat parameter buffers (summing the parts'
// gradients, the clipping norm, the update) ran on one core while the other waited for the next
// step (3% of LoSA's samples in a profile, so about 6% of its epoch). They run in fixed chunks on
// all the cores instead. The chunks depend only on the buffer's length, and a reduction adds its
// chunks' partial sums in chunk order, so the result is the same on any number of cores.
import Dispatch

/// Scalars per chunk: large enough that a chunk outweighs handing it to a thread.
public let parameterChunk = 1 << 15

/// Calls `body` with each fixed chunk of `0..<count`, on all the cores when there are several
/// chunks. `body` must touch only its own chunk's elements.
public func forEachChunk(of count: Int, _ body: (Range<Int>) -> Void) {
    let chunks = (count + parameterChunk - 1) / parameterChunk
    if chunks <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    withoutActuallyEscaping(body) { body in
        // The chunks are disjoint, which is what makes sharing `body` between threads safe.
        let shared = SharedBody(body)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            shared.body((c * parameterChunk)..<min((c + 1) * parameterChunk, count))
        }
    }
}

private struct SharedBody: @unchecked Sendable {
    let body: (Range<Int>) -> Void
    init(_ body: @escaping (Range<Int>) -> Void) { self.body = body }
}
