// `sidecar eval`: a trained head scored on one split of a cache, with no backbone in memory.
import ActivationStore
import ArgumentParser
import Foundation
import SideNetworks
import Training

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a trained head, or an ensemble of several, on a split of a cache: accuracy, macro-F1, per-class precision and recall, confusion.",
        discussion: """
            The cache must hold the backbone and labels the head was trained with (any storage type: a head \
            trained on an f32 cache can be scored on an int8 one). --head takes a folder written by `fit` or \
            a file written by `export`. Repeat it to score several heads as an ensemble, on one pass over \
            the split: the mean of their class probabilities (soft voting), after each head's own scores.
            """)

    @Option(help: "The cache folder.")
    var cache: String

    @Option(name: .customLong("head"),
            help: "The head: a folder written by sidecar fit, or a .safetensors file written by sidecar export (repeat for an ensemble).")
    var heads: [String]

    @Option(help: "The split to score.")
    var split = "test"

    @Option(parsing: .unconditional, help: "Examples per batch.")
    var batchSize = 64

    @Flag(help: "Print the report as one JSON object (metrics, per-class scores, confusion; logits with --logits; an ensemble's members).")
    var json = false

    @Flag(help: "With --json: include every example's logits, in the split's order (an ensemble's: the logarithms of its mean probabilities).")
    var logits = false

    @Flag(help: "Open the cache without LMDB's lock file (read-only shared storage).")
    var noLock = false

    func validate() throws {
        try Self.checkHeads(heads)
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        if logits && !json { throw ValidationError("--logits goes with --json") }
    }

    /// No --head twice (an ensemble's heads must differ), also through another spelling of its
    /// path (a link, a trailing slash, a relative path, a hard link): the file system's identity
    /// of what it opens. Cleaning the path as text would take "link/../x" for another x than the
    /// one the OS opens.
    static func checkHeads(_ heads: [String]) throws {
        var seen: [String: String] = [:]
        for head in heads {
            var status = stat()
            // A path that cannot be read is refused by name when the head is loaded.
            let resolved = stat(head, &status) == 0 ? "\(status.st_dev):\(status.st_ino)" : head
            if let first = seen[resolved] {
                throw ValidationError(first == head ? "--head \(head) is given twice; an ensemble's heads must differ"
                                                    : "--head \(head) is \(first), given before; an ensemble's heads must differ")
            }
            seen[resolved] = head
        }
    }

    func run() throws {
        let trained = try heads.map { try TrainedHead.load($0) }
        try TrainedHead.checkDistinct(trained, paths: heads)
        let opened = try ActivationCache.open(path: cache, noLock: noLock)
        try checkAddressSpace("sidecar eval")
        let context = try opened.describe().context
        let models = try zip(heads, trained).map { path, head in
            try head.checkCompatible(with: opened.manifest.settings, cachePath: cache)
            return (name: path, head: try head.instantiate(context: context))
        }
        try checkAddressSpace("sidecar eval", workingSet: WorkingSet.pass(opened, batchSize: batchSize, heads: models.map(\.head), training: false),
                              smaller: "a smaller --batch-size")
        var evaluation: Evaluation
        do { evaluation = try Evaluation.run(ensemble: models, cache: opened, split: split, batchSize: batchSize) } catch let error as CorruptRecord {
            throw CacheError("\(cache): \(error); `sidecar inspect \(cache) --verify` lists every damaged record")
        }
        if json {
            if !logits { evaluation.logits = nil }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(evaluation), as: UTF8.self))
        } else if let members = evaluation.members {
            let total = members.reduce(0) { $0 + $1.trainableParameters }
            let backbone = opened.manifest.settings.backbone.parameters
            let share = backbone > 0 ? String(format: " (%.2f%% of the backbone's)", 100 * Double(total) / Double(backbone)) : ""
            print("ensemble of \(members.count) heads on \(cache): the mean of their class probabilities; \(total) trainable parameters\(share)")
            for m in members {
                print(String(format: "  %@ from %@: accuracy %.4f  macro-F1 %.4f  (%d parameters)", m.kind, m.head,
                             m.metrics.accuracy, m.metrics.macroF1, m.trainableParameters))
            }
            print("")
            print(evaluation.table())
        } else {
            print("\(trained[0].config.head) from \(heads[0]) on \(cache)")
            print(evaluation.table())
        }
    }
}
