// Choosing an ensemble's members on a validation split (`sidecar eval --select`): forward
// selection without replacement, each step's score that of the mean-probability ensemble as
// `eval` scores it.
import Foundation
import TensorCore
import Testing
import Training

@Suite struct EnsembleSelectionTests {
    /// Logits that put `confidence` (per example, or one for all) on `predicted[e]` for each
    /// example e, out of 3 classes.
    func logits(_ predicted: [Int], confidence: Float = 2, confidences: [Float]? = nil) -> [[Float]] {
        predicted.enumerated().map { e, p in (0..<3).map { $0 == p ? confidences?[e] ?? confidence : 0 } }
    }

    /// The ensemble's accuracy and loss as `eval` computes them: the mean-probability logits of
    /// the members, then the metrics of those.
    func scored(_ members: [[[Float]]], labels: [Int]) -> (accuracy: Double, loss: Double) {
        let rows = labels.indices.map { e in Evaluation.meanProbabilityLogits(members.map { $0[e] }) }
        let mixed = Evaluation.meanProbabilityLogits([Tensor(shape: [rows.count, 3], scalars: rows.flatMap { $0 })])
        let predictions = rows.map { row in row.firstIndex(of: row.max()!)! }
        var loss = 0.0
        for (e, label) in labels.enumerated() {
            let row = mixed.scalars[(e * 3)..<((e + 1) * 3)].map(Double.init)
            let top = row.max()!
            loss += top + log(row.reduce(0.0) { $0 + exp($1 - top) }) - row[label]
        }
        let metrics = ClassificationMetrics(predictions: predictions, labels: labels, classes: 3, loss: loss / Double(labels.count))
        return (metrics.accuracy, metrics.loss)
    }

    func better(_ a: (accuracy: Double, loss: Double), than b: (accuracy: Double, loss: Double)) -> Bool {
        a.accuracy != b.accuracy ? a.accuracy > b.accuracy : a.loss < b.loss
    }

    @Test func eachStepAddsTheHeadThatMostRaisesTheEnsemble() {
        let labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        // A is right on 7 of 10, alone the best. B is right on 6, sure where A is wrong (examples
        // 7 and 8) and unsure where it is wrong itself: together 9 of 10. C is wrong wherever A
        // is, D is A's twin, less sure.
        let a = logits([0, 1, 2, 0, 1, 2, 0, 2, 0, 2])
        let b = logits([0, 1, 1, 1, 2, 2, 0, 1, 2, 1], confidences: [4, 4, 0.5, 0.5, 0.5, 4, 4, 4, 4, 0.5])
        let c = logits([0, 1, 2, 0, 1, 0, 0, 2, 0, 2])
        let d = logits([0, 1, 2, 0, 1, 2, 0, 2, 0, 2], confidence: 1)
        let all = [c, a, b, d]
        let chosen = EnsembleSelection.choose(logits: all, labels: labels, most: 4)
        #expect(chosen.prefix(2).map(\.index) == [1, 2], "A alone, then B: \(chosen)")
        #expect(chosen[1].accuracy == 0.9)
        for (k, step) in chosen.enumerated() {
            let before = chosen.prefix(k).map(\.index)
            // The score is the ensemble's as eval scores it (through Float logits there: to 1e-6).
            let expected = scored((before + [step.index]).map { all[$0] }, labels: labels)
            #expect(step.accuracy == expected.accuracy && abs(step.loss - expected.loss) < 1e-6, "step \(k): \(step) against \(expected)")
            // No head left at this step would have scored better, nor as well and been given first.
            for other in all.indices where !before.contains(other) && other != step.index {
                let with = scored((before + [other]).map { all[$0] }, labels: labels)
                #expect(!better(with, than: expected) && !(other < step.index && !better(expected, than: with)),
                        "step \(k): head \(other) (\(with)) against head \(step.index) (\(expected))")
            }
            if k > 0 { #expect(better((step.accuracy, step.loss), than: (chosen[k - 1].accuracy, chosen[k - 1].loss))) }
        }
        // It stops where no head left would raise the ensemble.
        let members = chosen.map(\.index)
        for left in all.indices where !members.contains(left) {
            let with = scored((members + [left]).map { all[$0] }, labels: labels)
            #expect(!better(with, than: (chosen.last!.accuracy, chosen.last!.loss)), "head \(left) would have raised the ensemble: \(with)")
        }
    }

    @Test func atMostTheMembersAskedFor() {
        // Three heads each right on a different two of six examples, unsure where wrong: each
        // added raises the ensemble (2, then 4, then 6 right).
        let labels = [0, 1, 2, 0, 1, 2]
        let heads: [[[Float]]] = (0..<3).map { h in
            let predicted: [Int] = labels.indices.map { e in e / 2 == h ? labels[e] : (labels[e] + 1) % 3 }
            let confidences: [Float] = labels.indices.map { e in e / 2 == h ? 4 : 0.5 }
            return logits(predicted, confidences: confidences)
        }
        let accuracies: [Double] = EnsembleSelection.choose(logits: heads, labels: labels, most: 3).map(\.accuracy)
        let rising: [Double] = [2.0 / 6, 4.0 / 6, 1]
        #expect(accuracies == rising)
        #expect(EnsembleSelection.choose(logits: heads, labels: labels, most: 2).count == 2)
        #expect(EnsembleSelection.choose(logits: heads, labels: labels, most: 1).count == 1)
    }

    @Test func equalAccuraciesGoToTheLowerLossThenToTheHeadGivenFirst() {
        let labels = [0, 1, 2]
        // Both right on every example; the surer one has the lower loss.
        let unsure = logits([0, 1, 2], confidence: 1), sure = logits([0, 1, 2], confidence: 5)
        #expect(EnsembleSelection.choose(logits: [unsure, sure], labels: labels, most: 1).map(\.index) == [1])
        // Twins: the first given.
        #expect(EnsembleSelection.choose(logits: [sure, sure], labels: labels, most: 2).map(\.index) == [0])
    }

    @Test func logitsFarApartGiveFiniteLosses() {
        // Each head is right on one example and gives the other's class e^−900 (0 in Double):
        // alone, a loss of 900 on the example it gets wrong; together, each example's class keeps
        // half its probability (log 2), in log space on both paths.
        let labels = [0, 1]
        let first: [[Float]] = [[0, -900, -900], [0, -900, -900]]
        let second: [[Float]] = [[-900, 0, -900], [-900, 0, -900]]
        let chosen = EnsembleSelection.choose(logits: [first, second], labels: labels, most: 2)
        #expect(chosen.map(\.index) == [0, 1] && chosen.map(\.accuracy) == [0.5, 0.5], "\(chosen)")
        #expect(abs(chosen[0].loss - 450) < 1e-3 && abs(chosen[1].loss - log(2.0)) < 1e-6, "\(chosen)")
    }
}
