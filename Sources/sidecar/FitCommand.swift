// `sidecar fit`: train one or several side networks on a cache (stage two). The backbone is never
// loaded; everything comes from the cache.
import ActivationStore
import ArgumentParser
import Datasets
import Foundation
import SideNetworks
import Sweep
import TensorCore
import Training

struct FitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Train side networks on a cache, with no backbone in memory.",
        discussion: """
            Heads: \(HeadRegistry.kinds.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")).
            Each --set applies to the nearest --head before it. With several heads, every batch is decoded \
            once and each head steps on it; results equal training each alone with the same seed. \
            `sidecar heads` lists every head's hyperparameters. Ctrl-C (or SIGTERM) stops after the current             batch and writes nothing (exit status 130, or 143); a second one quits at once.
            """)

    @Option(help: "The cache folder written by sidecar extract.")
    var cache: String

    @Option(name: .customLong("head"), help: "A head to train (repeat for several): \(HeadRegistry.names.joined(separator: ", ")).")
    var heads: [String] = []

    @Option(name: .customLong("set"), help: "KEY=VALUE: a hyperparameter of the --head before it.")
    var settings: [String] = []

    @Option(name: .customLong("heads-file"), help: "A JSON file listing heads: [{\"head\": \"losa\", \"set\": {\"rank_tokens\": 8}}, ...].")
    var headsFile: String?

    @Option(parsing: .unconditional, help: "Epochs (the most; early stopping may end sooner).")
    var epochs = 15

    @Option(parsing: .unconditional, help: "Peak learning rate (default: each head's own).")
    var lr: Float?

    @Option(parsing: .unconditional, help: "Examples per batch.")
    var batchSize = 32

    @Option(parsing: .unconditional, help: "Seed for initialisation, shuffling and dropout.")
    var seed: UInt64 = 0

    @Option(help: "adamw or sgd.")
    var optimizer: TrainingOptions.OptimizerKind = .adamw

    @Option(parsing: .unconditional, help: "Weight decay (not on biases and norms): decoupled with AdamW; with --optimizer sgd, added to the gradient as torch's SGD does.")
    var weightDecay: Float = 0.01

    @Option(parsing: .unconditional, help: "Fraction of the steps spent in linear warmup before cosine decay.")
    var warmup: Float = 0.06

    @Option(parsing: .unconditional, help: "Label smoothing ε.")
    var labelSmoothing: Float = 0

    @Option(parsing: .unconditional, help: "Clip the global gradient norm to this (0: off).")
    var clipNorm: Float = 1

    @Option(parsing: .unconditional, help: "Stop a head after this many epochs without a better validation accuracy (an equal one with a lower validation loss counts as better; 0: never).")
    var patience = 4

    @Option(parsing: .unconditional, help: "Keep an exponential moving average of each head's weights with this decay (e.g. 0.999; as timm's model EMA), warmed up as TensorFlow's is, min(decay, (1 + n) / (10 + n)) at step n; the average is what is validated, kept as best and saved. Off unless given.")
    var emaDecay: Float?

    @Flag(help: "Decode the needed features once and keep them in memory, when they take at most three quarters of the memory available (else fit streams them and says so).")
    var inMemory = false

    @Flag(help: "Check every record's checksums first and leave damaged ones out of training and evaluation, counting them (skipped_corrupt in result.json). Without it a damaged record stops the fit, naming its key.")
    var skipCorrupt = false

    @Flag(help: "Open the cache without LMDB's lock file (only for caches no process is writing, e.g. on read-only shared storage).")
    var noLock = false

    @Option(help: "The output folder: the head's folder, or with several heads one sub-folder per head. An earlier fit's heads there are replaced once the new ones are trained; other files stay.")
    var out: String

    @Flag(help: "Print result.json's content as the last line of stdout (a JSON array with several heads).")
    var json = false

    func validate() throws {
        if heads.isEmpty && headsFile == nil { throw ValidationError("give at least one --head, or --heads-file") }
        // The bounds a sweep spec has: far past any real run, so that no step count overflows.
        if !(1...1_000_000).contains(epochs) { throw ValidationError("--epochs must be in 1...1000000, got \(epochs)") }
        if !(1...1 << 20).contains(batchSize) { throw ValidationError("--batch-size must be in 1...1048576, got \(batchSize)") }
        if let lr, !(lr > 0 && lr.isFinite) {
            // An infinite value is one past single precision's range (1e39), not a typed "inf" alone.
            throw ValidationError("--lr must be a positive number of at most \(Float.greatestFiniteMagnitude), got \(lr == .infinity ? "more" : "\(lr)")")
        }
        if !(0...1).contains(warmup) { throw ValidationError("--warmup must be a fraction in 0...1, got \(warmup)") }
        if !(0..<1).contains(labelSmoothing) { throw ValidationError("--label-smoothing must be in [0, 1), got \(labelSmoothing)") }
        if let emaDecay, !(0..<1).contains(emaDecay) { throw ValidationError("--ema-decay must be in [0, 1), got \(emaDecay)") }
        for (flag, value) in [("--weight-decay", weightDecay), ("--clip-norm", clipNorm)] where !(value >= 0 && value.isFinite) {
            throw ValidationError("\(flag) must be a finite number of at least 0, got \(value)")
        }
        if patience < 0 { throw ValidationError("--patience cannot be negative, got \(patience)") }
        // A bad --set value is a usage error like any bad flag value (exit status 64, fit's usage
        // text). A heads file's faults are the file's, and stay ordinary errors.
        do { _ = try headRequests() } catch let error as HeadError { throw ValidationError(error.description) }
    }

    func run() throws {
        // Ctrl-C or SIGTERM stops training after the current batch, so that the folders this fit
        // made are removed as a failed fit removes them: a killed fit had left them, empty.
        let stop = StopFlag()
        let sources = handleStopSignals { sig in
            if stop.isSet { Foundation.exit(128 + sig) }
            stop.set(signal: sig)
            standardError("\nsidecar fit: stopping after the current batch (again to quit now)\n")
        }
        defer { sources.forEach { $0.cancel() } }
        do {
            try fit(stop: stop)
        } catch let error as CorruptRecord {
            throw CacheError("\(cache): \(error); `sidecar inspect \(cache) --verify` lists every damaged record, "
                             + "and fit --skip-corrupt leaves them out")
        } catch is TrainingCancelled {
            standardError("sidecar fit: stopped by a signal; no head was written\n")
            throw ExitCode(128 + stop.signal)
        }
    }

    private func fit(stop: StopFlag) throws {
        let requests = try headRequests()
        let folders = requests.count == 1 ? [out] : requests.enumerated().map { i, request in
            URL(userPath: out).appendingPathComponent(String(format: "%02d-%@", i + 1, request.head)).path
        }
        // Before any training: a folder that cannot be written would otherwise lose the whole fit.
        for folder in folders { try checkWritableFolder(folder) }
        if isActivationCache(out) {
            throw CommandError("--out \(out): is an activation cache; give the head a folder of its own")
        }
        // Held until the heads are written: two fits into one folder had left one's weights beside
        // the other's result.json. Made now if missing, and removed again if the fit writes nothing.
        let outLock = try FolderLock(out, flag: "--out", command: "sidecar fit")
        // Each head's folder too: a fit aimed at one of them (M/01-linear while another fit writes
        // M) had taken only its own lock, and the two had mixed their files in it. Released before
        // --out's, so that folders made for nothing go innermost first.
        var headLocks: [FolderLock] = []
        defer { headLocks.removeAll(); withExtendedLifetime(outLock) {} }
        if folders != [out] { headLocks = try folders.map { try FolderLock($0, flag: "--out", command: "sidecar fit") } }
        let opened = try ActivationCache.open(path: cache, noLock: noLock)
        try checkAddressSpace("sidecar fit")
        let cacheRecord = FitOutput.CacheRecord(opened)
        for blob in cacheRecord.damagedBlobs { standardError("warning: \(blob.error); heads that read blob \(blob.name) cannot train\n") }
        var options = TrainingOptions()
        options.epochs = epochs
        options.batchSize = batchSize
        options.learningRate = lr
        options.seed = seed
        options.optimizer = optimizer
        options.weightDecay = weightDecay
        options.warmup = warmup
        options.labelSmoothing = labelSmoothing
        options.clipNorm = clipNorm
        options.patience = patience
        options.emaDecay = emaDecay
        options.inMemory = inMemory
        options.skipCorrupt = skipCorrupt
        let trainer = try Trainer(cache: opened, requests: requests, options: options)
        trainer.shouldStop = { stop.isSet }
        try checkAddressSpace("sidecar fit", workingSet: WorkingSet.pass(opened, batchSize: batchSize, heads: trainer.heads, training: true),
                              smaller: "a smaller --batch-size or fewer heads")
        let log: (String) -> Void = json ? { standardError($0 + "\n") } : { print($0) }
        let bar = EpochProgress()
        trainer.notices.forEach(log)
        if skipCorrupt {
            let skipped = trainer.skippedRecords
            log(skipped.isEmpty ? "--skip-corrupt: every record's checksums match"
                : "--skip-corrupt: skipping \(skipped.count) damaged records:\n" + skipped.map { "  \($0)" }.joined(separator: "\n"))
        }
        for (request, head) in zip(requests, trainer.heads) {
            log("\(request.head): \(head.parameterCount) trainable parameters, reads \(head.features.map(\.description).joined(separator: " "))")
        }
        let results = try trainer.run { event in
            switch event {
            case .batch(let epoch, let done, let total):
                bar.show(epoch: epoch, done: done, of: total)
            case .epoch(let i, let name, let r, let stopped):
                bar.clear()
                let val = r.valAccuracy.map { String(format: "  val_loss %.4f  val_acc %.4f", r.valLoss ?? 0, $0) } ?? ""
                log(String(format: "epoch %2d  %@  train_loss %.4f%@  %.0f ex/s  %.1f s", r.epoch, "\(i + 1):\(name)", r.trainLoss, val,
                           r.examplesPerSecond, r.seconds) + (stopped ? "  (early stop)" : ""))
            }
        }
        try FitOutput.invalidateEarlierOutputs(in: out)
        var written: [String] = []
        do {
            for ((result, head), folder) in zip(zip(results, trainer.heads), folders) {
                written.append(folder)
                try FitOutput.write(result, head: head, options: trainer.options, cache: cacheRecord, to: folder)
            }
        } catch {
            // A full disk at the second head had left the first with its result.json, reading as
            // finished: a fit that fails writes no head, and the locks then remove the folders it made.
            for folder in written { try? FitOutput.removeHeadFiles(in: folder) }
            throw error
        }
        // Only once the new heads are written: the earlier fit's weights stay until then.
        try FitOutput.removeStaleOutputs(in: out, keeping: folders)
        log("")
        log(ResultTable.render(results))
        let failed = zip(requests.indices, results).filter { $0.1.failure != nil }
        for (i, result) in failed {
            log("\(requests.count > 1 ? "\(i + 1):" : "")\(result.head) failed: \(result.failure!) (\(folders[i]) has its result.json, no weights)")
        }
        if skipCorrupt { log("skipped_corrupt \(trainer.skippedRecords.count) (damaged records left out of training and evaluation)") }
        if json {
            if results.count == 1 {
                print(try FitOutput.jsonLine(results[0]))
            } else {
                print("[" + (try results.map(FitOutput.jsonLine)).joined(separator: ",") + "]")
            }
        }
        if !failed.isEmpty { throw ExitCode.failure }
    }

    /// --head/--set groups in command-line order, plus --heads-file.
    func headRequests() throws -> [HeadRequest] {
        var requests: [HeadRequest] = []
        if let headsFile {
            requests += try Self.readHeadsFile(headsFile)
        }
        // ArgumentParser keeps each option's values in order but not how they interleave, so the
        // grouping comes from the raw arguments.
        var groups: [(String, [String])] = []
        var pendingValue: String? = nil
        var args = CommandLine.arguments.dropFirst().makeIterator()
        while let arg = args.next() {
            var name = arg, value: String? = nil
            if let eq = arg.firstIndex(of: "="), arg.hasPrefix("--") {
                name = String(arg[..<eq])
                value = String(arg[arg.index(after: eq)...])
            }
            guard name == "--head" || name == "--set" else { continue }
            pendingValue = value ?? args.next()
            guard let v = pendingValue else { continue }
            if name == "--head" {
                groups.append((v, []))
            } else {
                guard !groups.isEmpty else { throw ValidationError("--set \(v) comes before any --head") }
                groups[groups.count - 1].1.append(v)
            }
        }
        if groups.map(\.0) != heads || groups.flatMap(\.1) != settings {
            // Not the real command line (e.g. called from code): fall back to one head with every --set.
            groups = heads.map { ($0, heads.count == 1 ? settings : []) }
            if heads.count > 1 && !settings.isEmpty { throw ValidationError("cannot tell which --head each --set belongs to") }
        }
        for (position, (head, sets)) in groups.enumerated() {
            var values: [String: String] = [:]
            for set in sets {
                guard let eq = set.firstIndex(of: "="), eq != set.startIndex else {
                    throw ValidationError("--set \(set): expected KEY=VALUE")
                }
                let key = String(set[..<eq])
                if values[key] != nil { throw ValidationError("--set \(key) given twice for head \(head)") }
                values[key] = String(set[set.index(after: eq)...])
            }
            // With several heads, an error found against the cache says which one.
            let origin = groups.count > 1 || headsFile != nil ? "--head \(head) (head \(position + 1) of \(groups.count) given by --head)" : nil
            requests.append(HeadRequest(head: head, settings: values, origin: origin))
        }
        // Refuse a bad name, key or value before opening the cache.
        for r in requests { _ = try HeadRegistry.hyperparameters(head: r.head, settings: r.settings) }
        return requests
    }

    static func readHeadsFile(_ path: String) throws -> [HeadRequest] {
        let shape = "a JSON array of {\"head\": NAME, \"set\": {KEY: VALUE}}"
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("--heads-file \(path): cannot read the file") }
        guard let document = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            // Valid JSON but for one value (1e999, a lone surrogate): named, with its entry (from 1).
            if let (key, found) = JSONObjectKeys.unreadableValue(inDocument: Array(data)) {
                let entry = key.wholeMatch(of: /\[([0-9]+)\](.*)/).flatMap { match in Int(match.1).map { "entry \($0 + 1): \"\(match.2.drop(while: { $0 == "." }))\"" } }
                throw CommandError("--heads-file \(path): \(entry ?? "\"\(key)\"") holds \(found)")
            }
            throw CommandError("--heads-file \(path): not valid JSON; expected \(shape)")
        }
        guard case .array(let list) = document else { throw CommandError("--heads-file \(path): not a JSON array; expected \(shape)") }
        guard !list.isEmpty else { throw CommandError("--heads-file \(path): lists no heads; expected \(shape)") }
        // The decoder keeps one of a repeated key's values without a word.
        if let key = JSONObjectKeys.repeatedAnywhere(in: [UInt8](data)) {
            throw CommandError("--heads-file \(path): the key \"\(key)\" is given twice in one object")
        }
        return try list.enumerated().map { i, item in
            let entry = "--heads-file \(path): entry \(i + 1)"
            guard case .object(let fields) = item else { throw CommandError("\(entry) is not an object; expected \(shape)") }
            if let unknown = fields.keys.sorted().first(where: { !["head", "set"].contains($0) }) {
                throw CommandError("\(entry) has an unknown key \"\(unknown)\" (an entry has \"head\" and \"set\")")
            }
            guard case .string(let head) = fields["head"] else { throw CommandError("\(entry) has no \"head\" name") }
            var settings: [String: String] = [:]
            switch fields["set"] {
            case nil: break
            case .object(let values):
                let schema = (try? HeadRegistry.kind(named: head).schema) ?? []
                // In key order, so that the first fault named does not depend on a dictionary's order.
                for (key, value) in values.sorted(by: { $0.key < $1.key }) {
                    if value == .array([]) { throw CommandError("\(entry): \"\(key)\" is an empty list") }
                    // [8] would read as 8: only list-valued keys take lists.
                    if case .array = value, let declared = schema.first(where: { $0.name == key }) {
                        switch declared.kind {
                        case .ints, .layers: break
                        default: throw CommandError("\(entry): \"\(key)\" takes one value, not a list")
                        }
                    }
                    guard let text = settingText(value) else {
                        throw CommandError("\(entry): \"\(key)\" must be a string, number, true/false or a list of those")
                    }
                    settings[key] = text
                }
            default: throw CommandError("\(entry): \"set\" must be an object of KEY: VALUE")
            }
            // Checked here, so that the message names the entry (several may train one head kind).
            do { _ = try HeadRegistry.hyperparameters(head: head, settings: settings) } catch { throw CommandError("\(entry): \(error)") }
            return HeadRequest(head: head, settings: settings, origin: entry)
        }
    }

    /// A heads-file value as `--set` would give it: numbers as written (1e3 is 1000), lists
    /// comma-separated; nil for null and objects.
    static func settingText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let s): s
        case .bool(let b): b ? "true" : "false"
        case .number(let n): n.rounded() == n && abs(n) < 1e15 ? String(Int64(n)) : "\(n)"
        case .array(let items):
            items.contains { if case .array = $0 { true } else { false } } ? nil : {
                let texts = items.compactMap(settingText)
                return texts.count == items.count ? texts.joined(separator: ",") : nil
            }()
        case .null, .object: nil
        }
    }
}

extension TrainingOptions.OptimizerKind: ExpressibleByArgument {}

/// The accuracy table printed after a fit.
enum ResultTable {
    static func render(_ results: [FitResult]) -> String {
        var lines = ["head           params  fraction  best_epoch  val_acc  test_acc  test_macro_f1  seconds"]
        for r in results {
            let fraction = r.fractionOfBackbone.map { String(format: "%7.3f%%", $0 * 100) } ?? "      -"
            let val = r.val.map { String(format: "%.4f", $0.accuracy) } ?? "     -"
            let test = r.test.map { String(format: "%.4f", $0.accuracy) } ?? "     -"
            let f1 = r.test.map { String(format: "%.4f", $0.macroF1) } ?? "     -"
            // %-13@ does not pad in Foundation's String(format:), so the name is padded here.
            lines.append(r.head.padding(toLength: 13, withPad: " ", startingAt: 0)
                         + String(format: " %7d  %@  %10d  %@   %@    %@         %.1f",
                                  r.trainableParameters, fraction, r.bestEpoch, val, test, f1, r.wallSeconds))
        }
        return lines.joined(separator: "\n")
    }
}

/// The fit's progress on stderr: a bar redrawn in place at a terminal, a plain line every 10 s
/// otherwise (batch logs, Slurm).
final class EpochProgress {
    let interactive = isatty(2) == 1
    private var lastLine = ContinuousClock.now
    private var epochStart = ContinuousClock.now
    private var shownEpoch = 0
    /// Batches already done when the epoch's clock started (its first event comes after its first batch).
    private var doneAtStart = 0

    func show(epoch: Int, done: Int, of total: Int) {
        guard total > 0 else { return }
        if epoch != shownEpoch { shownEpoch = epoch; epochStart = .now; doneAtStart = done }
        let elapsed = ContinuousClock.now - epochStart
        let seconds = elapsed.inSeconds
        let timed = done - doneAtStart
        let rate = seconds > 0 ? Double(timed) / seconds : 0
        if interactive {
            let width = 30, filled = width * done / total
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            standardError(String(format: "\r\u{1B}[Kepoch %d [%@] %d/%d  %.1f batches/s", epoch, bar, done, total, rate))
        } else if timed > 0 && ContinuousClock.now - lastLine > .seconds(10) {
            lastLine = .now
            standardError(String(format: "epoch %d: batch %d/%d  %.1f batches/s\n", epoch, done, total, rate))
        }
    }

    func clear() {
        guard interactive else { return }
        standardError("\r\u{1B}[K")
    }
}
