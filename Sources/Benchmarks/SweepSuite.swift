// `sidecar-bench sweep`: throughput of a hyperparameter grid in trials per hour, as one `sidecar
// sweep` (trials sharing passes, --jobs processes) next to the same trials run one `sidecar fit`
// process at a time. The grid: two head configs × lr 3e-4, 1e-3, 3e-3, 1e-2 × dropout 0, 0.1, 0.2
// × seed 0, 1 = 48 trials, where the two are linear probes on all layers and on the last
// (`probes`, the default) or a linear probe and an MLP on all layers (`mixed`); --trials takes the
// first N. Both sides train the same configs for the same epochs (patience 4).
import Foundation
import SideNetworks
import TensorCore

func benchmarkSweep(cachePath: String, epochs: Int, trials count: Int, jobs: Int, grid: SweepGrid) throws {
    let configs: [(head: String, layers: String)] = switch grid {
    case .probes: [("linear", "all"), ("linear", "last")]
    case .mixed: [("linear", "all"), ("mlp", "all")]
    }
    let sidecar = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("sidecar").path

    var trials: [(head: String, layers: String, lr: String, dropout: String, seed: String)] = []
    for (head, layers) in configs {
        for lr in ["0.0003", "0.001", "0.003", "0.01"] {
            for dropout in ["0", "0.1", "0.2"] {
                for seed in ["0", "1"] { trials.append((head, layers, lr, dropout, seed)) }
            }
        }
    }
    // Interleaved so that a prefix still mixes heads and seeds.
    trials = trials.enumerated().sorted { ($0.offset % 24, $0.offset / 24) < ($1.offset % 24, $1.offset / 24) }.map(\.element)
    trials = Array(trials.prefix(max(1, min(count, trials.count))))

    let work = FileManager.default.temporaryDirectory.appendingPathComponent("sidecar-bench-sweep-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }
    // One single-point [[grid]] block per trial: exactly these configs.
    var spec = "[base.training]\nepochs = \(epochs)\n"
    for t in trials {
        spec += "\n[[grid]]\nhead = \"\(t.head)\"\n[grid.training]\nlr = \(t.lr)\nseed = \(t.seed)\n[grid.set]\nlayers = \"\(t.layers)\"\ndropout = \(t.dropout)\n"
    }
    let specPath = work.appendingPathComponent("sweep.toml").path
    try spec.write(toFile: specPath, atomically: true, encoding: .utf8)
    print("sweep throughput on \(cachePath): \(trials.count) trials (\(configs.map { "\($0.head) on layers \($0.layers)" }.joined(separator: " and ")) × lr × dropout × seed), \(epochs) epoch(s) each, "
          + "\(ProcessInfo.processInfo.activeProcessorCount) cores\n")

    let clock = ContinuousClock()
    var sweepStatus: Int32 = 0
    var sweepOut = ""
    let sweepTime = clock.measure {
        (sweepStatus, sweepOut) = (try? runProcess(sidecar, ["sweep", "--spec", specPath, "--cache", cachePath, "--results",
                                                                work.appendingPathComponent("results").path, "--jobs", String(jobs)])) ?? (-1, "")
    }.inSeconds
    guard sweepStatus == 0 else { throw HeadError("sidecar sweep failed (status \(sweepStatus))") }
    let passes = sweepOut.split(separator: "\n").first { $0.contains("pass(es) sharing data") }.map(String.init) ?? ""
    print("sidecar sweep --jobs \(jobs): \(String(format: "%.1f", sweepTime)) s  (\(passes.trimmingCharacters(in: .whitespaces)))")

    let fitTime = try clock.measure {
        for (i, t) in trials.enumerated() {
            let (status, _) = try runProcess(sidecar, ["fit", "--cache", cachePath, "--head", t.head, "--set", "layers=\(t.layers)", "--set", "dropout=\(t.dropout)",
                                                       "--lr", t.lr, "--seed", t.seed, "--epochs", String(epochs),
                                                       "--out", work.appendingPathComponent("fit-\(i)").path])
            guard status == 0 else { throw HeadError("sidecar fit failed (status \(status)) for \(t)") }
        }
    }.inSeconds
    print("one sidecar fit per trial:  \(String(format: "%.1f", fitTime)) s")
    let perHour = { (s: Double) in Double(trials.count) / s * 3600 }
    print(String(format: "\ntrials/hour: sweep %.0f, one fit at a time %.0f; %.2f× (target ≥ 3×)", perHour(sweepTime), perHour(fitTime), fitTime / sweepTime))
}
