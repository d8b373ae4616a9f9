// `sidecar sweep` as a user runs it: the plan, --jobs, the emitted job files, and Ctrl-C followed
// by a resume.
import ActivationStore
import Foundation
import Testing

func writeSpec(_ text: String) throws -> String {
    let path = scratchPath("spec") + ".toml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// `sidecar sweep ARGUMENTS` started in the background, returned once its first pass is under way
/// (the pass's group line is printed when it starts), or after a minute.
func startedSweep(_ arguments: [String], stderr: Pipe? = nil) throws -> Process {
    let process = Process()
    process.executableURL = sidecarBinary()
    process.arguments = ["sweep"] + arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = stderr ?? FileHandle.nullDevice
    try process.run()
    let started = Date()
    while Date().timeIntervalSince(started) < 60 {
        if String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).contains("group ") { break }
    }
    return process
}

@Suite(.serialized) struct SweepCLITests {
    static let spec = """
        [base.training]
        epochs = 2
        batch_size = 16
        [[grid]]
        head = ["linear", "mlp"]
        [grid.training]
        lr = [0.001, 0.003]
        seed = [0, 1, 2]
        """

    @Test func dryRunPrintsThePlanAndTrainsNothing() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec(Self.spec)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("dry")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let r = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--dry-run"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("12 trial(s)") && r.out.contains("3 pass(es) sharing data"), "\(r.out)")
        #expect(r.out.contains("estimated time: about") && r.out.contains("rough estimate"))
        #expect(r.out.components(separatedBy: "  pass ").count - 1 == 3)
        #expect(!FileManager.default.fileExists(atPath: results + "/trials-0-of-1.jsonl"))
        // A budget no trial fits: each runs alone, which is said (it had run without a word).
        let tight = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--dry-run", "--memory-budget", "1"])
        #expect(tight.status == 0 && tight.out.contains("12 pass(es) sharing data")
                && tight.err.contains("warning: 12 pass(es) of one trial each are estimated above --memory-budget 1 (the largest, "), "\(tight.err)")
        // A bad spec is refused before the cache is touched, with the file and key named.
        let bad = try writeSpec(Self.spec.replacingOccurrences(of: "epochs = 2", with: "epochs = 0"))
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let refused = try runSidecar(["sweep", "--spec", bad, "--cache", "/nonexistent", "--results", results])
        #expect(refused.status != 0 && refused.err.contains("\(bad): [base.training] epochs: expected an integer in 1...1000000"), "\(refused.err)")
    }

    /// Results lines name the cache they ran on: a results folder of another cache is refused
    /// instead of its trials being skipped as finished.
    @Test func aResultsFolderOfAnotherCacheIsRefused() throws {
        let spec = try writeSpec("[base.training]\nepochs = 1\n[[grid]]\nhead = \"linear\"\n")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("other-cache")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let first = try runSidecar(["sweep", "--spec", spec, "--cache", try sharedCache.get(), "--results", results])
        #expect(first.status == 0, "\(first.err)")
        let line = try #require(try resultLines(results).first)
        #expect((line["cache_manifest_hash"] as? String)?.count == 16)
        let other = SyntheticCache.temporaryPath("other-cache")
        defer { try? FileManager.default.removeItem(atPath: other) }
        try SyntheticCache.make(at: other, width: 8)
        let refused = try runSidecar(["sweep", "--spec", spec, "--cache", other, "--results", results])
        #expect(refused.status != 0 && refused.err.contains("trials-0-of-1.jsonl:1: a trial that ran on another cache"), "\(refused.err)")
    }

    /// An unfinished cache is refused before anything runs, as fit refuses it: a sweep had recorded
    /// every trial as failed, and with --no-retry-failed those stayed after the cache was finished.
    @Test func anUnfinishedCacheIsRefused() throws {
        let spec = try writeSpec("[base.training]\nepochs = 1\n[[grid]]\nhead = \"linear\"\n")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let cache = SyntheticCache.temporaryPath("unfinished")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, incomplete: "val")
        let results = scratchPath("unfinished")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let refused = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(refused.status == 1 && refused.err.contains("\(cache): the val split is incomplete"), "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: results))
    }

    /// A bad shard, from the flag or the environment, is a usage error (exit 64) naming what is wrong.
    @Test func badShardsAreUsageErrors() throws {
        let spec = try writeSpec(Self.spec)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("bad-shard")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let flag = try runSidecar(["sweep", "--spec", spec, "--cache", "/nonexistent", "--results", results, "--shard", "2/2"])
        #expect(flag.status == 64 && flag.err.contains("--shard 2/2: the index must be in 0...1"), "\(flag.status) \(flag.err)")
        var environment = ProcessInfo.processInfo.environment
        environment["JOB_COMPLETION_INDEX"] = "0"
        environment["SIDECAR_SHARD_COUNT"] = "many"
        let fromEnvironment = try runSidecar(["sweep", "--spec", spec, "--cache", "/nonexistent", "--results", results],
                                             environment: environment)
        // Not the command line's fault: no usage text.
        #expect(fromEnvironment.status == 1 && fromEnvironment.err.contains("SIDECAR_SHARD_COUNT=many: not a positive integer")
                && !fromEnvironment.err.contains("Usage:"), "\(fromEnvironment.status) \(fromEnvironment.err)")
    }

    @Test func jobsRunPassesInParallelProcessesAndShardsSplitTheWork() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec(Self.spec)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("jobs")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let r = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--jobs", "2", "--shard", "0/2"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("in 2 processes, 1 thread(s) each") || r.out.contains("processes"), "\(r.out)")
        let first = try resultLines(results)
        #expect(!first.isEmpty && first.count < 12)
        #expect(first.allSatisfy { $0["shard"] as? String == "0/2" && $0["status"] as? String == "ok" })
        // The other shard, taken from a Kubernetes-style index, completes the sweep in its own file.
        var environment = ProcessInfo.processInfo.environment
        environment["JOB_COMPLETION_INDEX"] = "1"
        environment["SIDECAR_SHARD_COUNT"] = "2"
        let second = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results], environment: environment)
        #expect(second.status == 0, "\(second.err)")
        // Each pass reports its epochs as they end, with the time left at the rate measured so far.
        let epochLines = second.out.split(separator: "\n").filter { $0.contains(": epoch ") }
        #expect(epochLines.contains { $0.contains("epoch 1/2 after") && $0.contains("at most about")
                && $0.contains("left in this pass (early stopping may end it sooner)") }, "\(second.out)")
        #expect(epochLines.contains { $0.contains("epoch 2/2 after") && !$0.contains("left") }, "\(second.out)")
        #expect(FileManager.default.fileExists(atPath: results + "/trials-1-of-2.jsonl"))
        let all = try resultLines(results)
        #expect(all.count == 12 && Set(all.map { $0["trial"] as! String }).count == 12)
        // Nothing left to do in either shard.
        let rerun = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--shard", "1/2"])
        #expect(rerun.status == 0 && rerun.out.contains("nothing to do"), "\(rerun.out)")
        #expect(try resultLines(results).count == 12)
    }

    /// With patience 0 nothing stops a pass early, so its time left is no longer an upper bound.
    @Test func epochLinesWithoutEarlyStoppingGiveTheTimeLeftPlainly() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec("""
            [base.training]
            epochs = 2
            patience = 0
            [[grid]]
            head = "linear"
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("patience0")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let r = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(r.status == 0, "\(r.err)")
        let first = r.out.split(separator: "\n").first { $0.contains(": epoch 1/2 after") }
        #expect(first.map { $0.contains("; about") && $0.hasSuffix("left in this pass") } == true, "\(r.out)")
    }

    @Test func shardedRunsOpenTheCacheWithoutALockFile() throws {
        let cache = SyntheticCache.temporaryPath("nolock")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, counts: ["train": 32, "val": 8])
        let lock = cache + "/lock.mdb"
        try? FileManager.default.removeItem(atPath: lock)
        let spec = try writeSpec("[base.training]\nepochs = 1\n[[grid]]\nhead = \"linear\"\n[grid.training]\nseed = [0, 1, 2]\n")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("nolock")
        defer { try? FileManager.default.removeItem(atPath: results) }
        var environment = ProcessInfo.processInfo.environment
        environment["SLURM_ARRAY_TASK_ID"] = "1"
        environment["SLURM_ARRAY_TASK_COUNT"] = "2"
        let sharded = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results], environment: environment)
        #expect(sharded.status == 0, "\(sharded.err)")
        #expect(sharded.out.contains("shard 1/2"), "\(sharded.out)")
        #expect(FileManager.default.fileExists(atPath: results + "/trials-1-of-2.jsonl"))
        #expect(!FileManager.default.fileExists(atPath: lock), "a sharded run created the lock file")
        // An unsharded run uses LMDB's lock file as usual, unless told not to.
        _ = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--no-lock", "--dry-run"])
        #expect(!FileManager.default.fileExists(atPath: lock))
        _ = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--dry-run"])
        #expect(FileManager.default.fileExists(atPath: lock))
    }

    @Test func failedTrialsAreRetriedOnARerunUnlessToldNotTo() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec("""
            [base.training]
            epochs = 1
            optimizer = "sgd"
            clip_norm = 0
            [[grid]]
            head = "linear"
            [grid.training]
            lr = [0.01, 1e30]
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("retry")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let first = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(first.status == 0, "\(first.err)")
        #expect(first.out.contains("done: 1 ok, 1 failed") && first.out.contains("diverged"), "\(first.out)")
        let skipped = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--no-retry-failed"])
        #expect(skipped.status == 0 && skipped.out.contains("nothing to do"), "\(skipped.out)")
        let retried = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(retried.out.contains("to run: 1 trial(s) in 1 pass(es), 1 retried after failing"), "\(retried.out)")
        let lines = try resultLines(results)
        #expect(lines.count == 3 && lines.filter { $0["status"] as? String == "failed" }.count == 2)
    }

    /// A finished trial whose folder lost its weights runs again on a rerun (its line alone had it
    /// skipped, with no head left for eval); the others stay finished.
    @Test func aFinishedTrialWithoutItsWeightsRunsAgain() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec("""
            [base.training]
            epochs = 1
            [[grid]]
            head = "linear"
            [grid.training]
            lr = [0.01, 0.001]
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("lost")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let first = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(first.status == 0 && first.out.contains("done: 2 ok"), "\(first.out)\(first.err)")
        let ids = try resultLines(results).compactMap { $0["trial"] as? String }.sorted()
        let weights = results + "/trials/" + ids[0] + "/head.safetensors"
        let before = try Data(contentsOf: URL(fileURLWithPath: weights))
        try FileManager.default.removeItem(atPath: weights)
        // The report still ranks it, and says its head is gone.
        let report = try runSidecar(["report", "--results", results, "--json"])
        #expect(report.status == 0 && report.err.contains("warning: 1 finished trial(s) lack head.safetensors, result.json or config.json in \(results)/trials"),
                "\(report.err)")
        let again = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(again.status == 0 && again.err.contains("warning: 1 finished trial(s) lack head.safetensors, result.json or config.json in \(results)/trials and run again: \(ids[0])"),
                "\(again.err)")
        #expect(again.out.contains("already finished: 1; to run: 1 trial(s)"), "\(again.out)")
        // The same seed trains the same weights.
        #expect(try Data(contentsOf: URL(fileURLWithPath: weights)) == before)
        let rerun = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(rerun.out.contains("nothing to do") && !rerun.err.contains("warning"), "\(rerun.out)\(rerun.err)")
    }

    /// A pass that cannot run (here a damaged record) records its trials as failed, like a
    /// diverged one, but the sweep exits 1: a job array must see that task fail.
    @Test func aPassThatCannotRunFailsTheCommand() throws {
        let cache = scratchPath("damaged-cache")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, counts: ["train": 32, "val": 8, "test": 8])
        // Every stored copy of train:5's last bytes (its last block's payload) flipped.
        var record: [UInt8] = []
        try ActivationCache.open(path: cache).forEachRecord(split: "train") { index, _, raw in
            if index == 5 { record = Array(raw) }
            return index < 5
        }
        let file = URL(fileURLWithPath: cache + "/data.mdb")
        var data = try Data(contentsOf: file)
        var searchFrom = data.startIndex
        while let range = data.range(of: Data(record), in: searchFrom..<data.endIndex) {
            data[range.upperBound - 2] ^= 0x5A
            searchFrom = range.upperBound
        }
        try data.write(to: file)
        let spec = try writeSpec("[base.training]\nepochs = 1\n[[grid]]\nhead = \"linear\"\n[grid.training]\nlr = [0.01, 0.1]\n")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("damaged")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let run = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(run.status == 1)
        #expect(run.out.contains("done: 0 ok, 2 failed"), "\(run.out)")
        #expect(run.err.contains("1 pass(es) failed as a whole"), "\(run.err)")
        #expect(try resultLines(results).allSatisfy { ($0["error"] as? String)?.contains("pass failed: \(cache): record train:5 is damaged") == true })
    }

    @Test func emittedSlurmScriptAndKubernetesJobAreFilledIn() throws {
        let spec = try writeSpec(Self.spec)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let folder = scratchPath("emit")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let script = folder + "/sweep.sbatch"
        let r = try runSidecar(["sweep", "--spec", spec, "--cache", "/shared/cache", "--results", folder + "/results", "--emit", "slurm",
                                "--shards", "5", "--cpus", "2", "--emit-out", script])
        #expect(r.status == 0, "\(r.err)")
        let text = try String(contentsOfFile: script, encoding: .utf8)
        #expect(text.hasPrefix("#!/bin/bash\n"))
        for expected in ["#SBATCH --array=0-4\n", "#SBATCH --cpus-per-task=2\n", "#SBATCH --job-name=sidecar-sweep-", " sweep --spec \(spec) --cache /shared/cache --results \(folder)/results ",
                         "--no-lock --shard \"${SLURM_ARRAY_TASK_ID}/5\"", sidecarBinary().path,
                         // As many threads as the task's cores: where tasks are not bound to them,
                         // the machine's count (the default) oversubscribes the node.
                         " --threads 2 "] {
            #expect(text.contains(expected), "no \(expected) in\n\(text)")
        }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/bin/bash")
        check.arguments = ["-n", script]
        try check.run()
        check.waitUntilExit()
        #expect(check.terminationStatus == 0, "bash -n rejects the script")

        let k8s = try runSidecar(["sweep", "--spec", spec, "--cache", "/shared/cache", "--results", "/shared/results", "--emit", "k8s",
                                  "--shards", "3", "--image", "example.org/sidecar:1"])
        #expect(k8s.status == 0, "\(k8s.err)")
        for expected in ["kind: Job\n", "completionMode: Indexed\n", "completions: 3\n", "parallelism: 3\n", "image: \"example.org/sidecar:1\"",
                         "\"sweep\", \"--spec\", \"\(spec)\", \"--cache\", \"/shared/cache\", \"--results\", \"/shared/results\"", "\"--shard-count\", \"3\""] {
            #expect(k8s.out.contains(expected), "no \(expected) in\n\(k8s.out)")
        }
        // Spaces in the names: sbatch splits #SBATCH values at white space unless quoted, and a
        // Kubernetes name is lower-case letters, digits and inner hyphens.
        let spaced = folder + "/my sweep_.toml"
        try FileManager.default.copyItem(atPath: spec, toPath: spaced)
        let quoted = try runSidecar(["sweep", "--spec", spaced, "--cache", "/shared/cache", "--results", folder + "/res dir",
                                     "--emit", "slurm", "--shards", "2", "--emit-out", script])
        #expect(quoted.status == 0, "\(quoted.err)")
        let quotedText = try String(contentsOfFile: script, encoding: .utf8)
        for expected in ["#SBATCH --job-name=\"sidecar-sweep-my sweep_\"\n", "mkdir -p '\(folder)/res dir'\n",
                         "exec >>'\(folder)/res dir'/\"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out\" 2>&1\n"] {
            #expect(quotedText.contains(expected), "no \(expected) in\n\(quotedText)")
        }
        let named = try runSidecar(["sweep", "--spec", spaced, "--cache", "/shared/cache", "--results", "/shared/results", "--emit", "k8s"])
        #expect(named.out.contains("  name: sidecar-sweep-my-sweep\n"), "\(named.out)")
        // A line break in the spec's name would end a comment or directive line.
        let broken = folder + "/a\nmetadata: x.toml"
        try FileManager.default.copyItem(atPath: spec, toPath: broken)
        for kind in ["k8s", "slurm"] {
            let run = try runSidecar(["sweep", "--spec", broken, "--cache", "/shared/cache", "--results", "/shared/results", "--emit", kind])
            // (The spec's path itself keeps its line break, quoted, in the command.)
            #expect(run.status == 0 && run.out.contains("sidecar-sweep-a_metadata: x") && !run.out.contains("\nmetadata: x: "), "\(run.out)")
        }
        // A line break in the results path had ended the header comment: the rest ran as a command
        // of the script, and put before the #SBATCH lines, made sbatch ignore them.
        let injected = try runSidecar(["sweep", "--spec", spec, "--cache", "/shared/cache", "--results", "/shared/r\ntouch /tmp/pwned #",
                                       "--emit", "slurm", "--shards", "2"])
        #expect(injected.status == 0 && injected.out.contains("# without a lock file and appends to /shared/r\u{FFFD}touch /tmp/pwned #/trials-"),
                "\(injected.out)")
        let commands = injected.out.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(commands.first == "set -euo pipefail", "a command before the #SBATCH lines:\n\(injected.out)")
        // YAML folds a line break in a quoted scalar into a space: such characters go as escapes.
        let odd = try runSidecar(["sweep", "--spec", spec, "--cache", "/shared/cache", "--results", "/shared/a\nb\tc\u{85}\"d\\", "--emit", "k8s"])
        #expect(odd.out.contains(#""--results", "/shared/a\nb\tc\u0085\"d\\""#), "\(odd.out)")

        let bad = try runSidecar(["sweep", "--spec", spec, "--cache", "c", "--results", "r", "--emit", "pbs"])
        #expect(bad.status != 0 && bad.err.contains("--emit pbs: expected slurm or k8s"))

        // The script may not take the place of the sweep's results: it had replaced the finished
        // trials' lines, and report could not read the folder again.
        let results = folder + "/results"
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        let lines = results + "/trials-0-of-1.jsonl"
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: lines))
        for out in [lines, results + "/new.jsonl"] {
            let over = try runSidecar(["sweep", "--spec", spec, "--cache", "/shared/cache", "--results", results, "--emit", "slurm", "--emit-out", out])
            #expect(over.status != 0 && over.err.contains("would replace what the sweep wrote in \(results)"), "\(over.err)")
        }
        #expect(try String(contentsOfFile: lines, encoding: .utf8) == "{}\n")
        #expect(!FileManager.default.fileExists(atPath: results + "/new.jsonl"))

        // Nor the sweep file the job reads, nor a file in a cache's folder (its data.mdb).
        let specText = try String(contentsOfFile: spec, encoding: .utf8)
        let onSpec = try runSidecar(["sweep", "--spec", spec, "--cache", "/shared/cache", "--results", results, "--emit", "slurm", "--emit-out", spec])
        #expect(onSpec.status != 0 && onSpec.err.contains("is the sweep file --spec"), "\(onSpec.err)")
        #expect(try String(contentsOfFile: spec, encoding: .utf8) == specText)
        let cache = folder + "/cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        try Data("lmdb".utf8).write(to: URL(fileURLWithPath: cache + "/data.mdb"))
        for out in [cache + "/data.mdb", cache + "/job.sh"] {
            let inCache = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--emit", "slurm", "--emit-out", out])
            #expect(inCache.status != 0 && inCache.err.contains("\(cache) is an activation cache (it holds data.mdb)"), "\(inCache.err)")
        }
        #expect(try String(contentsOfFile: cache + "/data.mdb", encoding: .utf8) == "lmdb")

        // Flags that would change nothing are usage errors, not passed over.
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SLURM_") && $0.key != "JOB_COMPLETION_INDEX" }
        for (flags, message) in [(["--shards", "3"], "--shards needs --emit slurm|k8s"), (["--cpus", "2"], "--cpus needs --emit slurm|k8s"),
                                 (["--emit", "slurm", "--image", "x"], "--image is for --emit k8s"),
                                 (["--emit", "k8s", "--binary", "/x"], "--binary is for --emit slurm"),
                                 (["--emit", "slurm", "--jobs", "2"], "--jobs is for a sweep run here"),
                                 (["--emit", "k8s", "--shard-count", "8"], "--shard-count is for a sweep run here"),
                                 (["--emit", "slurm", "--dry-run"], "--dry-run is for a sweep run here"),
                                 (["--shard", "1/2", "--shard-count", "3"], "--shard i/N gives N itself"),
                                 (["--shard-count", "3", "--dry-run"], "--shard-count 3: no shard index in the environment")] {
            let refused = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", folder + "/unused"] + flags, environment: environment)
            #expect(refused.status == 64 && refused.err.contains(message), "\(flags): \(refused.status) \(refused.err)")
        }

        // A relative --binary is made absolute, as the other paths are: the job runs elsewhere.
        let relative = try runSidecar(["sweep", "--spec", spec, "--cache", "c", "--results", "r", "--emit", "slurm", "--binary", "./bin/sidecar"],
                                      directory: folder)
        #expect(relative.out.contains("exec \(folder)/bin/sidecar sweep"), "\(relative.out)")
    }

    /// A second run of a shard that is being run is refused, naming the process that runs it.
    @Test func aShardRunningElsewhereIsNotRunTwice() throws {
        let cache = SyntheticCache.temporaryPath("twice")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, counts: ["train": 600, "val": 60], width: 32, maxTokens: 16)
        let spec = try writeSpec("[base.training]\nepochs = 30\nbatch_size = 8\n[[grid]]\nhead = \"losa\"\n")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("twice")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let first = try startedSweep(["--spec", spec, "--cache", cache, "--results", results])
        defer {
            kill(first.processIdentifier, SIGINT)
            first.waitUntilExit()
        }
        let second = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(second.status != 0 && second.err.contains("shard 0/1 is being run by another sweep (process \(first.processIdentifier) on "),
                "\(second.err)")
        // In another number of shards, its shard files would split the same trials otherwise.
        let split = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results, "--shard", "1/2"])
        #expect(split.status != 0 && split.err.contains("a sweep in 1 shard(s) is writing results here, and one in 2 would train the same trials"),
                "\(split.err)")
        #expect(!FileManager.default.fileExists(atPath: results + "/trials-1-of-2.jsonl"))
        #expect(first.isRunning)
    }

    /// Ctrl-C, or SIGTERM from a scheduler, with the shell's status for each (it had been 130 for
    /// both), in one process or with workers (--jobs 2), whose main process says once that it
    /// stops and what was recorded (each worker had printed both lines again).
    @Test(arguments: [(SIGINT, Int32(130), "1"), (SIGTERM, Int32(143), "1"), (SIGINT, Int32(130), "2")])
    func ctrlCStopsCleanlyAndARerunResumes(_ sig: Int32, _ status: Int32, _ jobs: String) throws {
        // Enough work that the interrupt lands mid-pass: a larger cache, more epochs, and no early
        // stopping (which had ended both trials within the 0.3 s before the signal here).
        let cache = SyntheticCache.temporaryPath("sigint")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, counts: ["train": 600, "val": 60], width: 32, maxTokens: 16)
        let spec = try writeSpec("""
            [base.training]
            patience = 0
            epochs = 30
            batch_size = 8
            [[grid]]
            head = "losa"
            [grid.training]
            seed = [0, 1]
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("sigint")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let err = Pipe()
        let process = try startedSweep(["--spec", spec, "--cache", cache, "--results", results, "--jobs", jobs], stderr: err)
        Thread.sleep(forTimeInterval: 0.3)
        kill(process.processIdentifier, sig)
        let interrupted = Date()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        // After the current batch, not after the pass.
        #expect(Date().timeIntervalSince(interrupted) < 2)
        let stderr = String(decoding: errData, as: UTF8.self)
        #expect(process.terminationStatus == status, "\(stderr)")
        #expect(stderr.components(separatedBy: "stopping after the current batch").count == 2, "\(stderr)")
        #expect(stderr.components(separatedBy: "run the same command again to resume").count == 2, "\(stderr)")
        // Nothing half-written: every line present is a complete ok trial with its folder.
        let partial = FileManager.default.fileExists(atPath: results + "/trials-0-of-1.jsonl") ? try resultLines(results) : []
        #expect(partial.count < 2, "the interrupt came after the sweep finished")
        for line in partial {
            #expect(FileManager.default.fileExists(atPath: results + "/trials/\(line["trial"] as! String)/result.json"))
        }
        let resumed = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        #expect(resumed.status == 0, "\(resumed.err)")
        let lines = try resultLines(results)
        #expect(lines.count == 2 && Set(lines.map { $0["trial"] as! String }).count == 2)
        #expect(lines.allSatisfy { $0["status"] as? String == "ok" })
    }

    /// A worker stopped or killed by a signal sent to it alone: the main process says so and that
    /// a rerun resumes (it had said only "exited with 130", and nothing of resuming after a kill).
    @Test(arguments: [SIGINT, SIGKILL]) func aWorkerStoppedAloneIsNamed(_ signal: Int32) throws {
        let cache = SyntheticCache.temporaryPath("worker-signal")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, counts: ["train": 600, "val": 60], width: 32, maxTokens: 16)
        let spec = try writeSpec("[base.training]\nepochs = 30\nbatch_size = 8\n[[grid]]\nhead = \"losa\"\n[grid.training]\nseed = [0, 1]\n")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("worker-signal")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let err = Pipe()
        let process = try startedSweep(["--spec", spec, "--cache", cache, "--results", results, "--jobs", "2"], stderr: err)
        let pid = process.processIdentifier
        let children = try String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8).split(separator: " ").compactMap { Int32($0) }
        let worker = try #require(children.first, "no worker process")
        // Sent once the worker catches SIGINT: before, its default action kills it.
        let started = Date()
        func catchesInterrupt() -> Bool {
            let status = (try? String(contentsOfFile: "/proc/\(worker)/status", encoding: .utf8)) ?? ""
            let caught = status.split(separator: "\n").first { $0.hasPrefix("SigCgt:") }.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) }
            return (caught ?? 0) & (1 << UInt64(SIGINT - 1)) != 0
        }
        while !catchesInterrupt() && Date().timeIntervalSince(started) < 30 { Thread.sleep(forTimeInterval: 0.01) }
        kill(worker, signal)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1, "\(stderr)")
        let ending = signal == SIGINT ? "was stopped by SIGINT after its current batch" : "was killed by signal \(SIGKILL)"
        #expect(stderr.contains("worker \(worker) \(ending); the trials the workers finished are recorded, and the same command again "
                                + "runs the rest"), "\(stderr)")
    }
}
