// `sidecar sweep` killed with SIGKILL mid-trial (in one process and with --jobs 2 workers), then run
// again: every trial ends with exactly one results line, none lost and none twice, and the report
// reads the file. A torn last line (a kill inside the write) is cut off before the next append.
import Foundation
import Sweep
import Testing

/// Every line of every results file, parsed; a line that does not parse fails the test.
private func trialIDs(_ folder: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
    guard FileManager.default.fileExists(atPath: folder) else { return [] }
    return try resultLines(folder).map { try #require($0["trial"] as? String, sourceLocation: sourceLocation) }
}

@Suite(.serialized) struct SweepCrashTests {
    static let spec = """
        [base.training]
        epochs = 6
        batch_size = 8
        patience = 0
        [[grid]]
        head = ["linear", "mlp"]
        [grid.training]
        seed = [0, 1, 2, 3, 4, 5]
        """

    @Test func killedSweepsResumeWithExactlyOneLinePerTrial() throws {
        let cache = SyntheticCache.temporaryPath("crash")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try SyntheticCache.make(at: cache, counts: ["train": 800, "val": 40, "test": 40], width: 32, maxTokens: 12)
        let spec = try writeSpec(Self.spec)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("crash")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let arguments = ["sweep", "--spec", spec, "--cache", cache, "--results", results]

        // How long the whole sweep takes here, so the kills land inside it.
        let reference = scratchPath("crash-ref")
        defer { try? FileManager.default.removeItem(atPath: reference) }
        let started = Date()
        let alone = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", reference])
        let duration = Date().timeIntervalSince(started)
        #expect(alone.status == 0, "\(alone.err)")
        let all = Set(try trialIDs(reference))
        #expect(all.count == 12)

        var random = FixtureRandom(state: 7)
        var kills = 0
        for attempt in 0..<12 where kills < 5 {
            let process = Process()
            process.executableURL = sidecarBinary()
            // Every other run in two worker processes: killing their parent must end them too.
            process.arguments = arguments + (attempt % 2 == 1 ? ["--jobs", "2"] : [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            // Each run resumes, so it has only the unfinished trials to do: the kill is timed
            // within what is left (timed on the whole sweep, the later runs outran their kills
            // on a loaded machine).
            let left = Double(all.count - Set(try trialIDs(results)).count) / Double(all.count)
            try process.run()
            Thread.sleep(forTimeInterval: duration * max(left, 0.1) * (0.1 + 0.3 * random.uniform()))
            guard process.isRunning else {
                process.waitUntilExit()
                break
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            kills += 1
            // Orphaned workers would go on writing lines while the next run starts the same trials.
            Thread.sleep(forTimeInterval: 0.2)
            let ids = try trialIDs(results)
            #expect(ids.count == Set(ids).count, "duplicate results lines after kill \(kills): \(ids.sorted())")
            for id in ids {
                #expect(FileManager.default.fileExists(atPath: SweepRunner.trialFolder(results, id) + "/result.json"),
                        "\(id) has a line but no result.json")
            }
        }
        #expect(kills >= 3, "the sweep finished before it could be killed (\(duration) s)")
        let last = try runSidecar(arguments)
        #expect(last.status == 0, "\(last.err)")
        let ids = try trialIDs(results)
        #expect(ids.count == 12 && Set(ids) == all, "\(ids.sorted())")
        let report = try runSidecar(["report", "--results", results, "--json"])
        #expect(report.status == 0, "\(report.err)")
        #expect(!report.err.contains("warning"), "\(report.err)")
        print("sweep took \(duration) s alone; killed \(kills) runs with SIGKILL")
    }

    @Test func aTornLastLineIsCutBeforeTheNextAppend() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec("""
            [base.training]
            epochs = 1
            [[grid]]
            head = "linear"
            [grid.training]
            seed = [0, 1, 2]
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let results = scratchPath("torn")
        defer { try? FileManager.default.removeItem(atPath: results) }
        let arguments = ["sweep", "--spec", spec, "--cache", cache, "--results", results]
        #expect(try runSidecar(arguments).status == 0)
        // A run killed inside its write: the last line loses its end (and its newline).
        let file = results + "/trials-0-of-1.jsonl"
        var data = try Data(contentsOf: URL(fileURLWithPath: file))
        let lastStart = data.dropLast().lastIndex(of: UInt8(ascii: "\n"))! + 1
        let torn = try JSONSerialization.jsonObject(with: data[lastStart...]) as! [String: Any]
        data = data.prefix(lastStart + (data.count - lastStart) / 2)
        try data.write(to: URL(fileURLWithPath: file))

        let rerun = try runSidecar(arguments)
        #expect(rerun.status == 0, "\(rerun.err)")
        #expect(rerun.out.contains("to run: 1 trial(s)"), "\(rerun.out)")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.hasSuffix("\n"))
        let ids = try trialIDs(results)
        #expect(ids.count == 3 && Set(ids).count == 3 && ids.last == torn["trial"] as? String, "\(ids)")
        let report = try runSidecar(["report", "--results", results, "--json"])
        #expect(report.status == 0 && !report.err.contains("torn"), "\(report.err)")

        // The writer itself cuts a torn tail when it opens the file.
        try (text + "{\"trial\":\"x").write(toFile: file, atomically: false, encoding: .utf8)
        let writer = try ResultsWriter(folder: results, shard: .whole)
        #expect(writer.cutBytes == 11)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == text)

        // A whole record without its newline (a file another tool rewrote) is a finished trial:
        // the writer ends its line instead of cutting it.
        try String(text.dropLast()).write(toFile: file, atomically: false, encoding: .utf8)
        let ending = try ResultsWriter(folder: results, shard: .whole)
        #expect(ending.cutBytes == 0)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == text)
    }
}
