// The learning-rate schedule every side network trains with: linear warmup, then cosine decay to
// a floor. Three cases, as in nanoGPT's get_lr.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Linear warmup from 0 to `peak` over `warmupSteps`, cosine decay to `floor` at `totalSteps`.
public struct LearningRateSchedule: Sendable, Equatable {
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var floor: Float

    public init(peak: Float, warmupSteps: Int, totalSteps: Int, floor: Float = 0) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.floor = floor
    }

    /// The rate for step `step` (0-based).
    public func rate(at step: Int) -> Float {
        // 1) linear warmup: (step + 1)/warmup of the peak, so the first step already moves
        if step < warmupSteps {
            return peak * Float(step + 1) / Float(warmupSteps)
        }
        // 2) past the end: the floor
        if step >= totalSteps {
            return floor
        }
        // 3) in between: cosine from the peak down to the floor
        let progress = Float(step - warmupSteps) / Float(max(totalSteps - warmupSteps, 1))
        let coefficient = 0.5 * (1 + cosf(Float.pi * progress))
        return floor + coefficient * (peak - floor)
    }
}
