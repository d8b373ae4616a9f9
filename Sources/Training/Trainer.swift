// The training loop for one or many heads on one cache. Each batch is decoded once and every head
// steps on it, so K heads cost one pass of decoding. Heavy heads split each batch into fixed parts
// (ShardedStep); the (head, part) items of a batch run on all the cores, followed by the parts of
// the next batch's decoding (NextBatch). Every head has its own parameters, optimiser, schedule,
// tapes and generators, all derived from the one seed and never from its position in the group or
// the core count: a head trained in a group ends bit-identical to the same head trained alone.
import ActivationStore
import Autodiff
import Dispatch
import Foundation
import SideNetworks
import TensorCore

/// One head to train: its registered name and its `--set` values.
public struct HeadRequest: Codable, Sendable, Equatable {
    public var head: String
    public var settings: [String: String]
    /// This head's peak learning rate, over TrainingOptions.learningRate (nil: that, or the head's
    /// default), so that heads differing only in rate can share a pass.
    public var learningRate: Float?
    /// Where the request was written (`--heads-file F: entry 2`, `--head mlp (head 2 of 3 given by --head)`),
    /// put before the errors its head raises against the cache, where several heads train
    /// together (of one kind, perhaps). Not recorded.
    public var origin: String?

    enum CodingKeys: String, CodingKey {
        case head, settings, learningRate
    }

    public init(head: String, settings: [String: String] = [:], learningRate: Float? = nil, origin: String? = nil) {
        self.head = head
        self.settings = settings
        self.learningRate = learningRate
        self.origin = origin
    }
}

/// One line of log.tsv.
public struct EpochRecord: Codable, Sendable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var valLoss: Double?
    public var valAccuracy: Double?
    public var learningRate: Float
    public var examplesPerSecond: Double
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case epoch, seconds
        case trainLoss = "train_loss", valLoss = "val_loss", valAccuracy = "val_accuracy"
        case learningRate = "lr", examplesPerSecond = "examples_per_s"
    }
}

/// What a fit produced for one head (result.json).
public struct FitResult: Codable, Sendable {
    public var head: String
    public var hyperparameters: Hyperparameters
    public var learningRate: Float
    public var trainableParameters: Int
    /// Trainable parameters over the backbone's, taken as its weights file's bytes / 4 (an f32
    /// checkpoint, as MiniLM's); nil when the cache records no weights size.
    public var fractionOfBackbone: Double?
    public var bestEpoch: Int
    public var epochsRun: Int
    public var val: ClassificationMetrics?
    public var test: ClassificationMetrics?
    public var labels: [String]
    public var peakRSSBytes: Int
    /// The largest anonymous resident size seen between batches (nil where unmeasurable).
    public var peakAnonymousBytes: Int?
    public var wallSeconds: Double
    public var cacheManifestHash: String
    public var history: [EpochRecord]
    /// Why this head stopped without a usable result (its loss diverged); nil when it trained.
    public var failure: String? = nil
    /// Damaged records left out of training and evaluation (only with `--skip-corrupt`, else nil).
    public var skippedCorrupt: Int?

    enum CodingKeys: String, CodingKey {
        case head, hyperparameters, val, test, labels, history, failure
        case learningRate = "lr", trainableParameters = "trainable_parameters", fractionOfBackbone = "fraction_of_backbone"
        case bestEpoch = "best_epoch", epochsRun = "epochs_run", peakRSSBytes = "peak_rss_bytes", peakAnonymousBytes = "peak_anonymous_bytes", wallSeconds = "wall_seconds"
        case cacheManifestHash = "cache_manifest_hash", skippedCorrupt = "skipped_corrupt"
    }
}

/// Progress reported while training.
public enum TrainingEvent {
    case batch(epoch: Int, done: Int, of: Int)
    case epoch(head: Int, name: String, record: EpochRecord, stopped: Bool)
}

/// A head with its optimiser and early-stopping state.
final class HeadState: @unchecked Sendable {
    let request: HeadRequest
    let hyperparameters: Hyperparameters
    let head: any Head
    var optimizer: any Optimizer
    /// Set once the train split's size (and so the step count) is known.
    var schedule: LearningRateSchedule
    /// The head's tapes and per-part gradients.
    let sharded: ShardedStep
    var step = 0
    var lossSum = 0.0
    var lossCount = 0
    var best: [Float]? = nil
    var bestAccuracy = -1.0
    var bestLoss = Double.infinity
    var bestEpoch = 0
    var sinceBest = 0
    var stopped = false
    /// Set when the loss stops being finite; the head then stops while the others go on.
    var failure: String? = nil
    var history: [EpochRecord] = []
    /// The moving average of the weights, with `TrainingOptions.emaDecay`.
    var averaged: [Float]? = nil

    init(request: HeadRequest, hyperparameters: Hyperparameters, head: any Head, optimizer: any Optimizer,
         schedule: LearningRateSchedule, seed: UInt64) {
        self.request = request
        self.hyperparameters = hyperparameters
        self.head = head
        self.optimizer = optimizer
        self.schedule = schedule
        sharded = ShardedStep(head: head, rng: SeededGenerator(seed: seed).derived(1))
    }

    /// After every part of the batch: the parts' gradients summed, clipping and the optimiser step.
    func finishStep(batchCount: Int, options: TrainingOptions, epoch: Int) {
        let value = sharded.combine()
        guard value.isFinite else {
            failure = "diverged: train loss \(value) at epoch \(epoch)"
            stopped = true
            return
        }
        if options.clipNorm > 0 { _ = head.parameters.clipGradientNorm(options.clipNorm) }
        optimizer.step(head.parameters, learningRate: schedule.rate(at: step))
        if let decay = options.emaDecay { average(decay: decay) }
        step += 1
        lossSum += Double(value) * Double(batchCount)
        lossCount += batchCount
    }

    /// Moves the average towards the weights after a step. The decay starts low,
    /// min(decay, (1 + n) / (10 + n)) at step n, as TensorFlow's ExponentialMovingAverage does
    /// given the step count: otherwise the initial weights would weigh on the average for
    /// thousands of steps.
    func average(decay: Float) {
        precondition(averaged != nil, "the weight average starts when the trainer is built")
        let rate = 1 - min(decay, Float(1 + step) / Float(10 + step))
        head.parameters.values.withUnsafeBufferPointer { v in
            averaged!.withUnsafeMutableBufferPointer { a in
                for i in a.indices { a[i] += rate * (v[i] - a[i]) }
            }
        }
    }
}

public final class Trainer {
    public let cache: ActivationCache
    /// As given, except `inMemory` when the features did not fit (see `notices`).
    public private(set) var options: TrainingOptions
    public let description: CacheDescription
    /// What the trainer changed about the options and why, for the log.
    public private(set) var notices: [String] = []
    let states: [HeadState]
    let train: CacheDataset
    let val: CacheDataset?
    let test: CacheDataset?
    var peakAnonymous: Int? = nil
    /// Polled after every batch; when it returns true, `run` throws `TrainingCancelled` (nothing
    /// is returned for any head).
    public var shouldStop: (@Sendable () -> Bool)? = nil

    /// Builds every head and opens the splits; throws on a bad head, key, value or cache before
    /// any training.
    /// `availableMemory` is what `inMemory` may fill (tests give a small one).
    public init(cache: ActivationCache, requests: [HeadRequest], options: TrainingOptions,
                availableMemory: Int? = availableMemoryBytes()) throws {
        precondition(!requests.isEmpty, "Trainer needs at least one head")
        keepFreedMemory()
        guard options.epochs >= 1, options.batchSize >= 1 else {
            throw HeadError("--epochs and --batch-size must be at least 1")
        }
        self.cache = cache
        self.options = options
        description = try cache.describe()
        let splits = cache.manifest.settings.splits
        guard splits.contains("train") else { throw CacheError("\(cache.path): the cache has no train split") }
        try cache.requireClasses()
        var states: [HeadState] = []
        for request in requests {
            let kind = try HeadRegistry.kind(named: request.head)
            let h = try Hyperparameters(head: request.head, schema: kind.schema, settings: request.settings)
            // What the cache lacks (make says which extract flag adds it) before what training refuses.
            let head: any Head
            do {
                head = try kind.make(h, context: description.context, seed: options.seed)
                try kind.checkForTraining(h, context: description.context)
            } catch let error as HeadError where request.origin != nil {
                throw HeadError("\(request.origin!): \(error)")
            } catch let error as CacheError where request.origin != nil {
                // A damaged blob the head reads, say.
                throw CacheError("\(request.origin!): \(error)")
            }
            let rate = request.learningRate ?? options.learningRate ?? kind.defaultLearningRate
            states.append(HeadState(request: request, hyperparameters: h, head: head, optimizer: Self.optimizer(options),
                                    schedule: LearningRateSchedule(peak: rate, warmupSteps: 0, totalSteps: 1), seed: options.seed))
        }
        // Only the union of what the heads read is decoded.
        let features = Feature.union(states.map(\.head.features))
        train = try CacheDataset(cache: cache, split: "train", features: features, skipCorrupt: options.skipCorrupt)
        val = splits.contains("val") ? try CacheDataset(cache: cache, split: "val", features: features, skipCorrupt: options.skipCorrupt) : nil
        test = splits.contains("test") ? try CacheDataset(cache: cache, split: "test", features: features, skipCorrupt: options.skipCorrupt) : nil
        guard train.count > 0 else { throw CacheError("\(cache.path): the train split is empty") }
        if options.inMemory {
            let splits = [train, val, test].compactMap { $0 }
            let needed = try splits.reduce(0) { $0 + (try $1.decodedBytes()) }
            if let refusal = Self.inMemoryRefusal(needed: needed, available: availableMemory) {
                self.options.inMemory = false
                notices.append(refusal)
            } else {
                for split in splits { try split.holdInMemory() }
            }
        }
        let (total, overflow) = Self.batchesPerEpoch(train.count, options.batchSize).multipliedReportingOverflow(by: options.epochs)
        // A bound no real run nears, so that step counts and the schedule's conversions cannot overflow.
        guard !overflow, total <= 1 << 40 else {
            throw HeadError("--epochs \(options.epochs) of \(Self.batchesPerEpoch(train.count, options.batchSize)) batches: more than 2^40 steps")
        }
        for s in states {
            // The average starts at the initial weights, as timm's does.
            if options.emaDecay != nil { s.averaged = s.head.parameters.values }
            let rate = s.schedule.peak
            s.schedule = LearningRateSchedule(peak: rate, warmupSteps: Int((Float(total) * options.warmup).rounded()),
                                              totalSteps: total, floor: rate * options.finalLearningRate)
        }
        self.states = states
    }

    /// Why `inMemory` is declined, or nil when the decoded features take at most three quarters
    /// of the memory available (the rest is for the heads, their batches and the system), or
    /// when that cannot be measured.
    static func inMemoryRefusal(needed: Int, available: Int?) -> String? {
        guard let available, needed > available / 4 * 3 else { return nil }
        func size(_ bytes: Int) -> String {
            bytes < 1_000_000_000 ? String(format: "%.0f MB", Double(bytes) / 1e6) : String(format: "%.1f GB", Double(bytes) / 1e9)
        }
        return "--in-memory: the features these heads read take \(size(needed)) decoded, more than three quarters of "
            + "the \(size(available)) of memory available (or of address space, under a limit); streaming them from the cache instead"
    }

    /// Batches of at most `batchSize` in `count` examples (the last one may be smaller), without
    /// overflowing for any batch size.
    static func batchesPerEpoch(_ count: Int, _ batchSize: Int) -> Int {
        count / batchSize + (count % batchSize == 0 ? 0 : 1)
    }

    func samplePeakMemory() {
        if let now = anonymousResidentBytes() { peakAnonymous = max(peakAnonymous ?? 0, now) }
    }

    static func optimizer(_ options: TrainingOptions) -> any Optimizer {
        switch options.optimizer {
        case .adamw: AdamW(weightDecay: options.weightDecay)
        case .sgd: SGD(momentum: options.momentum, weightDecay: options.weightDecay)
        }
    }

    public var heads: [any Head] { states.map(\.head) }

    /// The damaged records left out of every split (with `skipCorrupt`), in split then key order.
    public var skippedRecords: [CorruptRecord] { [train, val, test].compactMap { $0 }.flatMap(\.skipped) }

    /// Threads training at once.
    private var workers: Int { options.parallelHeads ?? ProcessInfo.processInfo.activeProcessorCount }

    /// Runs `body(i, part)` on every part of every head `states[i]` of a batch, then decodes the
    /// parts of `next`'s batch, on as many cores as there are (or `parallelHeads`). Each item
    /// writes only its own head's part state or its own decoded part, so the order in which the
    /// items run changes nothing.
    private func forEachPart(_ states: [HeadState], then next: NextBatch?,
                             _ body: @escaping @Sendable (_ state: Int, _ part: Int) -> Void) {
        let items = states.indices.flatMap { i in (0..<states[i].sharded.parts).map { (i, $0) } }
        runItems(items.count + (next?.parts ?? 0), workers: workers) { k in
            if k < items.count { body(items[k].0, items[k].1) } else { next!.decode(part: k - items.count) }
        }
    }

    /// The parts a batch is decoded in: one per worker at least, so that a head whose step is
    /// shorter than decoding (a probe) is not held to one core's decoding speed.
    private func decodedParts(_ states: [HeadState]) -> Int {
        max(states.map(\.sharded.parts).max() ?? 1, workers)
    }

    /// Trains, evaluates each epoch on val (early stopping, best parameters kept), then evaluates
    /// the best parameters on val and test.
    public func run(events: (TrainingEvent) -> Void = { _ in }) throws -> [FitResult] {
        let start = Date()
        samplePeakMemory()
        // One BLAS thread: the side networks' products are small, and OpenBLAS's second thread
        // spun more than it helped (LoSA: 13.8 against 15.6 batches/s); the cores train the
        // halves of a batch or other heads instead.
        let previousThreads = BLAS.threadCount
        BLAS.setThreadCount(1)
        defer { BLAS.setThreadCount(previousThreads) }
        let stepsPerEpoch = Self.batchesPerEpoch(train.count, options.batchSize)
        for epoch in 1...options.epochs {
            let active = states.filter { !$0.stopped }
            if active.isEmpty { break }
            let epochStart = Date()
            var order = Array(0..<train.count)
            var rng = SeededGenerator(seed: options.seed).derived(UInt64(1000 + epoch))
            order.shuffle(using: &rng)
            let size = min(options.batchSize, order.count)
            let batches = stride(from: 0, to: order.count, by: size).map { Array(order[$0..<min($0 + size, order.count)]) }
            for s in active { s.lossSum = 0; s.lossCount = 0 }
            let next = try NextBatch(dataset: train, parts: decodedParts(active))
            var decoded = try next.decodeNow(batches[0], workers: workers)
            let opts = options
            for done in batches.indices {
                let training = active.filter { $0.failure == nil }
                let parts = BatchParts(decoded, partCounts: Set(training.map(\.sharded.parts)))
                let count = parts.count
                let more = done + 1 < batches.count
                if more { try next.start(batches[done + 1]) }
                forEachPart(training, then: more ? next : nil) { i, part in
                    let s = training[i]
                    s.sharded.forwardBackward(part: part, parts.part(part, of: s.sharded.parts), batchCount: count,
                                              labelSmoothing: opts.labelSmoothing)
                }
                for s in training { s.finishStep(batchCount: count, options: opts, epoch: epoch) }
                if shouldStop?() == true { throw TrainingCancelled() }
                if done % 8 == 0 { samplePeakMemory() }
                events(.batch(epoch: epoch, done: done + 1, of: stepsPerEpoch))
                if more { decoded = try next.take() }
            }
            let seconds = Date().timeIntervalSince(epochStart)
            let valMetrics = try val.map { try evaluate($0, active.filter { $0.failure == nil }, averaged: true) }
            samplePeakMemory()
            for (i, s) in states.enumerated() where !s.stopped {
                let metrics = valMetrics?[ObjectIdentifier(s)]
                // Parameters can overflow on a step whose own loss was still finite: the val loss
                // shows it, and where there is no val split the parameters themselves.
                let trainLoss = s.lossSum / Double(max(s.lossCount, 1))
                if let bad = [("train", trainLoss), ("val", metrics?.loss ?? 0)].first(where: { !$0.1.isFinite }) {
                    s.failure = "diverged: \(bad.0) loss \(bad.1) at epoch \(epoch)"
                    s.stopped = true
                    continue
                }
                if metrics == nil, !(s.averaged ?? s.head.parameters.values).allSatisfy(\.isFinite) {
                    s.failure = "diverged: the parameters are not finite after epoch \(epoch)"
                    s.stopped = true
                    continue
                }
                let record = EpochRecord(epoch: epoch, trainLoss: trainLoss,
                                         valLoss: metrics?.loss, valAccuracy: metrics?.accuracy,
                                         learningRate: s.schedule.rate(at: max(s.step - 1, 0)),
                                         examplesPerSecond: Double(train.count) / max(seconds, 1e-9), seconds: seconds)
                s.history.append(record)
                // Best = highest val accuracy, ties to the lower val loss; without val, the last epoch.
                let accuracy = metrics?.accuracy ?? Double(epoch)
                let loss = metrics?.loss ?? 0
                if accuracy > s.bestAccuracy || (accuracy == s.bestAccuracy && loss < s.bestLoss) {
                    s.bestAccuracy = accuracy
                    s.bestLoss = loss
                    s.bestEpoch = epoch
                    s.best = s.averaged ?? s.head.parameters.values
                    s.sinceBest = 0
                } else {
                    s.sinceBest += 1
                    if options.patience > 0 && s.sinceBest >= options.patience { s.stopped = true }
                }
                events(.epoch(head: i, name: s.request.head, record: record, stopped: s.stopped))
            }
        }
        for s in states { if let best = s.best { s.head.parameters.values = best } }
        let trained = states.filter { $0.failure == nil }
        let valFinal = try val.map { try evaluate($0, trained) }
        let testFinal = try test.map { try evaluate($0, trained) }
        let wall = Date().timeIntervalSince(start)
        let backbone = cache.manifest.settings.backbone.parameters
        return states.map { s in
            let rate = s.request.learningRate ?? options.learningRate ?? s.schedule.peak
            var result = FitResult(
                head: s.request.head, hyperparameters: s.hyperparameters, learningRate: rate,
                trainableParameters: s.head.parameters.count,
                fractionOfBackbone: backbone > 0 ? Double(s.head.parameters.count) / Double(backbone) : nil,
                bestEpoch: s.bestEpoch, epochsRun: s.history.count,
                val: valFinal?[ObjectIdentifier(s)], test: testFinal?[ObjectIdentifier(s)],
                labels: description.labels, peakRSSBytes: peakResidentBytes(), peakAnonymousBytes: peakAnonymous, wallSeconds: wall,
                cacheManifestHash: description.manifestHash, history: s.history,
                skippedCorrupt: options.skipCorrupt ? skippedRecords.count : nil)
            result.failure = s.failure
            if s.failure == nil, let loss = [result.val?.loss, result.test?.loss].compactMap({ $0 }).first(where: { !$0.isFinite }) {
                result.failure = "diverged: evaluation loss \(loss) with the best parameters"
            }
            if result.failure != nil { (result.val, result.test) = (nil, nil) }
            return result
        }
    }

    /// Loss, accuracy, macro-F1 and confusion of each head on a split, in eval mode; with
    /// `averaged`, of the heads' weight averages where they keep one.
    func evaluate(_ dataset: CacheDataset, _ states: [HeadState], averaged: Bool = false) throws -> [ObjectIdentifier: ClassificationMetrics] {
        let swapped = averaged ? states.filter { $0.averaged != nil } : []
        let trained = swapped.map { $0.head.parameters.values }
        for s in swapped { s.head.parameters.values = s.averaged! }
        defer { for (s, values) in zip(swapped, trained) { s.head.parameters.values = values } }
        let collected = states.map { _ in Collected() }
        let labels = try predictSplit(dataset, steps: states.map(\.sharded), batchSize: options.batchSize, workers: workers,
                                      stop: { if self.shouldStop?() == true { throw TrainingCancelled() } }) { i, logits, labels in
            collected[i].add(logits: logits, labels: labels)
        }
        var out: [ObjectIdentifier: ClassificationMetrics] = [:]
        for (s, c) in zip(states, collected) { out[ObjectIdentifier(s)] = c.metrics(labels: labels, classes: description.labels.count) }
        return out
    }
}

/// Thrown by `Trainer.run` when `shouldStop` asked it to stop.
public struct TrainingCancelled: Error, CustomStringConvertible {
    public var description: String { "training was stopped before it finished" }
}

/// Predictions and summed loss of one head over a split (the trainer's evaluation and `sidecar eval`).
final class Collected: @unchecked Sendable {
    var predictions: [Int] = []
    var lossSum = 0.0
    /// Rows with a NaN or infinite logit: weights that are finite can still overflow.
    var nonFiniteRows = 0

    func add(logits: Tensor, labels: [Int]) {
        let classes = logits.shape[1]
        for (b, label) in labels.enumerated() {
            let row = logits.scalars[(b * classes)..<((b + 1) * classes)]
            if row.contains(where: { !$0.isFinite }) { nonFiniteRows += 1 }
            let top = row.max()!
            // A NaN logit compares unequal to everything; count such a row as class 0, not a crash.
            predictions.append((row.firstIndex(of: top) ?? b * classes) - b * classes)
            let logSum = Double(top) + log(row.reduce(0.0) { $0 + exp(Double($1 - top)) })
            lossSum += logSum - Double(row[b * classes + label])
        }
    }

    /// The metrics of what was added, against `labels` (the split's, in the same order).
    func metrics(labels: [Int], classes: Int) -> ClassificationMetrics {
        ClassificationMetrics(predictions: predictions, labels: labels, classes: classes, loss: lossSum / Double(max(labels.count, 1)))
    }
}

/// Resident memory that is not a file mapping (heap, stacks, anonymous maps) right now, from
/// /proc/self/status; nil where that file does not exist. LMDB's memory map is file-backed, so this
/// is what a fit itself holds, apart from the pages of the cache the kernel keeps mapped.
public func anonymousResidentBytes() -> Int? {
    numberField(of: "/proc/self/status", "RssAnon:").map { $0 * 1024 }
}

/// The number after `key` on its line of a "key value" file (/proc's status and meminfo, in kB;
/// a cgroup's memory.stat, in bytes).
private func numberField(of path: String, _ key: String) -> Int? {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") {
        let words = line.split(whereSeparator: \.isWhitespace)
        if words.first.map(String.init) == key { return words.dropFirst().first.flatMap { Int($0) } }
    }
    return nil
}

/// The process's peak resident set size (file-backed pages of the cache included).
public func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int(usage.ru_maxrss) * 1024
}

/// A rough estimate of what training or evaluating heads on batches takes: one estimate for the
/// address-space checks of `fit` and `eval` and for how many heads a sweep puts in one pass.
public enum WorkingSet {
    /// Floats a step keeps per row and feature a head reads: training's tape about 16 (measured
    /// as 1 MB per example for LoSA on the demo), evaluation's about 4.
    public static func floatsPerRowAndFeature(training: Bool) -> Double { training ? 16 : 4 }

    /// One head on batches of `rows` rows in all: its weights (in training with their gradients
    /// and AdamW's two moments), and what a step keeps per row and feature read.
    public static func head(parameters: Int, features: Int, rows: Double, width: Int, training: Bool) -> Double {
        Double(parameters) * (training ? 16 : 4) + rows * Double(width) * 4 * floatsPerRowAndFeature(training: training) * Double(features + 1)
    }

    /// The decoded batch and the next one, `features` of them read by the pass's heads together.
    public static func batches(features: Int, rows: Double, width: Int) -> Double {
        2 * rows * Double(width) * 4 * Double(features)
    }

    /// A batch's rows in all: `batchSize` examples of the cache's mean rows per example.
    public static func rows(_ cache: ActivationCache, batchSize: Int) -> Double {
        Double(batchSize) * rowsPerExample(measured: cache.meanRows(), cache.manifest.settings)
    }

    /// The mean rows per example `measured` (`ActivationCache.meanRows`, which reads records), or
    /// the cache's N_max where it could not be.
    public static func rowsPerExample(measured: Double?, _ settings: ExtractionSettings) -> Double {
        measured ?? Double(settings.maxTokens ?? 128)
    }

    /// `heads` trained (or evaluated) together on batches of `batchSize`, in bytes.
    public static func pass(_ cache: ActivationCache, batchSize: Int, heads: [any Head], training: Bool) -> Int {
        let rows = rows(cache, batchSize: batchSize), width = cache.manifest.settings.backbone.hiddenSize
        let total = heads.reduce(batches(features: Feature.union(heads.map(\.features)).count, rows: rows, width: width)) {
            $0 + head(parameters: $1.parameterCount, features: $1.features.count, rows: rows, width: width, training: training)
        }
        return Int(min(total, Double(1 << 50)))
    }
}

/// Bytes this process could still allocate without swapping or meeting a cgroup's limit: the
/// kernel's MemAvailable (free memory plus page cache it can drop), or less where the process's
/// cgroup or one above it (v2 or v1) caps it lower. A cgroup's usage counts the page cache it
/// touched (a cache's memory map, say), which the kernel drops before failing an allocation, so
/// that part is not counted as used; and, under an address-space limit (`ulimit -v`), what is left
/// of it besides OpenBLAS's buffers. Nil when /proc/meminfo cannot be read.
public func availableMemoryBytes() -> Int? {
    func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    guard let kb = numberField(of: "/proc/meminfo", "MemAvailable:") else { return nil }
    var available = kb * 1024
    // Under an address-space limit, what is left of it besides OpenBLAS's buffers.
    if let limit = addressSpaceLimit(), let mapped = mappedBytes() {
        available = min(available, max(0, limit - mapped - reservedAddressSpace()))
    }
    // "0::/path" is the v2 hierarchy, "N:…,memory,…:/path" v1's memory controller.
    for line in (read("/proc/self/cgroup") ?? "").split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { continue }
        let v2 = parts[0] == "0" && parts[1].isEmpty
        guard v2 || parts[1].split(separator: ",").contains("memory") else { continue }
        let (mount, limit, usage, cached) = v2 ? ("/sys/fs/cgroup", "memory.max", "memory.current", "file")
                                               : ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache")
        // The process's group and every group above it; where the mount shows no such path (a
        // container that sees its own group as the root), the root alone.
        var path = parts[2]
        while true {
            let folder = mount + (path == "/" ? "" : path)
            // v2 writes "max" for no limit, which does not parse; v1 writes a huge number.
            if let cap = read(folder + "/" + limit).flatMap({ Int($0) }), let used = read(folder + "/" + usage).flatMap({ Int($0) }) {
                let droppable = numberField(of: folder + "/memory.stat", cached) ?? 0
                available = min(available, max(0, cap - max(0, used - droppable)))
            }
            if path == "/" || path.isEmpty { break }
            path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if path.isEmpty { path = "/" }
        }
    }
    return available
}
