// The same seed gives the same head weights (head.safetensors, byte for byte) and the same metrics:
// across two `sidecar fit` runs of several heads in one pass, and across a sweep run in one process
// (`--jobs 1`) and in two worker processes (`--jobs 2`). A different seed gives other weights, so
// the comparison can tell runs apart.
import Foundation
import Sweep
import Testing

/// What a run must reproduce: the metrics, epochs and losses of result.json (not times or memory).
private func outcome(_ folder: String) throws -> String {
    let result = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/result.json"))) as! [String: Any]
    var kept: [String: Any] = [:]
    for key in ["val", "test", "best_epoch", "epochs_run", "trainable_parameters", "failure"] { kept[key] = result[key] }
    kept["history"] = (result["history"] as? [[String: Any]] ?? []).map { epoch in
        epoch.filter { ["epoch", "train_loss", "val_loss", "val_accuracy", "learning_rate", "lr"].contains($0.key) }
    }
    return String(decoding: try JSONSerialization.data(withJSONObject: kept, options: [.sortedKeys]), as: UTF8.self)
}

private func weights(_ folder: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: folder + "/head.safetensors"))
}

@Suite(.serialized) struct SeedDeterminismTests {
    @Test func twoFitsWithOneSeedWriteTheSameWeightsAndMetrics() throws {
        let cache = try sharedCache.get()
        let folders = (0..<3).map { _ in scratchPath("determinism-fit") }
        defer { for f in folders { try? FileManager.default.removeItem(atPath: f) } }
        let heads = ["linear", "mlp", "losa"]
        for (n, folder) in folders.enumerated() {
            let r = try runSidecar(["fit", "--cache", cache] + heads.flatMap { ["--head", $0] }
                                   + ["--epochs", "3", "--batch-size", "8", "--patience", "0", "--seed", n == 2 ? "4" : "3", "--out", folder])
            #expect(r.status == 0, "\(r.err)")
        }
        for (i, head) in heads.enumerated() {
            let sub = String(format: "/%02d-%@", i + 1, head)
            #expect(try weights(folders[0] + sub) == weights(folders[1] + sub), "\(head): other weights from the same seed")
            #expect(try outcome(folders[0] + sub) == outcome(folders[1] + sub), "\(head): other metrics from the same seed")
            #expect(try weights(folders[0] + sub) != weights(folders[2] + sub), "\(head): the seed changes nothing")
        }
    }

    @Test func oneProcessAndTwoWorkerProcessesTrainTheSameHeads() throws {
        let cache = try sharedCache.get()
        let spec = try writeSpec("""
            [base.training]
            epochs = 3
            batch_size = 8
            patience = 0
            [[grid]]
            head = ["linear", "mlp", "losa"]
            [grid.training]
            seed = [0, 1]
            lr = [0.001, 0.003]
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let one = scratchPath("determinism-jobs1"), two = scratchPath("determinism-jobs2")
        defer { for f in [one, two] { try? FileManager.default.removeItem(atPath: f) } }
        for (folder, jobs) in [(one, "1"), (two, "2")] {
            let r = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", folder, "--jobs", jobs])
            #expect(r.status == 0, "--jobs \(jobs): \(r.err)")
        }
        func lines(_ folder: String) throws -> [String: [String: Any]] {
            Dictionary(uniqueKeysWithValues: try resultLines(folder).map { ($0["trial"] as! String, $0) })
        }
        let a = try lines(one), b = try lines(two)
        #expect(a.count == 12 && Set(a.keys) == Set(b.keys))
        for (id, line) in a {
            let other = try #require(b[id])
            #expect(line["status"] as? String == "ok")
            let metrics = { (l: [String: Any]) in
                String(decoding: try! JSONSerialization.data(withJSONObject: l["metrics"] as Any, options: [.sortedKeys]), as: UTF8.self)
            }
            #expect(metrics(line) == metrics(other), "\(id) \(line["head"]!): other metrics with --jobs 2")
            let losses = { (l: [String: Any]) in (l["history"] as! [[String: Any]]).map { "\($0["train_loss"] ?? "-") \($0["val_loss"] ?? "-")" } }
            #expect(losses(line) == losses(other), "\(id): other losses with --jobs 2")
            #expect(try weights(SweepRunner.trialFolder(one, id)) == weights(SweepRunner.trialFolder(two, id)),
                    "\(id) \(line["head"]!): other weights with --jobs 2")
        }
    }
}
