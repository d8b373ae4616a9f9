// Reliability from the command line, with the real MiniLM: damaged records are named by
// `inspect --verify` and stop `fit` (or are skipped and counted with --skip-corrupt); a truncated
// data file is an error, not a SIGBUS; the map grows when it fills; eight fits read one cache at
// once (one without the lock file) and get what one alone gets; a second extraction into a cache
// being written is refused naming the first.
import ActivationStore
import Foundation
import Testing

/// Extraction arguments for a cache of datasets/tiny small enough to copy and damage freely.
let tinyExtractArguments = ["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                            "--layers", "4-6", "--dtype", "f16", "--lst-reductions", "none", "--top-blocks", "0"]

func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
}


/// The last line of stdout as a JSON object.
func lastJSON(_ out: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data((out.split(separator: "\n").last ?? "").utf8)) as? [String: Any])
}

@Suite(.serialized) struct ReliabilityTests {
    static let tinyCache: Result<String, Error> = Result {
        let cache = temporaryPath("reliability-tiny")
        removeAtExit(cache)
        let result = try runSidecar(tinyExtractArguments + ["--out", cache])
        guard result.status == 0 else { throw CacheError("extract failed: \(result.err)") }
        return cache
    }

    static func copyOfTinyCache(_ name: String) throws -> String {
        let copy = temporaryPath(name)
        do {
            try FileManager.default.copyItem(atPath: try tinyCache.get(), toPath: copy)
        } catch {
            removeFolder(copy)
            throw error
        }
        return copy
    }

    @Test func damagedRecordsAreNamedStopTheFitOrAreSkippedAndCounted() throws {
        let cache = try Self.copyOfTinyCache("damaged")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try damageStoredRecord(cache, split: "train", index: 5) { _ in 6 }
        try damageStoredRecord(cache, split: "train", index: 22) { $0 - 1 }
        try damageStoredRecord(cache, split: "test", index: 3) { $0 / 2 }
        let inspected = try runSidecar(["inspect", cache, "--verify"])
        #expect(inspected.status == 1)
        let listed = inspected.out.split(separator: "\n").filter { $0.hasPrefix("  record ") }.map { String($0.dropFirst(2)) }
        #expect(listed.count == 3 && listed[0] == "record train:5 is damaged: header checksum mismatch"
                && listed[1] == "record train:22 is damaged: checksum mismatch in layer 6" && listed[2].hasPrefix("record test:3 is damaged: "),
                "\(inspected.out)")
        #expect(inspected.out.contains("3 damaged records or blobs:"))

        let out = temporaryPath("damaged-fit")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let stopped = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "2", "--batch-size", "8", "--out", out])
        #expect(stopped.status != 0)
        #expect(stopped.err.contains("Error: \(cache): record train:5 is damaged: header checksum mismatch; ")
                || stopped.err.contains("Error: \(cache): record train:22 is damaged: checksum mismatch in layer 6; "), "\(stopped.err)")
        #expect(stopped.err.contains("--verify` lists every damaged record, and fit --skip-corrupt leaves them out"), "\(stopped.err)")
        #expect(!FileManager.default.fileExists(atPath: out + "/result.json"))

        let skipping = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "2", "--batch-size", "8", "--skip-corrupt",
                                       "--json", "--out", out])
        #expect(skipping.status == 0, "\(skipping.err)")
        let json = try lastJSON(skipping.out)
        #expect(json["skipped_corrupt"] as? Int == 3)
        #expect((json["test"] as? [String: Any])?["examples"] as? Int == 9)
        #expect(skipping.err.contains("--skip-corrupt: skipping 3 damaged records:\n  record train:5 is damaged: header checksum mismatch\n"))
        #expect(skipping.err.contains("skipped_corrupt 3 (damaged records left out of training and evaluation)"))
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/result.json"))) as? [String: Any]
        #expect(written?["skipped_corrupt"] as? Int == 3)

        // eval and inspect --npy name the cache too (test:3's damage is in a layer the probe does
        // not read).
        let evaluated = try runSidecar(["eval", "--cache", cache, "--head", out, "--split", "train"])
        #expect(evaluated.status != 0 && evaluated.err.contains("Error: \(cache): record train:5 is damaged: "), "\(evaluated.err)")
        let npy = try runSidecar(["inspect", cache, "--example", "train:22", "--npy", out + "/x.npy"])
        #expect(npy.status != 0 && npy.err.contains("Error: \(cache): record train:22 is damaged: "), "\(npy.err)")
        // --json's digest reads every record: it had said only "record train:5 is damaged".
        let digest = try runSidecar(["inspect", cache, "--json"])
        #expect(digest.status != 0 && digest.err.contains("Error: \(cache): record train:5 is damaged: ")
                && digest.err.contains("--verify` lists every damaged record"), "\(digest.err)")
    }

    /// A reader writes LMDB's lock file too: a user who cannot write in the cache's folder (a
    /// shared read-only copy without lock.mdb) is told to read it with --no-lock, which works.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root to run as another user"))
    func aCacheThisUserCannotLockIsReadWithNoLock() throws {
        let folder = temporaryPath("no-lock-user")
        defer { removeFolder(folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let cache = folder + "/cache", binary = folder + "/sidecar"
        try FileManager.default.copyItem(atPath: try Self.tinyCache.get(), toPath: cache)
        try FileManager.default.removeItem(atPath: cache + "/lock.mdb")
        // The binary where the other user can run it; the folders readable, not writable, by it.
        try FileManager.default.copyItem(atPath: sidecarBinary().path, toPath: binary)
        for path in [folder, cache] { #expect(chmod(path, 0o755) == 0) }
        for file in ["data.mdb", "writer.lock"] where FileManager.default.fileExists(atPath: cache + "/" + file) {
            #expect(chmod(cache + "/" + file, 0o644) == 0)
        }
        func asNobody(_ arguments: [String]) throws -> (status: Int32, err: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", binary] + arguments
            let err = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = err
            try process.run()
            let data = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let refused = try asNobody(["inspect", cache])
        #expect(refused.status == 1)
        #expect(refused.err.contains("\(cache): cannot open or create its lock file lock.mdb (Permission denied); a cache in a folder "
                                     + "this user cannot write is read with --no-lock"), "\(refused.err)")
        let read = try asNobody(["inspect", cache, "--no-lock", "--verify"])
        #expect(read.status == 0, "\(read.err)")
    }

    @Test(arguments: [0.6, 0.95])
    func aTruncatedDataFileIsAnErrorNamingIt(keptFraction: Double) throws {
        let cache = try Self.copyOfTinyCache("truncated")
        defer { for path in [cache, cache + "-head"] { removeFolder(path) } }
        let file = cache + "/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let kept = Int(Double(size) * keptFraction) / 4096 * 4096
        #expect(truncate(file, off_t(kept)) == 0)
        for arguments in [["inspect", cache, "--verify"], ["inspect", cache, "--no-lock"],
                          ["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", cache + "-head"]] {
            let result = try runSidecar(arguments)
            // A signal (SIGBUS) would show as a status above 128 from Process.
            #expect(result.status == 1 || result.status == 64, "\(arguments[0]): status \(result.status)")
            #expect(result.err.contains("\(file) is truncated: it holds \(kept) bytes, but its meta page says the data reaches"),
                    "\(arguments[0]): \(result.err)")
        }
    }

    @Test func eightConcurrentFitsEqualOneAlone() throws {
        let cache = try Self.tinyCache.get()
        let common = ["fit", "--cache", cache, "--head", "losa", "--epochs", "6", "--patience", "0", "--batch-size", "8", "--seed", "7"]
        let alone = temporaryPath("fit-alone")
        let outs = (0..<8).map { _ in temporaryPath("fit-concurrent") }
        defer { for folder in outs + [alone] { try? FileManager.default.removeItem(atPath: folder) } }
        let reference = try runSidecar(common + ["--out", alone])
        #expect(reference.status == 0, "\(reference.err)")
        let processes = try outs.enumerated().map { i, out in
            let process = Process()
            process.executableURL = sidecarBinary()
            process.arguments = common + ["--out", out] + (i == 7 ? ["--no-lock"] : [])
            process.standardOutput = FileHandle.nullDevice
            let err = Pipe()
            process.standardError = err
            try process.run()
            return (process, err)
        }
        for (i, (process, err)) in processes.enumerated() {
            let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "fit \(i): \(message)")
        }
        /// What must not depend on other processes: metrics, epochs and losses (not times or memory).
        func outcome(_ folder: String) throws -> [String] {
            let result = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/result.json"))) as! [String: Any]
            let history = (result["history"] as! [[String: Any]]).map { "\($0["train_loss"]!) \($0["val_loss"] ?? "-") \($0["val_accuracy"] ?? "-")" }
            let metrics = try ["val", "test"].map {
                String(decoding: try JSONSerialization.data(withJSONObject: result[$0] as Any, options: [.sortedKeys]), as: UTF8.self)
            }
            return metrics + history + ["\(result["best_epoch"]!)"]
        }
        let expected = try outcome(alone)
        let weights = try Data(contentsOf: URL(fileURLWithPath: alone + "/head.safetensors"))
        for (i, out) in outs.enumerated() {
            #expect(try outcome(out) == expected, "fit \(i)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/head.safetensors")) == weights, "fit \(i): other weights")
        }
    }

    @Test func aSecondExtractionIntoTheSameCacheIsRefusedNamingTheFirst() throws {
        let dataset = try makeDataset(count: 600)
        let out = temporaryPath("two-writers")
        defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: dataset) }
        let arguments = ["extract", "--dataset", dataset, "--layers", "0-2", "--dtype", "f16", "--chunk-size", "16",
                         "--lst-reductions", "none", "--top-blocks", "0", "--out", out]
        let first = Process()
        first.executableURL = sidecarBinary()
        first.arguments = arguments
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() } }
        // The first holds the lock once writer.lock names it.
        let deadline = Date().addingTimeInterval(120)
        while (try? String(contentsOfFile: out + "/writer.lock", encoding: .utf8))?.isEmpty ?? true, first.isRunning, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        // Paused while the second tries, so that a fast first run cannot end (and free the cache)
        // before the second asks for the lock.
        kill(first.processIdentifier, SIGSTOP)
        try #require(first.isRunning, "the first extraction ended before a second could start")
        let second = try runSidecar(arguments)
        kill(first.processIdentifier, SIGCONT)
        #expect(second.status != 0)
        #expect(second.err.contains("another sidecar extract is writing \(out) (pid \(first.processIdentifier)); wait for it to end or use another --out folder"),
                "\(second.err)")
        // The refused one changed nothing: the first finishes a cache that verifies.
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        _ = try digests(out)
    }

    @Test func theMapGrowsWhenItFills() throws {
        let reference = try Self.tinyCache.get()
        let small = temporaryPath("small-map")
        defer { try? FileManager.default.removeItem(atPath: small) }
        var environment = ProcessInfo.processInfo.environment
        environment["SIDECAR_LMDB_INITIAL_MAP_BYTES"] = "65536"
        let result = try runSidecar(tinyExtractArguments + ["--out", small], environment: environment)
        #expect(result.status == 0, "\(result.err)")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: small + "/data.mdb")[.size] as? Int)
        #expect(size > 4 * 65536, "the cache never outgrew the first map (\(size) bytes)")
        #expect(try digests(small) == digests(reference))
    }
}
