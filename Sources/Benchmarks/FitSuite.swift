// `sidecar-bench fit`: stage two on the demo cache.
// - accuracy of every head with its defaults (one multi-head `sidecar fit` run) next to the anchors
//   measured with PyTorch on the same data and backbone;
// - seconds per epoch and peak memory of each head alone, next to the same head in PyTorch on the
//   same activations held in RAM (peers/torch_heads.py) and full fine-tuning (peers/torch_finetune.py),
//   when torch is importable (SIDECAR_TORCH_PYTHON, else python3);
// - one pass with 8 heads against one head;
// - with --compare, the same heads on an f32 and an int8 cache of the same data.
import ActivationStore
import Encoders
import Foundation
import OneDNN
import SideNetworks
import TensorCore
import Training

/// Runs a command; returns its exit status and stdout.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // stderr drains on its own thread so a chatty child cannot block on a full pipe.
    let errors = UncheckedSendableBox<Data>()
    let drain = Thread { errors.value = err.fileHandleForReading.readDataToEndOfFile() }
    drain.start()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while errors.value == nil { usleep(1000) }
    if process.terminationStatus != 0, let message = String(data: errors.value!, encoding: .utf8) {
        FileHandle.standardError.write(Data("\(URL(fileURLWithPath: executable).lastPathComponent) failed: \(message.suffix(400))\n".utf8))
    }
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

final class UncheckedSendableBox<T>: @unchecked Sendable {
    var value: T?
}

/// `sidecar fit … --json`; returns the result objects.
func fitResults(_ cache: String, _ heads: [[String]], epochs: Int, extra: [String] = []) throws -> [[String: Any]] {
    let sidecar = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("sidecar").path
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("sidecar-bench-fit-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: out) }
    let (status, stdout) = try runProcess(sidecar, ["fit", "--cache", cache] + heads.flatMap { $0 } + ["--epochs", String(epochs), "--json", "--out", out] + extra)
    guard status == 0, let last = stdout.split(separator: "\n").last else { throw HeadError("sidecar fit failed (status \(status)) for \(heads)") }
    let parsed = try JSONSerialization.jsonObject(with: Data(last.utf8))
    return (parsed as? [[String: Any]]) ?? [parsed as! [String: Any]]
}

func testAccuracy(_ r: [String: Any]) -> Double { (r["test"] as? [String: Any])?["accuracy"] as? Double ?? 0 }
/// An epoch's seconds from a result's history (1 is the first).
func epochSeconds(_ r: [String: Any], _ epoch: Int) -> Double {
    let history = r["history"] as? [[String: Any]] ?? []
    return history.count >= epoch ? history[epoch - 1]["seconds"] as? Double ?? 0 : 0
}
/// Timed heads run two epochs and the second counts: a process's first epoch also maps the
/// cache's pages into it (0.2 s of a linear probe's 0.6 here), once per run, as the PyTorch peers'
/// untimed first step and loading are once per run.
let timedEpochs = 2
func warmEpochSeconds(_ r: [String: Any]) -> Double { epochSeconds(r, timedEpochs) }

let defaultHeads: [[String]] = HeadRegistry.names.map { ["--head", $0] } + [["--head", "linear", "--set", "layers=all"]]
func label(_ head: [String]) -> String { head.count > 2 ? "\(head[1]) (\(head[3]))" : head[1] }

func benchmarkFit(cachePath: String, epochs: Int, dataset: String?, skipAccuracy: Bool, compare: (f32: String, int8: String)?) throws {
    let cache = try ActivationCache.open(path: cachePath)
    let trainCount = cache.manifest.settings.splitCounts["train"] ?? 0
    let named = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil ? "" : ", named by OPENBLAS_CORETYPE"
    print("stage two on \(cachePath) (\(trainCount) training examples), \(ProcessInfo.processInfo.activeProcessorCount) threads, "
          + "OpenBLAS \(BLAS.coreName) kernels\(named)\n")

    // 1. Accuracy, all heads in one pass (results equal separate runs; see the tests).
    let anchors = [("linear probe, last layer", 0.792), ("linear probe, all layers", 0.841), ("LoRA r=8", 0.853), ("full fine-tuning", 0.880)]
    if !skipAccuracy {
        print("test accuracy with each head's defaults, up to \(epochs) epochs with early stopping (patience 4)")
        let all = try fitResults(cachePath, defaultHeads, epochs: epochs)
        print("head                   trainable   of backbone   best epoch   test acc   macro-F1")
        for (head, r) in zip(defaultHeads, all) {
            let fraction = (r["fraction_of_backbone"] as? Double ?? 0) * 100
            let f1 = (r["test"] as? [String: Any])?["macro_f1"] as? Double ?? 0
            print(label(head).padding(toLength: 22, withPad: " ", startingAt: 0)
                  + String(format: "%10d %12.2f%% %12d %10.4f %10.4f", r["trainable_parameters"] as? Int ?? 0, fraction, r["best_epoch"] as? Int ?? 0,
                           testAccuracy(r), f1))
        }
        print("anchors (PyTorch, same data and backbone): " + anchors.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
    }

    // 2. Each head alone for two epochs, the second timed: time and memory. The cache is read once
    // first, so the first head does not pay alone for disk reads (a bench that ran before may have
    // evicted it).
    readThrough(cachePath + "/data.mdb")
    print("\neach head alone, streamed from the cache (decoding included): the second epoch of a run, the first beside it")
    print("head                   s/epoch   examples/s   first epoch s   peak RSS MB   peak anon MB")
    var ours: [String: (seconds: Double, anonymous: Int)] = [:]
    for head in defaultHeads {
        let r = try fitResults(cachePath, [head], epochs: timedEpochs)[0]
        let seconds = warmEpochSeconds(r)
        ours[label(head)] = (seconds, r["peak_anonymous_bytes"] as? Int ?? 0)
        print(label(head).padding(toLength: 22, withPad: " ", startingAt: 0)
              + String(format: "%8.2f %12.0f %15.2f %13d %14d", seconds, Double(trainCount) / seconds, epochSeconds(r, 1),
                       (r["peak_rss_bytes"] as? Int ?? 0) >> 20, (r["peak_anonymous_bytes"] as? Int ?? 0) >> 20))
    }

    // 3. K heads in one pass.
    let losa = ["--head", "losa"]
    let eightLoSA = (0..<8).map { i in ["--head", "losa", "--set", "rank_channels=\(16 + 4 * i)"] }
    // The probes read the same features and differ in a setting, as a sweep's would.
    let eightProbes = (0..<8).map { i in ["--head", "linear", "--set", "layers=all", "--set", "dropout=\(Double(i) / 20)"] }
    if !skipAccuracy {
        let oneLoSA = warmEpochSeconds(try fitResults(cachePath, [losa], epochs: timedEpochs)[0])
        let manyLoSA = warmEpochSeconds(try fitResults(cachePath, eightLoSA, epochs: timedEpochs)[0])
        let oneProbe = warmEpochSeconds(try fitResults(cachePath, [["--head", "linear", "--set", "layers=all"]], epochs: timedEpochs)[0])
        let manyProbes = warmEpochSeconds(try fitResults(cachePath, eightProbes, epochs: timedEpochs)[0])
        print(String(format: "\n8 heads in one pass vs 1: LoSA %.1f s vs %.1f s (%.2f×), linear probes %.1f s vs %.1f s (%.2f×)",
                     manyLoSA, oneLoSA, manyLoSA / oneLoSA, manyProbes, oneProbe, manyProbes / oneProbe))
    }

    // 4. PyTorch peers.
    try comparePeers(cache: cache, dataset: dataset ?? URL(fileURLWithPath: cachePath).deletingLastPathComponent().path,
                     ours: ours, trainCount: trainCount)

    // 5. int8 against f32.
    if let (f32, int8) = compare {
        let heads = [["--head", "linear", "--set", "layers=all"], ["--head", "losa"]]
        let a = try fitResults(f32, heads, epochs: epochs), b = try fitResults(int8, heads, epochs: epochs)
        print("\nsame data, f32 cache vs int8 cache (same seed)")
        for (head, (x, y)) in zip(heads, zip(a, b)) {
            print(label(head).padding(toLength: 22, withPad: " ", startingAt: 0)
                  + String(format: "f32 %.4f   int8 %.4f   difference %+.2f points", testAccuracy(x), testAccuracy(y), 100 * (testAccuracy(y) - testAccuracy(x))))
        }
    }
}

/// Reads a file to its end, leaving its pages in the page cache.
func readThrough(_ path: String) {
    guard let file = FileHandle(forReadingAtPath: path) else { return }
    defer { try? file.close() }
    while let chunk = try? file.read(upToCount: 64 << 20), !chunk.isEmpty {}
}

/// Exports the first examples' activations for the PyTorch peer and runs it per head, and the
/// full fine-tuning peer.
func comparePeers(cache: ActivationCache, dataset data: String, ours: [String: (seconds: Double, anonymous: Int)], trainCount: Int) throws {
    let python = ProcessInfo.processInfo.environment["SIDECAR_TORCH_PYTHON"] ?? "/usr/bin/python3"
    guard (try? runProcess(python, ["-c", "import torch, transformers"]))?.0 == 0 else {
        print("\nPyTorch peers: not run (torch and transformers are not importable by \(python); set SIDECAR_TORCH_PYTHON)")
        return
    }
    let peers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("peers")
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sidecar-bench-peer-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: folder) }
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let settings = cache.manifest.settings
    let streams = settings.streams ?? []
    var features = settings.layers.map { Feature.hidden($0) }
    for l in settings.layers where l > 0 {
        if streams.contains("attn") { features.append(.attention(l)) }
        if streams.contains("mlp") { features.append(.mlp(l)) }
    }
    let examples = min(1000, trainCount)
    let dataset = try CacheDataset(cache: cache, split: "train", features: features)
    let batch = try dataset.batch(Array(0..<examples), decoder: try cache.makeDecoder())
    let width = settings.backbone.hiddenSize, tokens = min(batch.segments.lengths.max() ?? 1, 64)
    var mask = [Float](repeating: 0, count: examples * tokens)
    for b in 0..<examples { for p in 0..<min(batch.segments.range(b).count, tokens) { mask[b * tokens + p] = 1 } }
    for feature in features {
        let name: String
        switch feature {
        case .hidden(let l): name = "z\(l)"
        case .attention(let l): name = "attn\(l)"
        case .mlp(let l): name = "mlp\(l)"
        }
        let source = batch.tensor(feature).scalars
        var padded = [Float](repeating: 0, count: examples * tokens * width)
        for b in 0..<examples {
            for (p, row) in batch.segments.range(b).prefix(tokens).enumerated() {
                for j in 0..<width { padded[(b * tokens + p) * width + j] = source[row * width + j] }
            }
        }
        try NumpyFile.write(padded, shape: [examples, tokens, width], to: folder.appendingPathComponent(name + ".npy").path)
    }
    // mask and labels as the peer reads them (it converts dtypes on load).
    try NumpyFile.write(mask, shape: [examples, tokens], to: folder.appendingPathComponent("mask.npy").path)
    try NumpyFile.write(batch.labels.map(Float.init), shape: [examples], to: folder.appendingPathComponent("labels.npy").path)
    let meta: [String: Any] = ["layers": settings.layers, "width": width, "classes": settings.labels.count, "max_tokens": tokens, "streams": streams]
    try JSONSerialization.data(withJSONObject: meta).write(to: folder.appendingPathComponent("meta.json"))

    let threads = String(ProcessInfo.processInfo.activeProcessorCount)
    // Passive waiting keeps PyTorch's spinning threads from collapsing on a shared machine.
    let environment = ["OMP_WAIT_POLICY": "PASSIVE"]
    print("\nthe same heads in PyTorch on \(examples) examples' activations held in RAM (padded to \(tokens) tokens), \(threads) threads")
    print("head                   PyTorch ex/s   Sidecar ex/s   Sidecar / PyTorch   PyTorch peak RSS MB")
    // On a bf16 cache the Swift consolidator's frozen products run in bf16; its peer then runs both
    // ways and the faster counts (autocast's casts can cost PyTorch more than bf16 saves).
    let frozenBF16 = try ComputePath.recorded(settings.compute) == .bf16 && OneDNN.hasBF16Instructions
    for head in HeadRegistry.names where streams.contains("attn") || head != "e3va" {
        var runs: [[String: Any]] = []
        for variant in head == "consolidator" && frozenBF16 ? [[], ["--frozen-bf16"]] : [[]] {
            let (status, out) = try runProcess(python, [peers.appendingPathComponent("torch_heads.py").path, "--data", folder.path, "--head", head,
                                                        "--threads", threads, "--epochs", "1"] + variant, environment: environment)
            if status == 0, let line = out.split(separator: "\n").last,
               let r = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], r["examples_per_s"] is Double {
                runs.append(r)
            }
        }
        if runs.count == 2 { print("  (\(head) peer: \(runs[0]["examples_per_s"]!) ex/s in f32, \(runs[1]["examples_per_s"]!) with bf16 frozen products)") }
        guard let r = runs.max(by: { ($0["examples_per_s"] as! Double) < ($1["examples_per_s"] as! Double) }),
              let rate = r["examples_per_s"] as? Double, let mine = ours[head] else { print("\(head): peer failed"); continue }
        let ourRate = Double(trainCount) / mine.seconds
        print(head.padding(toLength: 22, withPad: " ", startingAt: 0)
              + String(format: "%13.0f %14.0f %18.2f× %20d", rate, ourRate, ourRate / rate, (r["peak_rss_bytes"] as? Int ?? 0) >> 20))
    }
    let model = try BackboneFolder.resolve("minilm").path
    let (status, out) = try runProcess(python, [peers.appendingPathComponent("torch_finetune.py").path, "--data", data, "--model", model,
                                                "--threads", threads], environment: environment)
    if status == 0, let line = out.split(separator: "\n").last,
       let r = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
       let seconds = r["seconds_per_epoch"] as? Double, let rss = r["peak_rss_bytes"] as? Int,
       let anonymous = r["peak_anonymous_bytes"] as? Int {
        print(String(format: "\nfull fine-tuning in PyTorch: %.1f texts/s, %.1f s per epoch, peak RSS %d MB, peak anonymous %d MB",
                     r["texts_per_s"] as? Double ?? 0, seconds, rss >> 20, anonymous >> 20))
        // Anonymous against anonymous: RSS would count the cache pages LMDB's map touched on one
        // side and torch's shared libraries on the other.
        print("head                   time per epoch vs fine-tuning   peak anonymous memory vs fine-tuning")
        for (name, mine) in ours.sorted(by: { $0.key < $1.key }) {
            print(name.padding(toLength: 22, withPad: " ", startingAt: 0)
                  // One decimal: a head near the 50× target must not round onto it.
                  + String(format: "%15.1f× less %30.1f× less", seconds / mine.seconds, Double(anonymous) / Double(max(mine.anonymous, 1))))
        }
    } else {
        print("\nfull fine-tuning peer failed (status \(status))")
    }
}
