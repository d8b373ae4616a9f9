// `sidecar extract` killed with SIGKILL at ten moments spread over the run, resumed each time, ends
// with a cache whose records equal an uninterrupted run's (per-split digests of the decoded values,
// and every record's stored bytes), and every record verifies.
import ActivationStore
import Foundation
import TensorCore
import Testing

let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A deterministic text dataset of `count` lines built from the tiny dataset's sentences.
func makeDataset(count: Int) throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("resume-data-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let lines = try String(contentsOf: repository.appendingPathComponent("datasets/tiny/train.jsonl"), encoding: .utf8)
        .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    var out = ""
    for i in 0..<count {
        let a = lines[i % lines.count], b = lines[(i * 7 + 3) % lines.count]
        let text = "\(a["text"]!) \(i % 5 == 0 ? b["text"]! : "")"
        let record: [String: Any] = ["text": text, "label": a["label"]!]
        out += String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self) + "\n"
    }
    try out.write(to: folder.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
    return folder.path
}

func digests(_ cache: String) throws -> [String: String] {
    let result = try runSidecar(["inspect", cache, "--json", "--verify"])
    #expect(result.status == 0, "inspect --verify failed: \(result.out) \(result.err)")
    let report = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as! [String: Any]
    #expect((report["damaged"] as? [Any])?.isEmpty == true)
    var out: [String: String] = [:]
    for split in report["splits"] as! [[String: Any]] { out[split["name"] as! String] = split["digest"] as? String }
    return out
}

/// Every stored record's bytes by split and index, read through the cache (which checks them).
func storedRecords(_ cache: String) throws -> [String: [Int: [UInt8]]] {
    let opened = try ActivationCache.open(path: cache)
    var out: [String: [Int: [UInt8]]] = [:]
    for split in opened.manifest.settings.splits {
        var records: [Int: [UInt8]] = [:]
        try opened.forEachRecord(split: split) { index, _, raw in
            records[index] = Array(raw)
            return true
        }
        out[split] = records
    }
    return out
}

/// The train split's examples a cache's progress record counts, or 0 while there is no cache.
func writtenExamples(_ cache: String) -> Int {
    (try? ActivationCache.open(path: cache).progress(of: "train").written) ?? 0
}

@Suite(.serialized) struct ExtractResumeTests {
    /// Ten SIGKILLs at seeded-random points spread over one extraction: each run is killed once it
    /// has written the next of ten random fractions of the examples (plus a random few
    /// milliseconds, so the kill lands anywhere in a chunk), and the next run resumes. No blobs
    /// (LST reductions, top blocks), so the runs write records alone.
    @Test func killedExtractionsResumeToIdenticalRecords() throws {
        let examples = 600
        let dataset = try makeDataset(count: examples)
        defer { try? FileManager.default.removeItem(atPath: dataset) }
        let arguments = ["extract", "--dataset", dataset, "--layers", "0-2", "--dtype", "f16", "--chunk-size", "8", "--batch-tokens", "256",
                         "--lst-reductions", "none", "--top-blocks", "0"]
        let reference = FileManager.default.temporaryDirectory.appendingPathComponent("resume-ref-\(UUID().uuidString)").path
        let resumed = FileManager.default.temporaryDirectory.appendingPathComponent("resume-kill-\(UUID().uuidString)").path
        defer { for path in [reference, resumed] { try? FileManager.default.removeItem(atPath: path) } }
        let started = Date()
        let full = try runSidecar(arguments + ["--out", reference])
        let duration = Date().timeIntervalSince(started)
        #expect(full.status == 0, "\(full.err)")
        let expected = try digests(reference)
        #expect(expected["train"] != nil)

        // The project's seeded generator: the same kill points on every machine.
        var random = SeededGenerator(seed: 20261129)
        let fractions = (0..<10).map { _ in 0.05 + 0.85 * Double(random.nextUniform()) }.sorted()
        var kills = 0
        var killedAt: [Int] = []
        for (n, fraction) in fractions.enumerated() {
            let process = Process()
            process.executableURL = sidecarBinary()
            process.arguments = arguments + ["--out", resumed]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // By the examples written, as the cache's progress record counts them: the data file
            // grows in steps (LMDB reuses freed pages first), and on a fast machine the last step
            // came with the end of the run, so the later kills had found it finished.
            let target = Int(fraction * Double(examples))
            let deadline = Date().addingTimeInterval(duration * 2 + 10)
            while process.isRunning && writtenExamples(resumed) < target && Date() < deadline { usleep(1_000) }
            usleep(UInt32(Double(random.nextUniform()) * 10_000))
            guard process.isRunning else {
                process.waitUntilExit()
                Issue.record("run \(n + 1) finished (status \(process.terminationStatus)) before its kill at \(fraction) of the examples")
                break
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            kills += 1
            killedAt.append(writtenExamples(resumed))
            // A killed cache looks complete only when it is: a kill after the last record and its
            // mark (the process still exiting; on a fast machine the random few milliseconds
            // reach that far) leaves the reference's records, and any other says what finishes it.
            let inspected = try runSidecar(["inspect", resumed, "--json"])
            if inspected.status == 0 {
                let report = try JSONSerialization.jsonObject(with: Data(inspected.out.utf8)) as! [String: Any]
                let train = (report["splits"] as! [[String: Any]])[0]
                if train["complete"] as? Bool == true {
                    #expect(try digests(resumed) == expected, "kill \(kills) left a cache marked complete that differs from the reference")
                } else {
                    let text = try runSidecar(["inspect", resumed, "--verify"])
                    #expect(text.out.contains("incomplete: train (\(train["written"] as? Int ?? -1) of ")
                            && text.out.contains("run the same sidecar extract"), "\(text.out)")
                    #expect(text.status == 1, "an incomplete cache passed --verify")
                }
            }
        }
        print("extraction took \(duration) s; killed \(kills) runs with SIGKILL at \(killedAt) of \(examples) examples written")
        #expect(kills == 10)
        let last = try runSidecar(arguments + ["--out", resumed])
        #expect(last.status == 0, "\(last.err)")
        #expect(try digests(resumed) == expected)
        // Record by record, not only the digests: the same bytes under the same keys.
        let want = try storedRecords(reference), got = try storedRecords(resumed)
        #expect(Set(got.keys) == Set(want.keys))
        for (split, records) in want {
            let other = got[split] ?? [:]
            #expect(other.count == records.count, "\(split): \(other.count) records, expected \(records.count)")
            let differing = records.keys.sorted().filter { other[$0] != records[$0] }
            #expect(differing.isEmpty, "\(split): records \(differing.prefix(10)) differ from the uninterrupted run's")
        }
    }
}

