// `sidecar eval`: a trained head scored on one split of a cache, with no backbone in memory.
import ActivationStore
import ArgumentParser
import Foundation
import SideNetworks
import Training

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a trained head on a split of a cache: accuracy, macro-F1, per-class precision and recall, confusion.",
        discussion: """
            The cache must hold the backbone and labels the head was trained with (any storage type: a head \
            trained on an f32 cache can be scored on an int8 one). --head takes a folder written by `fit` or \
            a file written by `export`.
            """)

    @Option(help: "The cache folder.")
    var cache: String

    @Option(help: "The head: a folder written by sidecar fit, or a .safetensors file written by sidecar export.")
    var head: String

    @Option(help: "The split to score.")
    var split = "test"

    @Option(help: "Examples per batch.")
    var batchSize = 64

    @Flag(help: "Print the report as one JSON object (metrics, per-class scores, confusion; logits with --logits).")
    var json = false

    @Flag(help: "With --json: include every example's logits, in the split's order.")
    var logits = false

    @Flag(help: "Open the cache without LMDB's lock file (read-only shared storage).")
    var noLock = false

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        if logits && !json { throw ValidationError("--logits goes with --json") }
    }

    func run() throws {
        let trained = try TrainedHead.load(head)
        let opened = try ActivationCache.open(path: cache, noLock: noLock)
        try trained.checkCompatible(with: opened.manifest.settings, cachePath: cache)
        let model = try trained.instantiate(context: try opened.describe().context)
        var evaluation: Evaluation
        do { evaluation = try Evaluation.run(model, cache: opened, split: split, batchSize: batchSize) } catch let error as CorruptRecord {
            throw CacheError("\(cache): \(error); `sidecar inspect \(cache) --verify` lists every damaged record")
        }
        if json {
            if !logits { evaluation.logits = [] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(evaluation), as: UTF8.self))
        } else {
            print("\(trained.config.head) from \(head) on \(cache)")
            print(evaluation.table())
        }
    }
}
