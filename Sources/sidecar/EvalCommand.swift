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

            --select N chooses the ensemble from the heads given (a sweep's trials, say): forward \
            selection on the val split (Caruana et al., 2004, without replacement), starting from the best \
            head alone and adding, at each step, the head that most raises the ensemble's val accuracy \
            (ties: the lower val loss), while that beats the ensemble without it and up to N heads. The \
            chosen ensemble is then scored on --split, which val cannot be.
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

    @Option(parsing: .unconditional, help: "Choose an ensemble of at most this many of the --head given, on the val split (see below), and score it on --split.")
    var select: Int?

    @Flag(help: "Print the report as one JSON object (metrics, per-class scores, confusion; logits with --logits; an ensemble's members; with --select, how they were chosen).")
    var json = false

    @Flag(help: "With --json: include every example's logits, in the split's order (an ensemble's: the logarithms of its mean probabilities).")
    var logits = false

    @Flag(help: "Open the cache without LMDB's lock file (read-only shared storage).")
    var noLock = false

    func validate() throws {
        try Self.checkHeads(heads)
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        if logits && !json { throw ValidationError("--logits goes with --json") }
        if let select {
            if select < 1 { throw ValidationError("--select must be at least 1, got \(select)") }
            if heads.count < 2 { throw ValidationError("--select chooses among several heads; give at least two --head") }
            if split == Self.selectionSplit {
                throw ValidationError("--select chooses the heads on \(Self.selectionSplit), so it cannot also score them there; give another --split (test, the default)")
            }
        }
    }

    static let selectionSplit = "val"

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
        do {
            var chosen = models
            var selection: EnsembleSelection?
            if let select {
                guard opened.manifest.settings.splits.contains(Self.selectionSplit) else {
                    throw CacheError("\(cache) has no \(Self.selectionSplit) split (it has \(opened.manifest.settings.splits.joined(separator: ", "))) to choose an ensemble on; --select needs one")
                }
                let scored = try Evaluation.run(ensemble: models, cache: opened, split: Self.selectionSplit, batchSize: batchSize, memberLogits: true)
                let labels = try CacheDataset(cache: opened, split: Self.selectionSplit, features: []).labels()
                let picked = EnsembleSelection.choose(logits: (scored.members ?? []).map { $0.logits ?? [] }, labels: labels, most: select)
                selection = EnsembleSelection(split: Self.selectionSplit, candidates: models.count,
                                              steps: picked.map { EnsembleSelection.Step(head: models[$0.index].name, accuracy: $0.accuracy, loss: $0.loss) })
                chosen = picked.map { models[$0.index] }
            }
            evaluation = try Evaluation.run(ensemble: chosen, cache: opened, split: split, batchSize: batchSize)
            evaluation.selection = selection
            // A selection of one head still reports it as the one member, so that the report's shape
            // does not depend on how many were chosen.
            if selection != nil, evaluation.members == nil, let only = chosen.first {
                evaluation.members = [EnsembleMember(head: only.name, kind: only.head.name, trainableParameters: only.head.parameterCount,
                                                     metrics: evaluation.metrics)]
            }
        } catch let error as CorruptRecord {
            throw CacheError("\(cache): \(error); `sidecar inspect \(cache) --verify` lists every damaged record")
        }
        if json {
            if !logits { evaluation.logits = nil }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(evaluation), as: UTF8.self))
            return
        }
        if let selection = evaluation.selection {
            print("chose \(selection.steps.count) of \(selection.candidates) heads on \(selection.split), adding one at a time while the ensemble's accuracy rose (ties: its loss fell):")
            for step in selection.steps {
                print(String(format: "  + %@: %@ accuracy %.4f  loss %.4f", step.head, selection.split, step.accuracy, step.loss))
            }
            print("")
        }
        if let members = evaluation.members, members.count > 1 {
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
            let only = evaluation.selection.flatMap { selection in heads.firstIndex(of: selection.steps[0].head) } ?? 0
            print("\(trained[only].config.head) from \(heads[only]) on \(cache)")
            print(evaluation.table())
        }
    }
}
