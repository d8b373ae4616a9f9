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

/// The size of the cache's data.mdb, or 0 while it does not exist.
func dataFileSize(_ cache: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: cache + "/data.mdb"))?[.size] as? Int) ?? 0
}

@Suite(.serialized) struct ExtractResumeTests {
    /// Ten SIGKILLs at seeded-random points spread over one extraction: each run is killed once its
    /// data file has grown past the next of ten random fractions of the finished file's size (plus
    /// a random few milliseconds, so the kill lands anywhere in a chunk), and the next run resumes.
    /// No blobs (LST reductions, top blocks), so the data file grows with the records alone.
    @Test func killedExtractionsResumeToIdenticalRecords() throws {
        let dataset = try makeDataset(count: 600)
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
        let finalSize = dataFileSize(reference)

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
            let target = Int(fraction * Double(finalSize))
            let deadline = Date().addingTimeInterval(duration * 2 + 10)
            while process.isRunning && dataFileSize(resumed) < target && Date() < deadline { usleep(2_000) }
            usleep(UInt32(Double(random.nextUniform()) * 40_000))
            guard process.isRunning else {
                process.waitUntilExit()
                Issue.record("run \(n + 1) finished (status \(process.terminationStatus)) before its kill at \(fraction) of the data file")
                break
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            kills += 1
            killedAt.append(dataFileSize(resumed))
            // A killed cache never looks complete, and what it holds is a prefix of the reference.
            let inspected = try runSidecar(["inspect", resumed, "--json"])
            if inspected.status == 0 {
                let report = try JSONSerialization.jsonObject(with: Data(inspected.out.utf8)) as! [String: Any]
                let train = (report["splits"] as! [[String: Any]])[0]
                #expect(train["complete"] as? Bool == false, "kill \(kills) left a cache marked complete")
                // The table says so in words too, with what finishes it.
                let text = try runSidecar(["inspect", resumed, "--verify"])
                #expect(text.out.contains("incomplete: train (\(train["written"] as? Int ?? -1) of ")
                        && text.out.contains("run the same sidecar extract"), "\(text.out)")
                #expect(text.status == 1, "an incomplete cache passed --verify")
            }
        }
        print("extraction took \(duration) s; killed \(kills) runs with SIGKILL at data file sizes \(killedAt) of \(finalSize)")
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

