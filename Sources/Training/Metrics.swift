// Classification metrics from predicted and true class ids.

public struct ClassificationMetrics: Codable, Sendable, Equatable {
    public var examples: Int
    public var accuracy: Double
    /// The unweighted mean of per-class F1 over the classes present in labels or predictions.
    public var macroF1: Double
    public var loss: Double
    /// confusion[true][predicted].
    public var confusion: [[Int]]

    enum CodingKeys: String, CodingKey {
        case examples, accuracy, loss, confusion
        case macroF1 = "macro_f1"
    }

    public init(predictions: [Int], labels: [Int], classes: Int, loss: Double) {
        precondition(predictions.count == labels.count, "\(predictions.count) predictions for \(labels.count) labels")
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, y) in zip(predictions, labels) { confusion[y][p] += 1 }
        let correct = (0..<classes).reduce(0) { $0 + confusion[$1][$1] }
        var f1s: [Double] = []
        for c in 0..<classes {
            let truePositive = Double(confusion[c][c])
            let actual = Double(confusion[c].reduce(0, +))
            let predicted = Double((0..<classes).reduce(0) { $0 + confusion[$1][c] })
            guard actual + predicted > 0 else { continue }
            f1s.append(2 * truePositive / (actual + predicted))
        }
        examples = labels.count
        accuracy = labels.isEmpty ? 0 : Double(correct) / Double(labels.count)
        macroF1 = f1s.isEmpty ? 0 : f1s.reduce(0, +) / Double(f1s.count)
        self.loss = loss
        self.confusion = confusion
    }
}
