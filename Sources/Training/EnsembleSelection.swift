// Which of many trained heads to ensemble (`sidecar eval --select`), chosen on the validation
// split so that the split an ensemble is scored on plays no part in choosing it.
import ActivationStore
import Foundation
import SideNetworks

/// Forward selection of an ensemble's members (Caruana et al., "Ensemble selection from libraries
/// of models", ICML 2004; here without replacement, so every member counts once in the mean): the
/// best head alone, then at each step the head whose addition gives the mean of the members' class
/// probabilities the best validation score, for as long as it beats the ensemble without it and
/// the ensemble has fewer than its most members. A score is the accuracy, ties going to the lower
/// loss, then to the head given first.
public struct EnsembleSelection: Codable, Sendable, Equatable {
    /// One member added: the ensemble's score with it.
    public struct Step: Codable, Sendable, Equatable {
        /// The head added, as given.
        public var head: String
        public var accuracy: Double
        public var loss: Double

        public init(head: String, accuracy: Double, loss: Double) {
            (self.head, self.accuracy, self.loss) = (head, accuracy, loss)
        }
    }

    /// The split the members were chosen on.
    public var split: String
    /// How many heads they were chosen from.
    public var candidates: Int
    /// The members in the order they were added, each with the ensemble's score once added.
    public var steps: [Step]

    public init(split: String, candidates: Int, steps: [Step]) {
        (self.split, self.candidates, self.steps) = (split, candidates, steps)
    }

    /// The indices (into `logits`) of the members chosen, in the order added, with the ensemble's
    /// score after each. `logits`: each candidate's [examples][classes] on one split, `labels`
    /// that split's classes.
    public static func choose(logits: [[[Float]]], labels: [Int], most: Int) -> [(index: Int, accuracy: Double, loss: Double)] {
        precondition(!logits.isEmpty && most >= 1 && logits.allSatisfy { $0.count == labels.count },
                     "ensemble selection: \(logits.count) candidates, \(labels.count) labels, at most \(most)")
        // Each candidate's log-probabilities; the ensemble's are kept as log Σ over members of
        // probabilities, in log space as `meanProbabilityLogits` does (a probability of e^−800
        // would be 0 in Double).
        let logProbabilities = logits.map { $0.map(Evaluation.logProbabilities) }
        func logAdd(_ a: Double, _ b: Double) -> Double {
            let top = max(a, b)
            return top == -.infinity ? -.infinity : top + log(exp(a - top) + exp(b - top))
        }
        /// The ensemble's (accuracy, loss) with `candidate` added to `sum` (nil: the candidate alone).
        func score(_ sum: [[Double]]?, members: Int, adding candidate: Int) -> (accuracy: Double, loss: Double) {
            var correct = 0, loss = 0.0
            let count = log(Double(members + 1))
            for (e, label) in labels.enumerated() {
                let row = logProbabilities[candidate][e]
                let mixed = sum.map { zip($0[e], row).map { logAdd($0, $1) } } ?? row
                // The first class of the highest probability, as a single head's metrics take it;
                // a NaN row counts as class 0.
                let top = mixed.max() ?? 0
                if (mixed.firstIndex(of: top) ?? 0) == label { correct += 1 }
                loss -= mixed[label] - count
            }
            let n = Double(max(labels.count, 1))
            return (Double(correct) / n, loss / n)
        }
        func better(_ a: (accuracy: Double, loss: Double), than b: (accuracy: Double, loss: Double)) -> Bool {
            a.accuracy != b.accuracy ? a.accuracy > b.accuracy : a.loss < b.loss
        }
        var chosen: [(index: Int, accuracy: Double, loss: Double)] = []
        var sum: [[Double]]? = nil
        while chosen.count < min(most, logits.count) {
            var best: (index: Int, accuracy: Double, loss: Double)? = nil
            for candidate in logits.indices where !chosen.contains(where: { $0.index == candidate }) {
                let s = score(sum, members: chosen.count, adding: candidate)
                if best == nil || better(s, than: (best!.accuracy, best!.loss)) { best = (candidate, s.accuracy, s.loss) }
            }
            guard let best else { break }
            if let last = chosen.last, !better((best.accuracy, best.loss), than: (last.accuracy, last.loss)) { break }
            chosen.append(best)
            let added = logProbabilities[best.index]
            sum = sum.map { zip($0, added).map { zip($0, $1).map(logAdd) } } ?? added
        }
        return chosen
    }
}
