// The results folder: one JSON-lines file per shard, one line per finished trial, appended with a
// single write and fsynced, so a killed run leaves whole lines (and at most one torn last line,
// which readers skip and the next writer cuts off before appending, so it never ends up in the
// middle of the file). The line format is the contract with `sidecar report`.
import ActivationStore
import Foundation
import SideNetworks
import TensorCore
import Training

/// One results line.
public struct TrialRecord: Codable, Sendable {
    public struct Metrics: Codable, Sendable {
        public var valAccuracy: Double?
        public var valLoss: Double?
        public var testAccuracy: Double?
        public var testMacroF1: Double?
        public var testLoss: Double?
        public var bestEpoch: Int?
        public var epochsRun: Int?

        enum CodingKeys: String, CodingKey {
            case valAccuracy = "val_accuracy", valLoss = "val_loss", testAccuracy = "test_accuracy", testMacroF1 = "test_macro_f1"
            case testLoss = "test_loss", bestEpoch = "best_epoch", epochsRun = "epochs_run"
        }
    }

    public struct Epoch: Codable, Sendable {
        public var epoch: Int
        public var trainLoss: Double?
        public var valLoss: Double?
        public var valAccuracy: Double?
        public var lr: Double
        public var examplesPerS: Double
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case epoch, lr, seconds
            case trainLoss = "train_loss", valLoss = "val_loss", valAccuracy = "val_accuracy", examplesPerS = "examples_per_s"
        }
    }

    public var trial: String
    public var status: String
    public var error: String?
    public var head: String
    public var hyperparameters: [String: HyperparameterValue]
    public var training: TrialTraining
    public var metrics: Metrics
    public var trainableParameters: Int?
    public var fractionOfBackbone: Double?
    public var fitSeconds: Double
    public var peakRSSBytes: Int
    public var host: String
    public var shard: String
    public var group: String
    public var finished: String
    public var history: [Epoch]
    /// The manifest hash of the cache the trial ran on (nil in lines written before it was kept).
    public var cacheManifestHash: String?

    enum CodingKeys: String, CodingKey {
        case trial, status, error, head, hyperparameters, training, metrics, host, shard, group, finished, history
        case trainableParameters = "trainable_parameters", fractionOfBackbone = "fraction_of_backbone", fitSeconds = "fit_seconds"
        case peakRSSBytes = "peak_rss_bytes", cacheManifestHash = "cache_manifest_hash"
    }

    /// Every key of the contract is written; `fraction_of_backbone` and `trainable_parameters` as
    /// null when unknown, `error` only on failures.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(trial, forKey: .trial)
        try c.encode(status, forKey: .status)
        try c.encodeIfPresent(error, forKey: .error)
        try c.encode(head, forKey: .head)
        try c.encode(hyperparameters, forKey: .hyperparameters)
        try c.encode(training, forKey: .training)
        try c.encode(metrics, forKey: .metrics)
        try c.encode(trainableParameters, forKey: .trainableParameters)
        try c.encode(fractionOfBackbone, forKey: .fractionOfBackbone)
        try c.encode(fitSeconds, forKey: .fitSeconds)
        try c.encode(peakRSSBytes, forKey: .peakRSSBytes)
        try c.encode(host, forKey: .host)
        try c.encode(shard, forKey: .shard)
        try c.encode(group, forKey: .group)
        try c.encode(finished, forKey: .finished)
        try c.encode(history, forKey: .history)
        try c.encodeIfPresent(cacheManifestHash, forKey: .cacheManifestHash)
    }

    /// The line for a trained (or diverged) head.
    public init(trial: Trial, result: FitResult, shard: Shard, group: String) {
        self.init(trial: trial, error: result.failure, shard: shard, group: group, fitSeconds: result.wallSeconds, peakRSS: result.peakRSSBytes)
        let finite: (Double?) -> Double? = { $0.flatMap { $0.isFinite ? $0 : nil } }
        metrics = Metrics(valAccuracy: finite(result.val?.accuracy), valLoss: finite(result.val?.loss), testAccuracy: finite(result.test?.accuracy),
                          testMacroF1: finite(result.test?.macroF1), testLoss: finite(result.test?.loss),
                          bestEpoch: result.failure == nil ? result.bestEpoch : nil, epochsRun: result.epochsRun)
        trainableParameters = result.trainableParameters
        fractionOfBackbone = finite(result.fractionOfBackbone)
        history = result.history.map {
            Epoch(epoch: $0.epoch, trainLoss: finite($0.trainLoss), valLoss: finite($0.valLoss), valAccuracy: finite($0.valAccuracy),
                  lr: Double(String(describing: $0.learningRate)) ?? Double($0.learningRate), examplesPerS: finite($0.examplesPerSecond) ?? 0,
                  seconds: $0.seconds)
        }
    }

    /// A line with no training result (failed before or while its pass ran).
    public init(trial: Trial, error: String?, shard: Shard, group: String, fitSeconds: Double, peakRSS: Int) {
        self.trial = trial.id
        status = error == nil ? "ok" : "failed"
        self.error = error
        head = trial.head
        hyperparameters = trial.hyperparameters
        training = trial.training
        metrics = Metrics()
        trainableParameters = nil
        fractionOfBackbone = nil
        self.fitSeconds = fitSeconds
        peakRSSBytes = peakRSS
        host = ProcessInfo.processInfo.hostName
        self.shard = shard.description
        self.group = group
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        finished = formatter.string(from: Date())
        history = []
    }

    public func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// Appends whole lines to one shard's file, each with one write(2) and an fsync. Every append holds
/// an exclusive flock, so a tail without its newline seen under that lock was left by a writer that
/// died mid-line: opening the file cuts it off (its trial has no line and runs again).
public final class ResultsWriter: @unchecked Sendable {
    public let path: String
    /// Bytes of a torn last line cut off when the file was opened (0 when the file ended cleanly).
    public private(set) var cutBytes = 0
    private let fd: Int32
    private let lock = NSLock()

    public init(folder: String, shard: Shard) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        path = URL(userPath: folder).appendingPathComponent(shard.fileName).path
        // O_APPEND: parallel workers of one shard append to the same file, each line at the end.
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SweepError("\(path): cannot open for appending: \(String(cString: strerror(errno)))") }
        do {
            // Without working locks (some cluster filesystems) a tail may be a live writer's, so it stays.
            try locked { if $0 { cutBytes = try cutTornTail() } }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Runs `body` holding the file's exclusive flock; `body` is told whether it holds it (false
    /// where the filesystem has no flock, e.g. Lustre mounted without -o flock).
    private func locked<R>(_ body: (Bool) throws -> R) throws -> R {
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            guard [ENOSYS, ENOLCK, EOPNOTSUPP, EINVAL].contains(errno) else {
                throw SweepError("\(path): cannot lock: \(String(cString: strerror(errno)))")
            }
            return try body(false)
        }
        defer { flock(fd, LOCK_UN) }
        return try body(true)
    }

    private func size() throws -> off_t {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SweepError("\(path): stat failed: \(String(cString: strerror(errno)))") }
        return info.st_size
    }

    /// Truncates the file after its last newline; returns how many bytes went. A last line that is
    /// a whole record but lacks its newline (the file was written by something else) is ended
    /// instead: readers already count it as finished.
    private func cutTornTail() throws -> Int {
        let end = try size()
        var position = end
        var buffer = [UInt8](repeating: 0, count: 4096)
        while position > 0 {
            let count = Int(min(off_t(buffer.count), position))
            let start = position - off_t(count)
            let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, start) }
            guard read == count else { throw SweepError("\(path): reading the last line failed: \(read < 0 ? String(cString: strerror(errno)) : "short read")") }
            if let last = buffer[0..<count].lastIndex(of: UInt8(ascii: "\n")) {
                position = start + off_t(last) + 1
                break
            }
            position = start
        }
        guard position < end else { return 0 }
        var tail = [UInt8](repeating: 0, count: Int(end - position))
        let read = tail.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, position) }
        if read == tail.count, (try? JSONDecoder().decode(TrialRecord.self, from: Data(tail))) != nil {
            guard write(fd, "\n", 1) == 1, fsync(fd) == 0 else {
                throw SweepError("\(path): ending its last line failed: \(String(cString: strerror(errno)))")
            }
            return 0
        }
        guard ftruncate(fd, position) == 0, fsync(fd) == 0 else {
            throw SweepError("\(path): cutting off a torn last line failed: \(String(cString: strerror(errno)))")
        }
        return Int(end - position)
    }

    public func append(_ record: TrialRecord) throws {
        let bytes = Array((try record.jsonLine() + "\n").utf8)
        lock.lock()
        defer { lock.unlock() }
        try locked { _ in
            let before = try size()
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == bytes.count else {
                let reason = written < 0 ? String(cString: strerror(errno)) : "short write"
                // A partial line (a full disk) is taken back so the next line starts on its own.
                _ = ftruncate(fd, before)
                throw SweepError("\(path): writing a results line failed: \(reason)")
            }
            guard fsync(fd) == 0 else { throw SweepError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
        }
    }
}

/// Held by the one sweep running a shard into a results folder, for as long as it runs. A second
/// run of the same shard (another terminal, a job requeued while the first still runs) would train
/// the same trials and append them twice; it is refused, naming the holder. Worker processes of a
/// run (--jobs) do not take it. Where the filesystem has no flock, runs go unguarded, as appends do.
public final class ShardRunLock {
    private let fd: Int32
    /// `.shards-N.lock`, held shared by every run of an N-shard sweep into the folder.
    private var countLock: Int32 = -1

    public init(folder: String, shard: Shard) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = URL(userPath: folder).appendingPathComponent("." + shard.fileName.dropLast(".jsonl".count) + ".lock").path
        fd = try Self.lockFile(path)
        let error = Self.lock(fd, LOCK_EX | LOCK_NB)
        if error != 0 {
            if [ENOSYS, ENOLCK, EOPNOTSUPP, EINVAL].contains(error) { return }
            var holder = [UInt8](repeating: 0, count: 256)
            let count = max(0, pread(fd, &holder, holder.count, 0))
            close(fd)
            guard error == EWOULDBLOCK else { throw SweepError("\(path): cannot lock: \(String(cString: strerror(error)))") }
            throw SweepError("\(folder): shard \(shard) is being run by another sweep (\(String(decoding: holder.prefix(count), as: UTF8.self))); "
                             + "wait for it to end, or stop it")
        }
        // The count first: a run refused there leaves the shard's lock naming its last holder.
        do { try holdShardCount(folder: folder, count: shard.count) } catch {
            close(fd)
            throw error
        }
        let me = Array("process \(getpid()) on \(ProcessInfo.processInfo.hostName)".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, me, me.count, 0)
    }

    /// Refuses to run beside a sweep into the same folder in another number of shards: its shard
    /// files split the trials otherwise, so both would train the same ones (each shard's own lock
    /// cannot tell). Checked and taken under a short exclusive `.sweep-start.lock`, so that two
    /// sweeps starting at once cannot both pass.
    private func holdShardCount(folder: String, count: Int) throws {
        func lockFile(_ name: String) throws -> Int32 { try Self.lockFile(URL(userPath: folder).appendingPathComponent(name).path) }
        let lock = Self.lock
        let gate = try lockFile(".sweep-start.lock")
        defer { close(gate) }
        // Without flock (some network file systems) there is nothing to check against.
        guard lock(gate, LOCK_EX) == 0 else { return }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        for name in names where name.hasPrefix(".shards-") && name.hasSuffix(".lock") && name != ".shards-\(count).lock" {
            // Read-only: flock needs no more, and another user's stale file must not stop this run.
            let other = open(URL(userPath: folder).appendingPathComponent(name).path, O_RDONLY | O_CLOEXEC)
            guard other >= 0 else { continue }
            defer { close(other) }
            if lock(other, LOCK_EX | LOCK_NB) == EWOULDBLOCK {
                let others = name.dropFirst(".shards-".count).dropLast(".lock".count)
                throw SweepError("\(folder): a sweep in \(others) shard(s) is writing results here, and one in \(count) would train "
                                 + "the same trials again: wait for it to end, or give the same shard count")
            }
        }
        countLock = try lockFile(".shards-\(count).lock")
        _ = lock(countLock, LOCK_SH)
    }

    /// `path` opened for locking, created when absent.
    private static func lockFile(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SweepError("\(path): cannot open: \(String(cString: strerror(errno)))") }
        return fd
    }

    /// flock, retried when a signal interrupts it; 0 or the errno.
    private static func lock(_ fd: Int32, _ operation: Int32) -> Int32 {
        while flock(fd, operation) != 0 {
            if errno != EINTR { return errno }
        }
        return 0
    }

    deinit {
        close(fd)
        if countLock >= 0 { close(countLock) }
    }
}

/// The lines of a results file as sweep and report both read them: numbered as an editor shows
/// them, a CR before the newline dropped, blank and white-space lines left out. `torn` marks a
/// last line with no newline after it, which a writer killed mid-line leaves.
enum ResultsLines {
    static func read(_ data: Data) -> [(number: Int, bytes: ArraySlice<UInt8>, torn: Bool)] {
        let lines = [UInt8](data).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        return lines.enumerated().compactMap { n, whole in
            let line = whole.last == 0x0D ? whole.dropLast() : whole
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return nil }
            return (n + 1, line, n == lines.count - 1)
        }
    }
}

/// What the results folder already holds: each trial's best status over every shard's file.
public struct FinishedTrials: Sendable {
    public var ok: Set<String> = []
    public var failed: Set<String> = []
    /// Warnings for torn last lines (of a killed run), which are not results.
    public var warnings: [String] = []
    /// The cache manifest hashes the lines record, each with the first "file:line" that has it.
    public var caches: [String: String] = [:]

    /// Reads every results file as `report` reads it, so that a line report refuses is refused
    /// here too: passed over, the sweep had appended after it (or retried a trial whose line said
    /// "weird") and left a folder report would not read.
    public static func read(folder: String) throws -> FinishedTrials {
        var out = FinishedTrials()
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: folder) else { return out }
        for path in ResultsReader.resultsFiles(names, in: folder) {
            guard let data = fm.contents(atPath: path) else { throw SweepError("\(path): cannot read") }
            let parsed: (records: [ReportedTrial], warnings: [String])
            do { parsed = try ResultsReader.parse(data, name: path) } catch { throw SweepError("\(error)") }
            out.warnings += parsed.warnings
            for record in parsed.records {
                if record.status == .ok { out.ok.insert(record.trial) } else { out.failed.insert(record.trial) }
                if case .object(let line) = record.raw, case .string(let hash)? = line["cache_manifest_hash"], out.caches[hash] == nil {
                    out.caches[hash] = record.source
                }
            }
        }
        out.failed.subtract(out.ok)
        return out
    }
}
