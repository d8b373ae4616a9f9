// Results files for the report tests, written the way the results contract describes them. The
// realistic sweep is generated from a fixed seed: plausible accuracies, parameter counts and fit
// times for the seven heads on a MiniLM-sized backbone, a few failures, a duplicate and a torn line.
import Foundation
@testable import Sweep
import TensorCore

/// A fresh temporary folder, removed by the caller.
func temporaryFolder(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// One results line with sorted keys, as a writer would append it.
func resultLine(_ object: [String: Any]) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

/// A minimal record; `extra` overrides or adds keys.
func trialObject(_ id: String, head: String = "linear", status: String = "ok", val: Double? = 0.8, test: Double? = 0.79,
                 params: Int = 3850, seconds: Double = 12.5, extra: [String: Any] = [:]) -> [String: Any] {
    var metrics: [String: Any] = [:]
    if status == "ok" {
        if let val { metrics["val_accuracy"] = val }
        if let test { metrics["test_accuracy"] = test; metrics["test_macro_f1"] = test - 0.03 }
        metrics["best_epoch"] = 3
        metrics["epochs_run"] = 4
    }
    var object: [String: Any] = [
        "trial": id, "status": status, "head": head, "hyperparameters": ["layers": [6]],
        "training": ["epochs": 4, "lr": 0.001, "batch_size": 32, "seed": 0], "metrics": metrics,
        "trainable_parameters": params, "fraction_of_backbone": Double(params) / 22_713_216, "fit_seconds": seconds,
        "peak_rss_bytes": 412_000_000, "host": "node01", "shard": "0/1", "group": "g0", "finished": "2026-11-29T10:15:02Z", "history": [],
    ]
    if status == "failed" { object["error"] = "diverged: train loss NaN at epoch 2" }
    for (key, value) in extra { object[key] = value }
    return object
}

/// SplitMix64: the same numbers on every machine.
typealias FixtureRandom = SplitMix64

extension SplitMix64 {
    init(state: UInt64) { self.init(seed: state) }
    mutating func uniform() -> Double { unit() }
    mutating func normal() -> Double { (0..<6).map { _ in uniform() }.reduce(0, +) - 3 }
}

/// A realistic sweep over the seven heads written as three shards into `folder`: 39 distinct
/// trials (3 failed), one trial that failed in one shard and succeeded on a rerun in another, and a
/// torn last line in the last shard. Returns the distinct trial ids and the ids of failed trials.
@discardableResult
func writeRealisticSweep(to folder: URL) throws -> (ids: [String], failed: [String]) {
    var random = FixtureRandom(state: 42)
    // (head, settings to sweep, parameters for each setting, accuracy for each, seconds per epoch)
    struct Plan { var head: String; var settings: [[String: Any]]; var params: [Int]; var accuracy: [Double]; var secondsPerEpoch: Double }
    let plans = [
        Plan(head: "linear", settings: [["layers": [6]], ["layers": [5, 6]], ["layers": [4, 5, 6]]],
             params: [3_850, 7_690, 11_530], accuracy: [0.781, 0.797, 0.803], secondsPerEpoch: 1.6),
        Plan(head: "mlp", settings: [["hidden": 256, "dropout": 0.1], ["hidden": 512, "dropout": 0.1], ["hidden": 512, "dropout": 0.3]],
             params: [101_130, 202_250, 202_250], accuracy: [0.812, 0.824, 0.829], secondsPerEpoch: 2.4),
        Plan(head: "losa", settings: [["rank": 4], ["rank": 8], ["rank": 16], ["rank": 32]],
             params: [48_522, 96_906, 193_674, 387_210], accuracy: [0.842, 0.856, 0.866, 0.868], secondsPerEpoch: 7.5),
        Plan(head: "lst", settings: [["reduction": 16], ["reduction": 8], ["reduction": 4]],
             params: [312_394, 1_118_730, 4_284_426], accuracy: [0.848, 0.861, 0.872], secondsPerEpoch: 14),
        Plan(head: "unipt", settings: [["rank": 16], ["rank": 64]],
             params: [146_698, 552_202], accuracy: [0.836, 0.851], secondsPerEpoch: 9),
        Plan(head: "e3va", settings: [["rank": 8], ["rank": 32]],
             params: [61_450, 231_946], accuracy: [0.828, 0.845], secondsPerEpoch: 5),
        Plan(head: "consolidator", settings: [["groups": 4], ["groups": 16]],
             params: [886_794, 1_771_530], accuracy: [0.858, 0.867], secondsPerEpoch: 18),
    ]
    var lines: [[String]] = [[], [], []]
    var ids: [String] = []
    var failed: [String] = []
    var counter = 0
    for plan in plans {
        for (s, setting) in plan.settings.enumerated() {
            for lr in [0.001, 0.003] {
                counter += 1
                let id = String(format: "%012llx", random.next() & 0xFFFF_FFFF_FFFF)
                ids.append(id)
                let shard = counter % 3
                let epochs = 6
                let lrBonus = lr == 0.003 ? 0.004 * random.normal() : 0.0
                let val = min(0.95, plan.accuracy[s] + lrBonus + 0.003 * random.normal())
                let test = val - 0.006 + 0.004 * random.normal()
                let seconds = plan.secondsPerEpoch * Double(epochs) * (1 + 0.15 * random.uniform()) * (s == 0 ? 1 : 1.1)
                var history: [[String: Any]] = []
                for e in 1...epochs {
                    let progress = 1 - exp(-Double(e) / 1.6)
                    let v = val - (1 - progress) * 0.22 + 0.003 * random.normal()
                    let loss = 0.55 + 1.6 * exp(-Double(e) / 1.5) + 0.02 * random.normal()
                    history.append(["epoch": e, "train_loss": (loss * 1e4).rounded() / 1e4, "val_loss": ((loss + 0.1) * 1e4).rounded() / 1e4,
                                    "val_accuracy": (min(v, val) * 1e4).rounded() / 1e4, "lr": lr, "examples_per_s": 900.0, "seconds": seconds / 6])
                }
                let training: [String: Any] = ["epochs": epochs, "lr": lr, "batch_size": 32, "seed": 0, "optimizer": "adamw",
                                               "weight_decay": 0.01, "warmup": 0.06, "label_smoothing": 0, "clip_norm": 1, "patience": 4]
                var object = trialObject(id, head: plan.head, params: plan.params[s], seconds: (seconds * 10).rounded() / 10)
                object["hyperparameters"] = setting
                object["training"] = training
                object["history"] = history
                object["shard"] = "\(shard)/3"
                object["group"] = "\(plan.head.prefix(3))\(s)"
                object["metrics"] = ["val_accuracy": (val * 1e4).rounded() / 1e4, "test_accuracy": (test * 1e4).rounded() / 1e4,
                                     "test_macro_f1": ((test - 0.035) * 1e4).rounded() / 1e4, "val_loss": 0.62, "test_loss": 0.64,
                                     "best_epoch": epochs - 1, "epochs_run": epochs]
                // Three learning-rate-0.003 runs diverge or fail; one of them succeeds on a rerun.
                if lr == 0.003 && (plan.head == "lst" && s == 2 || plan.head == "consolidator" && s == 1 || plan.head == "mlp" && s == 0) {
                    var failure = object
                    failure["status"] = "failed"
                    failure["metrics"] = [String: Any]()
                    failure["history"] = Array(history.prefix(1))
                    failure["error"] = plan.head == "mlp" ? "diverged: train loss NaN at epoch 2 (lr 0.003 > 0.001 & no warmup)"
                        : "out of memory: needs 6.1 GiB for the batch, --memory-budget is 4 GiB"
                    lines[shard].append(resultLine(failure))
                    if plan.head == "mlp" {
                        // Rerun in another shard succeeded: the ok record must win.
                        lines[(shard + 1) % 3].append(resultLine(object))
                    } else {
                        failed.append(id)
                    }
                    continue
                }
                lines[shard].append(resultLine(object))
            }
        }
    }
    // A late config error: the trial never trained.
    let bad = "c0ffee000001"
    ids.append(bad)
    failed.append(bad)
    var badObject = trialObject(bad, head: "losa", status: "failed", extra: ["error": "layers [7] out of range: the cache holds layers 0-6"])
    badObject["hyperparameters"] = ["rank": 8, "layers": [7]]
    badObject["training"] = ["epochs": 6, "lr": 0.001, "batch_size": 32, "seed": 0, "optimizer": "adamw",
                             "weight_decay": 0.01, "warmup": 0.06, "label_smoothing": 0, "clip_norm": 1, "patience": 4]
    badObject.removeValue(forKey: "fit_seconds")
    lines[0].append(resultLine(badObject))
    for (i, shardLines) in lines.enumerated() {
        var text = shardLines.joined(separator: "\n") + "\n"
        if i == 2 { text += String(resultLine(trialObject("deadbeef0000")).prefix(57)) }
        try Data(text.utf8).write(to: folder.appendingPathComponent("trials-\(i)-of-3.jsonl"))
    }
    return (ids, failed)
}
