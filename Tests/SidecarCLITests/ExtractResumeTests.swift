// `sidecar extract` killed with SIGKILL at several moments, then run again, ends with a cache whose
// decoded records (digests) equal an uninterrupted run's, and every record verifies.
import Foundation
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

@Suite(.serialized) struct ExtractResumeTests {
    @Test func killedExtractionsResumeToIdenticalRecords() throws {
        let dataset = try makeDataset(count: 1500)
        let arguments = ["extract", "--dataset", dataset, "--layers", "0-2", "--dtype", "f16", "--chunk-size", "16", "--batch-tokens", "256"]
        let reference = FileManager.default.temporaryDirectory.appendingPathComponent("resume-ref-\(UUID().uuidString)").path
        let started = Date()
        let full = try runSidecar(arguments + ["--out", reference])
        let duration = Date().timeIntervalSince(started)
        #expect(full.status == 0, "\(full.err)")
        let expected = try digests(reference)
        #expect(expected["train"] != nil)

        let resumed = FileManager.default.temporaryDirectory.appendingPathComponent("resume-kill-\(UUID().uuidString)").path
        var kills = 0
        var finishedAlone = false
        // Each run is killed a little later than the last; resumed runs make progress, so
        // eventually one finishes by itself.
        for attempt in 0..<12 where !finishedAlone {
            let process = Process()
            process.executableURL = sidecarBinary()
            process.arguments = arguments + ["--out", resumed]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            Thread.sleep(forTimeInterval: duration * (0.25 + 0.05 * Double(attempt)))
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                kills += 1
                process.waitUntilExit()
                if kills == 1 {
                    // A killed cache never looks complete.
                    let inspected = try runSidecar(["inspect", resumed, "--json"])
                    if inspected.status == 0 {
                        let report = try JSONSerialization.jsonObject(with: Data(inspected.out.utf8)) as! [String: Any]
                        let train = (report["splits"] as! [[String: Any]])[0]
                        #expect(train["complete"] as? Bool == false)
                    }
                }
            } else {
                process.waitUntilExit()
                finishedAlone = process.terminationStatus == 0
            }
        }
        print("extraction took \(duration) s; killed \(kills) runs with SIGKILL")
        #expect(kills >= 3, "the runs finished before they could be killed")
        let last = try runSidecar(arguments + ["--out", resumed])
        #expect(last.status == 0, "\(last.err)")
        #expect(try digests(resumed) == expected)
    }
}
