// `sidecar extract --shard` and `sidecar merge` run as a user runs them, with the real MiniLM on
// datasets/tiny: three shards merged equal a local extraction (digests and manifest), `--shard
// auto` follows Slurm's array variables, and merge refuses mismatched, missing, duplicated and
// incomplete shards with messages naming the folders; bad --shard values are flag errors.
import Foundation
import Testing

/// What every extraction in these tests shares: chunks of 4 cut datasets/tiny (40/10/10) into
/// 10/3/3 chunks, so three shards each get a real part of every split.
// Shards and a local run put the same example in different batches, and the digests compare bits:
// the f32 path (OpenBLAS) gives a row the same bits in any batch, while oneDNN's bf16 kernels may
// pick their blocking by batch size on other CPUs.
let shardArguments = ["--dataset", repository.appendingPathComponent("datasets/tiny").path, "--layers", "0,3,6", "--chunk-size", "4", "--compute", "f32"]

func temporaryCache(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
}

/// The JSON report of `sidecar inspect --json` (with digests).
func inspectReport(_ cache: String) throws -> [String: Any] {
    let result = try runSidecar(["inspect", cache, "--json"])
    guard result.status == 0 else { throw CLIFailure("inspect \(cache) failed: \(result.err)") }
    return try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as! [String: Any]
}

struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Extracts shards `indices` of `count` with `extra` arguments into fresh folders; returns them
/// for the caller to remove (on failure, none is left).
func extractShards(_ indices: [Int], of count: Int, _ extra: [String] = []) throws -> [String] {
    var made: [String] = []
    do {
        for i in indices {
            let out = temporaryCache("shard\(i)of\(count)")
            made.append(out)
            let result = try runSidecar(["extract"] + shardArguments + extra + ["--shard", "\(i)/\(count)", "--out", out])
            guard result.status == 0 else { throw CLIFailure("extract --shard \(i)/\(count) failed: \(result.err)") }
        }
        return made
    } catch {
        made.forEach(removeFolder)
        throw error
    }
}

/// One reference extraction and its three shards, made once for the suite.
let referenceAndShards: Result<(local: String, shards: [String]), Error> = Result {
    let local = temporaryCache("shard-local")
    removeAtExit(local)
    let result = try runSidecar(["extract"] + shardArguments + ["--out", local])
    guard result.status == 0 else { throw CLIFailure("local extract failed: \(result.err)") }
    let shards = try extractShards([0, 1, 2], of: 3)
    shards.forEach(removeAtExit)
    return (local, shards)
}

@Suite(.serialized) struct ShardMergeTests {
    @Test func threeShardsMergeIntoTheLocalExtraction() throws {
        let (local, shards) = try referenceAndShards.get()
        // Each shard holds its chunk-aligned part under global indices, and says so.
        var held: [String: Int] = [:]
        for (i, shard) in shards.enumerated() {
            let report = try inspectReport(shard)
            let settings = (report["manifest"] as! [String: Any])["settings"] as! [String: Any]
            let info = try #require(settings["shard"] as? [String: Any])
            #expect(info["index"] as? Int == i && info["count"] as? Int == 3 && info["chunkSize"] as? Int == 4)
            for split in report["splits"] as! [[String: Any]] {
                let name = split["name"] as! String
                let range = (info["ranges"] as! [String: [String: Int]])[name]!
                #expect(range["start"]! % 4 == 0, "\(name) part of shard \(i) starts inside a chunk: \(range)")
                #expect(split["records"] as? Int == range["end"]! - range["start"]! && split["complete"] as? Bool == true)
                held[name, default: 0] += split["records"] as! Int
            }
            let text = try runSidecar(["inspect", shard])
            #expect(text.out.contains("shard      \(i)/3 of an extraction in chunks of 4"), "\(text.out)")
        }
        #expect(held == ["train": 40, "val": 10, "test": 10])

        let merged = temporaryCache("shard-merged")
        defer { removeFolder(merged) }
        let result = try runSidecar(["merge", shards[2], shards[0], shards[1], "--out", merged])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("merged 3 shards: train 40, val 10, test 10 into \(merged)"), "\(result.out)")
        #expect(try digests(merged) == digests(local))
        // The merged manifest is the local one: no shard, same settings, so fit and resume treat it alike.
        let localManifest = try inspectReport(local)["manifest"] as! NSDictionary
        let mergedManifest = try inspectReport(merged)["manifest"] as! NSDictionary
        #expect(mergedManifest == localManifest)
        #expect((mergedManifest["settings"] as! [String: Any])["shard"] == nil)
        // Running the same merge again finds it done and changes nothing.
        let again = try runSidecar(["merge", shards[0], shards[1], shards[2], "--out", merged])
        #expect(again.status == 0, "\(again.err)")
        #expect(try digests(merged) == digests(local))
        // Resuming the merged cache with `extract` (same settings, unsharded) finds it complete.
        let resumed = try runSidecar(["extract"] + shardArguments + ["--out", merged])
        #expect(resumed.status == 0, "\(resumed.err)")
    }

    @Test func shardAutoReadsTheSlurmArrayVariables() throws {
        let (_, shards) = try referenceAndShards.get()
        let out = temporaryCache("shard-auto")
        defer { removeFolder(out) }
        var environment = ProcessInfo.processInfo.environment
        // An array submitted as --array=1-3: task 2 is the second of three.
        environment["SLURM_ARRAY_TASK_ID"] = "2"
        environment["SLURM_ARRAY_TASK_MIN"] = "1"
        environment["SLURM_ARRAY_TASK_MAX"] = "3"
        environment["SLURM_ARRAY_TASK_COUNT"] = "3"
        let result = try runSidecar(["extract"] + shardArguments + ["--shard", "auto", "--out", out], environment: environment)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("extracted shard 1/3: train 12..<24, val 4..<8, test 4..<8"), "\(result.out)")
        #expect(try digests(out) == digests(shards[1]))
        // Without --shard, the same environment extracts everything (nothing is taken silently).
        let plain = temporaryCache("shard-plain")
        defer { removeFolder(plain) }
        let whole = try runSidecar(["extract"] + shardArguments + ["--layers", "0", "--out", plain], environment: environment)
        #expect(whole.status == 0 && whole.out.contains("extracted train 40, val 10, test 10"), "\(whole.out) \(whole.err)")
    }

    @Test func helpDescribesShardsAndMerge() throws {
        let top = try runSidecar(["--help"])
        #expect(top.out.contains("\n  merge "), "\(top.out)")
        let merge = try runSidecar(["merge", "--help"])
        #expect(merge.status == 0 && merge.out.contains("USAGE: sidecar merge [<shards> ...] --out <out>"), "\(merge.out)")
        let extract = try runSidecar(["extract", "--help"])
        #expect(extract.out.contains("--shard <shard>") && extract.out.contains("SLURM_ARRAY_TASK_ID"), "\(extract.out)")
        let noneOut = temporaryCache("merge-none")
        defer { removeFolder(noneOut) }
        let none = try runSidecar(["merge", "--out", noneOut])
        #expect(none.status != 0 && none.err.contains("give the shard caches to merge"), "\(none.err)")
    }

    @Test func badShardValuesAreFlagErrors() throws {
        let cases: [(String, String)] = [
            ("3/3", "--shard 3/3: the index must be in 0...2"),
            ("0/0", "--shard 0/0: the count \"0\" is not an integer in 1...1000000"),
            ("-1/3", "--shard -1/3: the index \"-1\" is not a non-negative integer"),
            ("a/3", "--shard a/3: the index \"a\" is not a non-negative integer"),
            ("1", "--shard 1: expected i/N (e.g. 0/4), auto or auto/N"),
            ("1/2/3", "--shard 1/2/3: expected i/N"),
            ("auto", "--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX"),
        ]
        var environment = ProcessInfo.processInfo.environment
        for name in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "JOB_COMPLETION_INDEX"] {
            environment[name] = nil
        }
        for (value, message) in cases {
            let out = temporaryCache("shard-bad")
            defer { removeFolder(out) }
            let result = try runSidecar(["extract"] + shardArguments + ["--shard=\(value)", "--out", out], environment: environment)
            #expect(result.status != 0 && result.err.contains(message), "--shard \(value): \(result.err)")
            #expect(!FileManager.default.fileExists(atPath: out), "--shard \(value) created \(out)")
        }
        // A stepped array has no task per index.
        environment["SLURM_ARRAY_TASK_ID"] = "2"
        environment["SLURM_ARRAY_TASK_COUNT"] = "3"
        environment["SLURM_ARRAY_TASK_MAX"] = "4"
        let steppedOut = temporaryCache("shard-bad")
        defer { removeFolder(steppedOut) }
        let stepped = try runSidecar(["extract"] + shardArguments + ["--shard", "auto", "--out", steppedOut], environment: environment)
        #expect(stepped.status != 0 && stepped.err.contains("the job array 0-4 has 3 tasks"), "\(stepped.err)")
    }

    @Test func aShardResumesOnlyAsTheSameShard() throws {
        let (_, shards) = try referenceAndShards.get()
        let other = try runSidecar(["extract"] + shardArguments + ["--shard", "1/3", "--out", shards[0]])
        #expect(other.status != 0 && other.err.contains("shard: 1/3 (chunks of 4) requested, 0/3 (chunks of 4) in the cache"), "\(other.err)")
        let whole = try runSidecar(["extract"] + shardArguments + ["--out", shards[0]])
        #expect(whole.status != 0 && whole.err.contains("shard: none (whole dataset) requested, 0/3 (chunks of 4) in the cache"), "\(whole.err)")
        // A shard is not a cache to train on.
        let fitOut = temporaryCache("shard-fit")
        defer { removeFolder(fitOut) }
        let fit = try runSidecar(["fit", "--cache", shards[0], "--head", "linear", "--epochs", "1", "--out", fitOut])
        #expect(fit.status != 0 && fit.err.contains("is shard 0/3 of an extraction; join all shards with sidecar merge"), "\(fit.err)")
    }

    @Test func mergeRefusesWhatIsNotOneWholeExtraction() throws {
        let (local, shards) = try referenceAndShards.get()
        func refused(_ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let out = temporaryCache("merge-refused")
            defer { removeFolder(out) }
            let result = try runSidecar(["merge"] + arguments + ["--out", out])
            #expect(result.status != 0, "merge \(arguments) succeeded", sourceLocation: sourceLocation)
            #expect(result.err.contains(message), "\(result.err)", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: out), "a refused merge created \(out)", sourceLocation: sourceLocation)
        }
        try refused([shards[0], shards[2]], "shard 1/3 missing: got 0/3 (\(shards[0])), 2/3 (\(shards[2])); merge needs all 3")
        try refused([shards[0], shards[1], shards[2], shards[1]], "\(shards[1]): named twice")
        let copy = temporaryCache("shard-copy")
        defer { removeFolder(copy) }
        try FileManager.default.copyItem(atPath: shards[1], toPath: copy)
        try refused([shards[0], shards[1], copy, shards[2]], "\(shards[1]) and \(copy) are both shard 1/3; give each shard once")
        try refused([shards[0], shards[1], shards[2], local], "\(local): not a shard (its manifest records no shard)")

        // Other settings: the two folders and every differing field are named.
        let f16 = try extractShards([1], of: 3, ["--dtype", "f16"])[0]
        defer { removeFolder(f16) }
        try refused([shards[0], f16, shards[2]], "\(f16) and \(shards[0]) are not shards of one extraction:\n  dtype: f16 in \(f16), bf16 in \(shards[0])")
        let quarters = try extractShards([1], of: 4)[0]
        defer { removeFolder(quarters) }
        try refused([shards[0], quarters, shards[2]], "shard count: 4 in \(quarters), 3 in \(shards[0])")
        let chunks8 = try extractShards([1], of: 3, ["--chunk-size", "8"])[0]
        defer { removeFolder(chunks8) }
        try refused([shards[0], chunks8, shards[2]], "chunk size: 8 in \(chunks8), 4 in \(shards[0])")
    }

    /// The train split of `cache` as `sidecar inspect --json` reports it, or nil before it can be read.
    private func trainSplit(_ cache: String) -> [String: Any]? {
        (try? inspectReport(cache)).flatMap { ($0["splits"] as? [[String: Any]])?.first }
    }

    /// A shard killed mid-extraction is refused by merge; resumed, it merges.
    @Test func anIncompleteShardIsRefusedUntilResumed() throws {
        let dataset = try makeDataset(count: 600)
        defer { removeFolder(dataset) }
        let arguments = ["extract", "--dataset", dataset, "--layers", "0-2", "--chunk-size", "16", "--batch-tokens", "256"]
        let shards = (0..<2).map { _ in temporaryCache("shard-kill") }
        defer { shards.forEach(removeFolder) }
        let first = try runSidecar(arguments + ["--shard", "0/2", "--out", shards[0]])
        #expect(first.status == 0, "\(first.err)")

        // Stop the run once its first chunks are committed, confirm from the stopped run's folder
        // that the shard is still incomplete, then kill it. A run that finished between the look
        // and the stop (a loaded machine) is retried in a fresh folder.
        var partial = false
        for _ in 0..<5 where !partial {
            try? FileManager.default.removeItem(atPath: shards[1])
            let process = Process()
            process.executableURL = sidecarBinary()
            process.arguments = arguments + ["--shard", "1/2", "--out", shards[1]]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(120)
            while process.isRunning && Date() < deadline {
                if let train = trainSplit(shards[1]), (train["written"] as? Int ?? 0) > 0, train["complete"] as? Bool == false {
                    kill(process.processIdentifier, SIGSTOP)
                    partial = trainSplit(shards[1])?["complete"] as? Bool == false
                    kill(process.processIdentifier, partial ? SIGKILL : SIGCONT)
                    break
                }
                Thread.sleep(forTimeInterval: 0.02)
            }
            process.waitUntilExit()
        }
        try #require(partial, "five shard extractions finished before they could be killed part way")

        let out = temporaryCache("merge-incomplete")
        defer { removeFolder(out) }
        let refused = try runSidecar(["merge", shards[0], shards[1], "--out", out])
        #expect(refused.status != 0, "merge of an incomplete shard succeeded")
        #expect(refused.err.contains("\(shards[1]): shard 1/2 is incomplete (train "), "\(refused.err)")
        #expect(refused.err.contains("run its sidecar extract --shard 1/2 again to finish it"), "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: out))

        let resumed = try runSidecar(arguments + ["--shard", "1/2", "--out", shards[1]])
        #expect(resumed.status == 0, "\(resumed.err)")
        let merged = try runSidecar(["merge", shards[0], shards[1], "--out", out])
        #expect(merged.status == 0, "\(merged.err)")
        let local = temporaryCache("shard-kill-local")
        defer { removeFolder(local) }
        #expect(try runSidecar(arguments + ["--out", local]).status == 0)
        #expect(try digests(out) == digests(local))
    }
}
