// `sidecar-bench`: benchmarks that print measurements, never assert them (`make bench`). Each suite
// lives in its own file: CoreSuite, ExtractSuite, FitSuite, SweepSuite.
import ArgumentParser
import Foundation

@main
struct SidecarBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar-bench",
        abstract: "Benchmarks that print measurements (speed, memory, accuracy) and never assert them.",
        discussion: """
            Each suite prints a table; the README quotes them. PyTorch peers run where torch is \
            importable by SIDECAR_TORCH_PYTHON (else python3), and are skipped otherwise.
            """,
        subcommands: [Core.self, Extract.self, Fit.self, Sweep.self],
        defaultSubcommand: Core.self)
}

let demoData = "datasets/debian-sections/data"
let demoCache = demoData + "/cache-minilm"

struct Core: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Matrix-product GFLOP/s at the backbone's shapes against the CPU's peak, the side networks' products in f32 against bf16, and the autodiff tape's overhead per step.")

    func run() {
        benchmarkMatrixProducts()
        benchmarkSideNetworkProducts()
        benchmarkTapeOverhead()
    }
}

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stage one's tokens/s on both compute paths next to PyTorch, and the cache's bytes and decoding speed per storage type.")

    @Argument(help: "A dataset folder with train.jsonl.")
    var dataset = demoData

    @Argument(help: "How many of its training texts to extract.")
    var examples = 4000

    func validate() throws {
        guard examples > 0 else { throw ValidationError("EXAMPLES must be positive, got \(examples)") }
    }

    func run() throws {
        try benchmarkExtraction(dataset: dataset, limit: examples)
    }
}

struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stage two: each head's accuracy next to the anchors, seconds per epoch and peak memory next to PyTorch, several heads per pass.")

    @Argument(help: "An activation cache (the demo's by default).")
    var cache = demoCache

    @Option(help: "Epochs of the accuracy runs (early stopping with patience 4).")
    var epochs = 15

    @Option(help: "The dataset folder the cache was extracted from, for PyTorch's fine-tuning (default: the cache's parent folder).")
    var dataset: String?

    @Flag(help: "Time and memory only: skip the accuracy runs and the several-heads pass.")
    var skipAccuracy = false

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Also fit the same heads on an f32 and an int8 cache of the same data.",
                                                         valueName: "F32CACHE INT8CACHE"))
    var compare: [String] = []

    func validate() throws {
        guard epochs > 0 else { throw ValidationError("--epochs must be positive, got \(epochs)") }
        guard compare.isEmpty || compare.count == 2 else {
            throw ValidationError("--compare takes two caches, an f32 one and an int8 one; got \(compare.count)")
        }
    }

    func run() throws {
        try benchmarkFit(cachePath: cache, epochs: epochs, dataset: dataset, skipAccuracy: skipAccuracy,
                         compare: compare.isEmpty ? nil : (compare[0], compare[1]))
    }
}

enum SweepGrid: String, ExpressibleByArgument, CaseIterable {
    case probes, mixed
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Trials per hour of a 48-trial grid as one `sidecar sweep`, against one `sidecar fit` per trial.")

    @Argument(help: "An activation cache (the demo's by default).")
    var cache = demoCache

    @Option(help: "Epochs of each trial.")
    var epochs = 4

    @Option(help: "Run the grid's first N trials.")
    var trials = 48

    @Option(help: "Sweep processes (default: half the cores).")
    var jobs = max(1, ProcessInfo.processInfo.activeProcessorCount / 2)

    @Option(help: "probes: linear probes on all layers and on the last; mixed: a linear probe and an MLP on all layers.")
    var grid = SweepGrid.probes

    func validate() throws {
        for (name, value) in [("--epochs", epochs), ("--trials", trials), ("--jobs", jobs)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
    }

    func run() throws {
        try benchmarkSweep(cachePath: cache, epochs: epochs, trials: trials, jobs: jobs, grid: grid)
    }
}
