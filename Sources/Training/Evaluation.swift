// A trained head scored on one split of a cache (`sidecar eval`): logits in index order, the
// split's metrics and per-class precision and recall.
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

public struct Evaluation: Codable, Sendable {
    public var split: String
    public var labels: [String]
    public var metrics: ClassificationMetrics
    public var perClass: [ClassScore]
    /// [examples][classes], in the split's index order.
    public var logits: [[Float]]

    enum CodingKeys: String, CodingKey {
        case split, labels, metrics, logits
        case perClass = "per_class"
    }

    /// Runs `head` in eval mode over every example of `split`, as training evaluates it: a head
    /// that splits its batches runs its parts on the cores, and the next batch is decoded in the
    /// step's gaps.
    public static func run(_ head: any Head, cache: ActivationCache, split: String, batchSize: Int = 64) throws -> Evaluation {
        let dataset = try CacheDataset(cache: cache, split: split, features: head.features)
        let labels = cache.manifest.settings.labels
        // Eval mode draws nothing from the stream.
        let sharded = ShardedStep(head: head, rng: SeededGenerator(seed: 0))
        // One BLAS thread, as in training: the cores run the parts instead.
        let previousThreads = BLAS.threadCount
        BLAS.setThreadCount(1)
        defer { BLAS.setThreadCount(previousThreads) }
        let collected = Collected()
        var logits: [[Float]] = []
        logits.reserveCapacity(dataset.count)
        let truth = try predictSplit(dataset, steps: [sharded], batchSize: batchSize,
                                     workers: ProcessInfo.processInfo.activeProcessorCount) { _, out, partLabels in
            collected.add(logits: out, labels: partLabels)
            let classes = out.shape[1]
            for b in partLabels.indices { logits.append(Array(out.scalars[(b * classes)..<((b + 1) * classes)])) }
        }
        let metrics = ClassificationMetrics(predictions: collected.predictions, labels: truth, classes: labels.count,
                                            loss: collected.lossSum / Double(max(truth.count, 1)))
        return Evaluation(split: split, labels: labels, metrics: metrics, perClass: scores(metrics.confusion, labels: labels), logits: logits)
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
