// Runs a shard's groups, one pass each, in this process: every finished head gets its folder under
// DIR/trials/<id>/ and then its results line (the line is written last, so a line means the trial
// is complete). A diverged head or a head the cache cannot build is recorded as failed and the
// sweep goes on; a stop request ends the current pass after its batch and records nothing of it.
import ActivationStore
import Foundation
import SideNetworks
import TensorCore
import Training

/// Set from a signal handler; polled by the trainer after every batch.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var first: Int32 = 0
    public init() {}
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    /// The signal that set the flag first (0 when none did).
    public var signal: Int32 { lock.lock(); defer { lock.unlock() }; return first }
    public func set(signal: Int32 = 0) {
        lock.lock()
        if !value { first = signal }
        value = true
        lock.unlock()
    }
}

/// The sweep was asked to stop; what finished before is recorded.
public struct SweepInterrupted: Error, CustomStringConvertible {
    public var finished: Int
    public init(finished: Int) { self.finished = finished }
    public var description: String { "stopped: \(finished) trial(s) of this run finished and were recorded; run the same command again to resume" }
}

public struct SweepRunner {
    public var cache: ActivationCache
    public var cachePath: String
    public var resultsFolder: String
    public var shard: Shard
    /// Heads trained at once on separate cores within one pass.
    public var parallelHeads: Int?
    public var inMemory = false
    public var stop: StopFlag
    public var log: (String) -> Void

    public init(cache: ActivationCache, cachePath: String, resultsFolder: String, shard: Shard, parallelHeads: Int? = nil,
                stop: StopFlag = StopFlag(), log: @escaping (String) -> Void = { print($0) }) {
        self.cache = cache
        self.cachePath = cachePath
        self.resultsFolder = resultsFolder
        self.shard = shard
        self.parallelHeads = parallelHeads
        self.stop = stop
        self.log = log
    }

    public static func trialFolder(_ results: String, _ id: String) -> String {
        URL(userPath: results).appendingPathComponent("trials").appendingPathComponent(id).path
    }

    /// Whether a finished trial's folder is there but lost part of its head: the weights, or
    /// the result or config that eval, export and predict read with them. A trials folder
    /// removed whole (to save space) is not a loss.
    public static func lostHead(_ folder: String) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: folder) && !["head.safetensors", "result.json", "config.json"].allSatisfy { fm.fileExists(atPath: folder + "/" + $0) }
    }

    /// What `sweep` and `report` say of finished trials whose folders lost part of their heads.
    public static func lostHeadsWarning(_ trials: [String], results: String, then: String) -> String {
        "\(trials.count) finished trial(s) lack head.safetensors, result.json or config.json in \(results)/trials \(then): "
            + trials.prefix(5).joined(separator: ", ") + (trials.count > 5 ? ", …" : "")
    }

    /// Runs each group's members (only those given: the pending ones); returns the counts of
    /// trials that finished and failed, and of passes that failed as a whole (a damaged cache, a
    /// full disk: the trials themselves were never the fault).
    @discardableResult
    public func run(_ groups: [TrialGroup]) throws -> (ok: Int, failed: Int, failedPasses: Int, unwritten: Int) {
        let writer = try ResultsWriter(folder: resultsFolder, shard: shard)
        let description = try cache.describe()
        let cacheRecord = FitOutput.CacheRecord(cache)
        let cacheHash = description.manifestHash
        // Every line names the cache it ran on, so that a rerun on another cache is not taken as finished.
        func append(_ record: TrialRecord) throws {
            var record = record
            record.cacheManifestHash = cacheHash
            try writer.append(record)
        }
        if writer.cutBytes > 0 {
            log("\(writer.path): cut off a torn last line (\(writer.cutBytes) bytes) that an interrupted run left")
        }
        let context = description.context
        var ok = 0, failed = 0, failedPasses = 0, unwritten = 0
        for (n, group) in groups.enumerated() {
            if stop.isSet { throw SweepInterrupted(finished: ok + failed) }
            // The plan builds heads without this CPU (every shard must plan alike), so a head it
            // could build may still fail here (bf16 products on a CPU without them): that trial
            // fails alone, as one the plan could not build does.
            var members: [PlannedTrial] = []
            for p in group.members {
                var error = p.lateError
                if error == nil {
                    do { _ = try HeadRegistry.make(p.trial.head, settings: p.trial.settings, context: context, seed: UInt64(p.trial.training.seed)) }
                    catch let built { error = "\(built)" }
                }
                guard let error else {
                    members.append(p)
                    continue
                }
                try append(TrialRecord(trial: p.trial, error: "config: \(error)", shard: shard, group: group.id, fitSeconds: 0,
                                       peakRSS: peakResidentBytes()))
                log("  \(p.trial.id) \(p.trial.head): failed: \(error)")
                failed += 1
            }
            if members.isEmpty { continue }
            log("group \(group.id) (\(n + 1)/\(groups.count)): \(members.count) head(s), \(group.training.epochs) epoch(s), batch \(group.training.batchSize), seed \(group.training.seed)")
            var options = TrainingOptions()
            let t = group.training
            options.epochs = t.epochs
            options.batchSize = t.batchSize
            options.seed = UInt64(t.seed)
            options.optimizer = t.optimizer == "sgd" ? .sgd : .adamw
            options.weightDecay = Float(t.weightDecay)
            options.warmup = Float(t.warmup)
            options.labelSmoothing = Float(t.labelSmoothing)
            options.clipNorm = Float(t.clipNorm)
            options.patience = t.patience
            options.emaDecay = t.emaDecay.map(Float.init)
            options.parallelHeads = parallelHeads
            options.inMemory = inMemory
            let requests = members.map { HeadRequest(head: $0.trial.head, settings: $0.trial.settings, learningRate: Float($0.trial.training.lr)) }
            let started = Date()
            let results: [FitResult]
            let trainer: Trainer
            do {
                trainer = try Trainer(cache: cache, requests: requests, options: options)
                for notice in trainer.notices { log("  " + notice) }
                let stop = self.stop
                trainer.shouldStop = { stop.isSet }
                // One line per epoch of the pass, with the time left at the rate measured so far: the
                // plan's estimate comes from assumed rates, and a pass of heavy heads can run for hours.
                var logged = 0
                results = try trainer.run { event in
                    guard case .epoch(_, _, let record, _) = event, record.epoch > logged else { return }
                    logged = record.epoch
                    let elapsed = Date().timeIntervalSince(started)
                    let left = elapsed / Double(record.epoch) * Double(t.epochs - record.epoch)
                    let remaining = t.patience > 0
                        ? "at most about \(roughDuration(left)) left in this pass (early stopping may end it sooner)"
                        : "about \(roughDuration(left)) left in this pass"
                    log("  group \(group.id): epoch \(record.epoch)/\(t.epochs) after \(roughDuration(elapsed))"
                        + (record.epoch < t.epochs ? "; " + remaining : ""))
                }
            } catch is TrainingCancelled {
                throw SweepInterrupted(finished: ok + failed)
            } catch {
                // The pass itself failed (not one head): every member is recorded with the reason;
                // a rerun retries them.
                let seconds = Date().timeIntervalSince(started)
                let reason = error is CorruptRecord ? "\(cachePath): \(error)" : "\(error)"
                for p in members {
                    try append(TrialRecord(trial: p.trial, error: "pass failed: \(reason)", shard: shard, group: group.id,
                                           fitSeconds: seconds, peakRSS: peakResidentBytes()))
                }
                log("  group \(group.id) failed: \(reason)")
                failed += members.count
                failedPasses += 1
                continue
            }
            var options1 = trainer.options
            for ((p, fit), head) in zip(zip(members, results), trainer.heads) {
                options1.learningRate = Float(p.trial.training.lr)
                var result = fit
                if result.failure == nil {
                    do {
                        try FitOutput.write(result, head: head, options: options1, cache: cacheRecord,
                                            to: Self.trialFolder(resultsFolder, p.trial.id))
                    } catch {
                        // The disk's fault (full, read-only), not the trial's: recorded as failed so
                        // that a rerun retries it, and counted so that the sweep exits 1.
                        result.failure = "writing the head folder failed: \(error)"
                        let folder = Self.trialFolder(resultsFolder, p.trial.id)
                        try? FitOutput.removeHeadFiles(in: folder)
                        rmdir(folder)  // only when nothing else is in it
                        unwritten += 1
                    }
                }
                let record = TrialRecord(trial: p.trial, result: result, shard: shard, group: group.id)
                try append(record)
                if let failure = result.failure {
                    failed += 1
                    log("  \(p.trial.id) \(p.trial.head): failed: \(failure)")
                } else {
                    ok += 1
                    let acc = record.metrics.valAccuracy.map { String(format: "val_acc %.4f", $0) } ?? "no val split"
                    log("  \(p.trial.id) \(p.trial.head): \(acc), \(result.trainableParameters) parameters")
                }
            }
        }
        return (ok, failed, failedPasses, unwritten)
    }
}

/// A duration as a person reads an estimate: seconds, minutes or hours, never more precise.
public func roughDuration(_ seconds: Double) -> String {
    if seconds < 90 { return String(format: "%.0f s", seconds) }
    if seconds < 5400 { return String(format: "%.0f min", seconds / 60) }
    return String(format: "%.1f h", seconds / 3600)
}
