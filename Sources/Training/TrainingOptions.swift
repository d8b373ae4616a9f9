// The trainer's settings, shared by every head of one pass, recorded verbatim in config.json.

public struct TrainingOptions: Codable, Sendable, Equatable {
    public enum OptimizerKind: String, Codable, Sendable, CaseIterable { case adamw, sgd }

    public var epochs = 15
    public var batchSize = 32
    /// Peak learning rate; nil: each head's own default.
    public var learningRate: Float? = nil
    public var optimizer = OptimizerKind.adamw
    public var weightDecay: Float = 0.01
    /// SGD momentum.
    public var momentum: Float = 0.9
    /// Fraction of all steps spent warming up linearly.
    public var warmup: Float = 0.06
    /// The cosine decay's end, as a fraction of the peak.
    public var finalLearningRate: Float = 0
    public var labelSmoothing: Float = 0
    /// Global gradient-norm clip (0: off).
    public var clipNorm: Float = 1
    /// Epochs without a better validation accuracy before a head stops (0: never stop early).
    public var patience = 4
    /// Decay of an exponential moving average of the weights (timm's model EMA), which is then
    /// what is evaluated, kept as best and saved; nil: off. Optional so that config.json files
    /// written before it still read.
    public var emaDecay: Float? = nil
    public var seed: UInt64 = 0
    /// Decode the needed features once and keep them in memory.
    public var inMemory = false
    /// Threads training at once: heads, and the batch parts of heads that split their batches
    /// (nil: one per core). The results are the same for every value.
    public var parallelHeads: Int? = nil
    /// Leave records that fail their checksums out of every split (counted in the result) instead
    /// of stopping at the first. Not in config.json: what it left out is in result.json.
    public var skipCorrupt = false

    enum CodingKeys: String, CodingKey {
        case epochs, optimizer, momentum, warmup, patience, seed
        case batchSize = "batch_size", learningRate = "lr", weightDecay = "weight_decay"
        case finalLearningRate = "final_lr_fraction", labelSmoothing = "label_smoothing", clipNorm = "clip_norm"
        case inMemory = "in_memory", parallelHeads = "parallel_heads", emaDecay = "ema_decay"
    }

    public init() {}
}
