// A trained head, or an ensemble of several, scored on one split of a cache (`sidecar eval`):
// logits in index order, the split's metrics and per-class precision and recall.
import ActivationStore
import Foundation
import SideNetworks
import TensorCore

/// Precision, recall and F1 of one class.
public struct ClassScore: Codable, Sendable, Equatable {
    public var label: String
    public var precision: Double
    public var recall: Double
    public var f1: Double
    /// Examples whose true class this is.
    public var support: Int
}

/// One head of an ensemble scored alone, on the same pass.
public struct EnsembleMember: Codable, Sendable {
    /// What the command was given for it (a fit folder or an exported file).
    public var head: String
    public var kind: String
    public var trainableParameters: Int
    public var metrics: ClassificationMetrics
    /// Its logits [examples][classes] in the split's order, when asked for (to choose an
    /// ensemble's members from them); never reported.
    public var logits: [[Float]]? = nil

    enum CodingKeys: String, CodingKey {
        case head, kind, metrics
        case trainableParameters = "trainable_parameters"
    }

    public init(head: String, kind: String, trainableParameters: Int, metrics: ClassificationMetrics, logits: [[Float]]? = nil) {
        (self.head, self.kind, self.trainableParameters, self.metrics, self.logits) = (head, kind, trainableParameters, metrics, logits)
    }
}

public struct Evaluation: Codable, Sendable {
    public var split: String
    public var labels: [String]
    /// The head's metrics, or with several heads their ensemble's.
    public var metrics: ClassificationMetrics
    public var perClass: [ClassScore]
    /// [examples][classes], in the split's index order. An ensemble's are the logarithms of its
    /// mean class probabilities, so that their softmax is that mean. Nil when left out of a
    /// report (`eval --json` without `--logits`), so that the key is absent, not an empty list.
    public var logits: [[Float]]?
    /// With several heads: each scored alone, in the order given; nil for one head.
    public var members: [EnsembleMember]?
    /// How the members were chosen from more heads (`eval --select`); nil when they were given.
    public var selection: EnsembleSelection?

    enum CodingKeys: String, CodingKey {
        case split, labels, metrics, logits, members, selection
        case perClass = "per_class"
    }

    /// Runs `head` in eval mode over every example of `split`, as training evaluates it: a head
    /// that splits its batches runs its parts on the cores, and the next batch is decoded in the
    /// step's gaps.
    public static func run(_ head: any Head, cache: ActivationCache, split: String, batchSize: Int = 64) throws -> Evaluation {
        try run(ensemble: [("", head)], cache: cache, split: split, batchSize: batchSize)
    }

    /// Several heads on one pass over the split (each batch decoded once, with the features any of
    /// them reads), scored as an ensemble: the mean of their class probabilities, the soft vote
    /// of scikit-learn's VotingClassifier. `members` pairs each head with what the report calls
    /// it. One head is scored as itself, with no members. With `memberLogits`, each member's
    /// report keeps its logits (also a single head's, reported as a member then).
    public static func run(ensemble members: [(name: String, head: any Head)], cache: ActivationCache, split: String,
                           batchSize: Int = 64, memberLogits: Bool = false) throws -> Evaluation {
        precondition(!members.isEmpty, "an ensemble of no heads")
        let features = Feature.union(members.map(\.head.features))
        let dataset = try CacheDataset(cache: cache, split: split, features: features)
        let labels = cache.manifest.settings.labels
        // Eval mode draws nothing from the stream.
        let steps = members.map { ShardedStep(head: $0.head, rng: SeededGenerator(seed: 0)) }
        // One BLAS thread, as in training: the cores run the parts instead.
        let previousThreads = BLAS.threadCount
        BLAS.setThreadCount(1)
        defer { BLAS.setThreadCount(previousThreads) }
        let alone = members.map { _ in Collected() }, together = Collected()
        var logits: [[Float]] = []
        logits.reserveCapacity(dataset.count)
        // Each member's logits of the current batch, row after row, and the batch's labels: a
        // batch's parts arrive member by member, and every member's parts cover the whole batch.
        var batchScalars = members.map { _ in [Float]() }, batchLabels: [Int] = []
        var kept = members.map { _ in [[Float]]() }
        let truth = try predictSplit(dataset, steps: steps, batchSize: batchSize,
                                     workers: ProcessInfo.processInfo.activeProcessorCount, collect: { i, out, partLabels in
            alone[i].add(logits: out, labels: partLabels)
            if i == 0 { batchLabels += partLabels }
            batchScalars[i] += out.scalars
        }, batchDone: {
            defer {
                for i in batchScalars.indices { batchScalars[i].removeAll(keepingCapacity: true) }
                batchLabels.removeAll(keepingCapacity: true)
            }
            if memberLogits {
                for (i, scalars) in batchScalars.enumerated() {
                    kept[i] += stride(from: 0, to: scalars.count, by: labels.count).map { Array(scalars[$0..<($0 + labels.count)]) }
                }
            }
            let outputs = batchScalars.map { Tensor(shape: [batchLabels.count, labels.count], scalars: $0) }
            let mixed = members.count == 1 ? outputs[0] : meanProbabilityLogits(outputs)
            if members.count > 1 { together.add(logits: mixed, labels: batchLabels) }
            logits += stride(from: 0, to: mixed.count, by: labels.count).map { Array(mixed.scalars[$0..<($0 + labels.count)]) }
        })
        // Such logits had been scored as class 0 with a NaN loss, and exit status 0.
        if let i = alone.indices.first(where: { alone[$0].nonFiniteRows > 0 }) {
            throw HeadError("\(members[i].name.isEmpty ? "the head" : members[i].name): \(alone[i].nonFiniteRows) of the \(truth.count) examples "
                            + "of \(split) get logits that are not finite (NaN or infinite), so its weights overflow on them: "
                            + "the head is damaged or diverged in training")
        }
        let metrics = (members.count == 1 ? alone[0] : together).metrics(labels: truth, classes: labels.count)
        let scored = members.indices.map { i in
            EnsembleMember(head: members[i].name, kind: members[i].head.name, trainableParameters: members[i].head.parameterCount,
                           metrics: alone[i].metrics(labels: truth, classes: labels.count), logits: memberLogits ? kept[i] : nil)
        }
        return Evaluation(split: split, labels: labels, metrics: metrics, perClass: scores(metrics.confusion, labels: labels),
                          logits: logits, members: members.count > 1 || memberLogits ? scored : nil)
    }

    /// `meanProbabilityLogits` of each row of the members' logits ([rows, classes] each).
    public static func meanProbabilityLogits(_ members: [Tensor]) -> Tensor {
        precondition(!members.isEmpty && members.allSatisfy { $0.rank == 2 && $0.shape == members[0].shape },
                     "an ensemble's logits must be [rows, classes] alike, got \(members.map(\.shape))")
        let (rows, classes) = (members[0].shape[0], members[0].shape[1])
        let mixed = (0..<rows).flatMap { r in
            meanProbabilityLogits(members.map { Array($0.scalars[(r * classes)..<((r + 1) * classes)]) })
        }
        return Tensor(shape: [rows, classes], scalars: mixed)
    }

    /// log(mean over members of softmax(row)), in log space (log-sum-exp over members of their
    /// log-probabilities), so that it stays finite wherever the members' logits are: a class
    /// every member gives e^−800 would have a mean probability of 0 in Float or Double. A class
    /// every member gives −∞ stays −∞.
    public static func meanProbabilityLogits(_ rows: [[Float]]) -> [Float] {
        let logProbabilities = rows.map(logProbabilities)
        let count = log(Double(rows.count))
        return logProbabilities[0].indices.map { c in
            let top = logProbabilities.map { $0[c] }.max()!
            // exp(−∞ − −∞) would be NaN.
            guard top > -.infinity else { return -.infinity }
            return Float(top + log(logProbabilities.reduce(0.0) { $0 + exp($1[c] - top) }) - count)
        }
    }

    /// A row of logits as log-probabilities (a log-softmax in Double, its largest logit taken out
    /// first so that no exponent overflows).
    static func logProbabilities(_ row: [Float]) -> [Double] {
        let top = Double(row.max() ?? 0)
        let logSum = top + log(row.reduce(0.0) { $0 + exp(Double($1) - top) })
        return row.map { Double($0) - logSum }
    }

    /// Per-class scores from a confusion matrix (confusion[true][predicted]); an undefined ratio is 0.
    static func scores(_ confusion: [[Int]], labels: [String]) -> [ClassScore] {
        labels.indices.map { c in
            let truePositive = Double(confusion[c][c])
            let actual = confusion[c].reduce(0, +)
            let predicted = confusion.reduce(0) { $0 + $1[c] }
            let precision = predicted > 0 ? truePositive / Double(predicted) : 0
            let recall = actual > 0 ? truePositive / Double(actual) : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            return ClassScore(label: labels[c], precision: precision, recall: recall, f1: f1, support: actual)
        }
    }

    /// The terminal report: overall metrics, per-class scores and the confusion matrix.
    public func table() -> String {
        var lines = [String(format: "%@: %d examples  accuracy %.4f  macro-F1 %.4f  loss %.4f", split, metrics.examples,
                            metrics.accuracy, metrics.macroF1, metrics.loss), ""]
        // Labels are input: a tab or line break in one had split the table's rows.
        let shown = labels.map(TerminalText.safe)
        let width = max(5, shown.map(\.count).max() ?? 5)
        func pad(_ s: String) -> String { s.padding(toLength: width, withPad: " ", startingAt: 0) }
        lines.append(pad("class") + "  precision  recall     f1  support")
        for s in perClass {
            lines.append(pad(TerminalText.safe(s.label)) + String(format: "  %9.4f  %6.4f  %.4f  %7d", s.precision, s.recall, s.f1, s.support))
        }
        lines.append("")
        lines.append("confusion (rows: true class, columns: predicted, in the order above)")
        let cell = max(4, String(metrics.confusion.flatMap { $0 }.max() ?? 0).count + 1)
        for (c, row) in metrics.confusion.enumerated() {
            lines.append(pad(shown[c]) + row.map { String(repeating: " ", count: max(0, cell - String($0).count)) + String($0) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}
