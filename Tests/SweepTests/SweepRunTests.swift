// Planning and running on real (synthetic) caches: grouping into shared passes, disjoint shards
// that cover every trial, results lines in the contract's shape, resume, and failures recorded
// while the sweep goes on.
import ActivationStore
import Foundation
import SideNetworks
import Sweep
import Testing
import Training

private let sharedCachePath = SyntheticCache.temporaryPath("shared")

/// One small cache shared by the tests of this target (built once); tests share it until the
/// process ends, so it is removed then.
let sharedCache: Result<String, Error> = Result {
    atexit { try? FileManager.default.removeItem(atPath: sharedCachePath) }
    return try SyntheticCache.make(at: sharedCachePath, counts: ["train": 64, "val": 24, "test": 24])
}

func scratchPath(_ name: String) -> String {
    NSTemporaryDirectory() + "sidecar-sweep-\(name)-\(UUID().uuidString)"
}

func resultLines(_ folder: String) throws -> [[String: Any]] {
    var out: [[String: Any]] = []
    for name in try FileManager.default.contentsOfDirectory(atPath: folder) where name.hasSuffix(".jsonl") {
        let text = try String(contentsOfFile: folder + "/" + name, encoding: .utf8)
        for line in text.split(separator: "\n") {
            out.append(try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any])
        }
    }
    return out
}

@Suite(.serialized) struct SweepRunTests {
    static let spec = """
        [base.training]
        epochs = 2
        batch_size = 16
        patience = 0
        [[grid]]
        head = ["linear", "mlp"]
        [grid.training]
        lr = [0.001, 0.003]
        seed = [0, 1]
        [[grid]]
        head = "mlp"
        [grid.set]
        hidden = [8, 16]
        [grid.training]
        batch_size = 8
        """

    func plan(_ text: String = spec, limits: PlanLimits = PlanLimits()) throws -> (SweepSpec, SweepPlan, ActivationCache) {
        let spec = try SweepSpec.parse(text, path: "test.toml")
        let cache = try ActivationCache.open(path: try sharedCache.get())
        return (spec, try SweepPlan.make(trials: spec.trials, cache: cache, limits: limits), cache)
    }

    @Test func aResumedPassIsEstimatedForTheTrialsItStillHas() throws {
        let (_, plan, _) = try plan()
        let full = try #require(plan.groups.first { $0.members.count == 4 })
        let left = try #require(plan.remaining(of: full) { $0.trial.id != full.members[0].trial.id })
        #expect(left.id == full.id && left.members.map(\.trial.id) == full.members.dropFirst().map(\.trial.id))
        #expect(left.estimatedSeconds > 0 && left.estimatedSeconds < full.estimatedSeconds)
        #expect(left.memoryBytes == full.memoryBytes - full.members[0].memoryBytes)
        #expect(plan.remaining(of: full) { _ in false } == nil)
        // Decoding is counted once per pass, so the pass split in two costs more than whole.
        let alone = try #require(plan.remaining(of: full) { $0.trial.id == full.members[0].trial.id })
        #expect(alone.estimatedSeconds + left.estimatedSeconds > full.estimatedSeconds)
    }

    @Test func trialsSharingTrainingOptionsShareAPass() throws {
        let (spec, plan, _) = try plan()
        #expect(spec.trials.count == 10)
        #expect(plan.trialCount == 10)
        // lr is per head, so only seed (2 values) and batch size split the first grid: 2 + 1 passes.
        #expect(plan.groups.count == 3)
        for g in plan.groups {
            let key = g.members.map { var t = $0.trial.training; t.lr = 0; return t }
            #expect(Set(key).count == 1, "a pass mixes training options: \(key)")
        }
        #expect(plan.groups.map(\.members.count).sorted() == [2, 4, 4])
        #expect(Set(plan.groups.flatMap(\.members).map(\.trial.id)) == Set(spec.trials.map(\.id)))
        // A head cap splits passes, deterministically.
        var limits = PlanLimits()
        limits.maxHeadsPerGroup = 3
        let (_, capped, _) = try self.plan(limits: limits)
        #expect(capped.groups.count == 5)
        #expect(capped.groups.allSatisfy { $0.members.count <= 3 })
        let (_, again, _) = try self.plan(limits: limits)
        #expect(capped.groups.map(\.id) == again.groups.map(\.id))
        // So does a memory budget: one head's estimate as the budget gives one head per pass.
        limits = PlanLimits()
        limits.memoryBudget = plan.groups.flatMap(\.members).map(\.memoryBytes).max()!
        let (_, tight, _) = try self.plan(limits: limits)
        #expect(tight.groups.count > plan.groups.count)
        #expect(tight.groups.allSatisfy { $0.members.count == 1 || $0.memoryBytes <= limits.memoryBudget })
    }

    @Test func shardsAreDisjointAndCoverEveryTrial() throws {
        let text = Self.spec + "\n[[random]]\ntrials = 12\nseed = 3\nhead = \"linear\"\n[random.training]\nseed = { int = [0, 5] }\n"
        let (spec, plan, _) = try self.plan(text)
        #expect(plan.groups.count > 4)
        for n in [1, 2, 3, 5] {
            var seen: [String] = []
            for i in 0..<n { seen += plan.groups(of: try Shard(index: i, count: n)).flatMap(\.members).map(\.trial.id) }
            #expect(seen.count == spec.trials.count, "\(n) shards")
            #expect(Set(seen) == Set(spec.trials.map(\.id)), "\(n) shards")
        }
        // Every shard computes the same partition by itself.
        let (_, replanned, _) = try self.plan(text)
        #expect(plan.groups(of: try Shard(index: 1, count: 3)).map(\.id) == replanned.groups(of: try Shard(index: 1, count: 3)).map(\.id))
    }

    /// Pass ids are hashes and may collide; the partition must not then depend on the order the
    /// passes came in (a dictionary's, which differs from process to process).
    @Test func passesWhoseIdsCollideAreSplitAlikeInAnyOrder() throws {
        let (_, plan, _) = try self.plan(Self.spec + "\n[[random]]\ntrials = 12\nseed = 3\nhead = \"linear\"\n[random.training]\nseed = { int = [0, 5] }\n")
        let colliding = plan.groups.map { var g = $0; g.id = "000000000000"; g.estimatedSeconds = 1; return g }
        let members = { (parts: [[TrialGroup]]) in parts.map { $0.map { $0.members.map(\.trial.id).sorted() } } }
        let expected = members(SweepPlan.partition(colliding, parts: 3))
        #expect(colliding.count > 3)
        for _ in 0..<5 {
            #expect(members(SweepPlan.partition(colliding.shuffled(), parts: 3)) == expected)
        }
    }

    @Test func shardsComeFromTheJobArrayEnvironment() throws {
        #expect(try Shard.fromEnvironment(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"], count: nil) == Shard(index: 2, count: 4))
        #expect(try Shard.fromEnvironment(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"], count: nil) == Shard(index: 2, count: 4))
        #expect(try Shard.fromEnvironment(["JOB_COMPLETION_INDEX": "1"], count: 3) == Shard(index: 1, count: 3))
        #expect(try Shard.fromEnvironment(["JOB_COMPLETION_INDEX": "1", "SIDECAR_SHARD_COUNT": "2"], count: nil) == Shard(index: 1, count: 2))
        #expect(try Shard.fromEnvironment([:], count: 3) == nil)
        #expect(throws: ShardError.self) { try Shard.fromEnvironment(["JOB_COMPLETION_INDEX": "1"], count: nil) }
        // Named as the environment, not as a --shard no one gave.
        #expect(throws: ShardError("the job array's environment: SLURM_ARRAY_TASK_ID=4 is outside the array 0..<4")) {
            try Shard.fromEnvironment(["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"], count: nil)
        }
        #expect(throws: ShardError.self) { try Shard.parse("3/3") }
        #expect(try Shard.parse("0/1") == .whole)
    }

    @Test func resultsLinesFollowTheContractAndAResumeRunsOnlyWhatIsMissing() throws {
        let (spec, plan, cache) = try plan()
        let results = scratchPath("resume")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let runner = SweepRunner(cache: cache, cachePath: cache.path, resultsFolder: results, shard: .whole, log: { _ in })
        let counts = try runner.run(plan.groups)
        #expect(counts.ok == 10 && counts.failed == 0)
        let lines = try resultLines(results)
        #expect(lines.count == 10)
        #expect(Set(lines.map { $0["trial"] as! String }) == Set(spec.trials.map(\.id)))
        let line = lines[0]
        for key in ["trial", "status", "head", "hyperparameters", "training", "metrics", "trainable_parameters", "fraction_of_backbone",
                    "fit_seconds", "peak_rss_bytes", "host", "shard", "group", "finished", "history"] {
            #expect(line[key] != nil, "no \(key)")
        }
        #expect(line["error"] == nil && line["status"] as? String == "ok" && line["shard"] as? String == "0/1")
        // Every training option, ema_decay only when set (so that trials without one keep the ids
        // they had before it existed).
        #expect(Set((line["training"] as! [String: Any]).keys) == Set(TrialTraining.keys).subtracting(["ema_decay"]))
        let metrics = line["metrics"] as! [String: Any]
        for key in ["val_accuracy", "val_loss", "test_accuracy", "test_macro_f1", "test_loss", "best_epoch", "epochs_run"] {
            #expect(metrics[key] is NSNumber, "metrics has no \(key)")
        }
        let history = line["history"] as! [[String: Any]]
        #expect(history.count == 2 && Set(history[0].keys) == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "examples_per_s", "seconds"])
        let hyper = line["hyperparameters"] as! [String: Any]
        #expect(hyper["layers"] as? String == "last" && hyper["pool"] as? String == "auto")
        #expect((line["finished"] as! String).hasSuffix("Z"))
        // Each trial's head folder is kept.
        for id in spec.trials.map(\.id) {
            #expect(FileManager.default.fileExists(atPath: SweepRunner.trialFolder(results, id) + "/result.json"))
        }
        // Trials differing only in lr share a pass and each trains at its own rate.
        for head in ["linear", "mlp"] {
            let peers = lines.filter {
                let t = $0["training"] as! [String: Any]
                return $0["head"] as? String == head && t["seed"] as? Int == 0 && t["batch_size"] as? Int == 16
            }
            #expect(peers.count == 2 && Set(peers.map { $0["group"] as! String }).count == 1)
            let rates = peers.map { (($0["training"] as! [String: Any])["lr"] as! Double, ($0["history"] as! [[String: Any]])[0]["lr"] as! Double) }
            for (trialRate, epochRate) in rates { #expect(abs(epochRate / trialRate - rates[0].1 / rates[0].0) < 1e-3, "\(rates)") }
        }

        // Delete one line: a resume runs that trial alone and leaves exactly one line per trial.
        let file = results + "/trials-0-of-1.jsonl"
        var text = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map(String.init)
        let removed = try JSONSerialization.jsonObject(with: Data(text.remove(at: 3).utf8)) as! [String: Any]
        try (text.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let finished = try FinishedTrials.read(folder: results)
        #expect(finished.ok.count == 9)
        let pending = plan.groups.compactMap { g -> TrialGroup? in
            var g = g
            g.members = g.members.filter { !finished.ok.contains($0.trial.id) }
            return g.members.isEmpty ? nil : g
        }
        #expect(pending.flatMap(\.members).map(\.trial.id) == [removed["trial"] as! String])
        let again = try runner.run(pending)
        #expect(again.ok == 1)
        let after = try resultLines(results)
        #expect(after.count == 10 && Set(after.map { $0["trial"] as! String }).count == 10)
        // A torn last line (a killed run) is skipped, not taken as a result.
        let handle = FileHandle(forWritingAtPath: file)!
        handle.seekToEndOfFile()
        handle.write(Data("{\"trial\": \"abc".utf8))
        try handle.close()
        let torn = try FinishedTrials.read(folder: results)
        #expect(torn.ok.count == 10 && torn.warnings.count == 1)
        // Once a newline follows it, it is damage inside the file, refused as report refuses it:
        // passed over, the sweep had appended after it, leaving a folder report would not read.
        let more = FileHandle(forWritingAtPath: file)!
        more.seekToEndOfFile()
        more.write(Data("\n".utf8))
        try more.close()
        let lineCount = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count
        func refusal() -> String {
            do { _ = try FinishedTrials.read(folder: results) } catch { return "\(error)" }
            return "accepted"
        }
        #expect(refusal().hasPrefix("\(file):\(lineCount): not a JSON object on one line"), "\(refusal())")
        #expect(refusal().hasSuffix("(fix or delete that line; only a torn last line is skipped)"), "\(refusal())")
        // A whole line report refuses is refused by the same words (an unknown status had been
        // taken for a failure and retried, and report still refused the folder).
        let original = try String(contentsOfFile: file, encoding: .utf8)
        let kept = original.split(separator: "\n").dropLast()
        let weird = kept[0].replacingOccurrences(of: #""status":"ok""#, with: #""status":"weird""#)
        #expect(weird != String(kept[0]), "\(kept[0])")
        try (([weird] + kept.dropFirst().map(String.init)).joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(refusal() == "\(file):1: status: expected \"ok\" or \"failed\", found \"weird\" (fix or delete that line; only a torn last line is skipped)")
        try original.write(toFile: file, atomically: true, encoding: .utf8)
        // Lines as report reads them: CR line ends and blank or white-space lines are no damage.
        let crlfLines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").dropLast().map { $0 + "\r" }
        try ((crlfLines.prefix(3) + ["  \t\r", ""] + crlfLines.dropFirst(3)).joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let crlf = try FinishedTrials.read(folder: results)
        #expect(crlf.ok.count == 10 && crlf.warnings.isEmpty)
        // And the same files: a hidden .jsonl file and a folder named like one are not results.
        try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: results + "/.partial.jsonl"))
        try FileManager.default.createDirectory(atPath: results + "/old.jsonl", withIntermediateDirectories: true)
        #expect(try FinishedTrials.read(folder: results).ok.count == 10)
    }

    @Test func aDivergingTrialAndALateConfigErrorAreRecordedAndTheRestTrains() throws {
        // A learning rate of 1e30 with plain SGD and no clipping overflows the logits to NaN; the
        // cache has no LST blobs, which only the cache can tell.
        let text = """
            [base.training]
            epochs = 2
            batch_size = 16
            optimizer = "sgd"
            clip_norm = 0
            [[grid]]
            head = "linear"
            [grid.training]
            lr = [0.01, 1e30]
            [[grid]]
            head = "lst"
            """
        let (spec, plan, cache) = try plan(text)
        #expect(spec.trials.count == 3)
        let late = plan.groups.flatMap(\.members).filter { $0.lateError != nil }
        #expect(late.map(\.trial.head) == ["lst"])
        let results = scratchPath("fail")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let runner = SweepRunner(cache: cache, cachePath: cache.path, resultsFolder: results, shard: .whole, log: { _ in })
        let counts = try runner.run(plan.groups)
        #expect(counts.ok == 1 && counts.failed == 2)
        let lines = try resultLines(results)
        #expect(lines.count == 3)
        let byLR = Dictionary(uniqueKeysWithValues: lines.filter { $0["head"] as? String == "linear" }.map { (($0["training"] as! [String: Any])["lr"] as! Double, $0) })
        #expect(byLR[0.01]?["status"] as? String == "ok")
        let diverged = byLR[1e30]!
        #expect(diverged["status"] as? String == "failed")
        #expect((diverged["error"] as? String ?? "").hasPrefix("diverged: train loss"), "\(diverged["error"] ?? "")")
        #expect((diverged["metrics"] as! [String: Any])["val_accuracy"] == nil)
        // The healthy head in the same pass trained to a usable model.
        #expect(((byLR[0.01]!["metrics"] as! [String: Any])["val_accuracy"] as! Double) > 0.5)
        let lst = lines.first { $0["head"] as? String == "lst" }!
        #expect(lst["status"] as? String == "failed" && (lst["error"] as? String ?? "").contains("config:"))
        #expect(lst["trainable_parameters"] is NSNull)
        // Failed trials have no head folder; they are retried unless the rerun says otherwise.
        #expect(!FileManager.default.fileExists(atPath: SweepRunner.trialFolder(results, diverged["trial"] as! String)))
        let finished = try FinishedTrials.read(folder: results)
        #expect(finished.ok.count == 1 && finished.failed.count == 2)
    }
}
