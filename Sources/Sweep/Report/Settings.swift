// Trials that differ only in their seed, taken together as one setting. A sweep that repeats its
// settings over seeds asks how good each setting is, and a setting's luckiest seed answers another
// question: on the demo data, three seeds of one consolidator setting spread its validation
// accuracy over 0.7 points, more than most of its settings differ by.
import Foundation

/// The mean and spread of a sample.
public struct Spread: Sendable, Equatable {
    public let count: Int
    public let mean: Double
    /// The sample standard deviation (n − 1 in the denominator); nil for a single value.
    public let standardDeviation: Double?

    /// Nil for no values.
    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let mean = values.reduce(0, +) / Double(values.count)
        self.count = values.count
        self.mean = mean
        standardDeviation = values.count < 2 ? nil
            : (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot()
    }

    /// `0.8805 ± 0.0040`, or `0.8805` for a single value.
    public func formatted(_ format: String = "%.4f") -> String {
        String(format: format, mean) + (standardDeviation.map { " ± " + String(format: format, $0) } ?? "")
    }

    var json: JSONValue {
        var members: [String: JSONValue] = ["count": .number(Double(count)), "mean": .number(mean)]
        if let standardDeviation { members["std"] = .number(standardDeviation) }
        return .object(members)
    }
}

/// The successful trials of one setting: the same head, hyperparameters and training options,
/// any seed.
public struct Setting: Sendable {
    public let head: String
    public let hyperparameters: [String: JSONValue]
    /// The training options without the seed.
    public let training: [String: JSONValue]
    /// By seed.
    public let trials: [ReportedTrial]

    /// The trials' seeds, in order (null where a record has none).
    public var seeds: [JSONValue] { trials.map { $0.training["seed"] ?? .null } }

    public func spread(of metric: RankingMetric) -> Spread? { Spread(trials.compactMap { $0.value(of: metric) }) }
    public var testMacroF1: Spread? { Spread(trials.compactMap(\.metrics.testMacroF1)) }
    public var fitSeconds: Spread? { Spread(trials.compactMap(\.fitSeconds)) }
    /// Every seed trains the same parameters.
    public var trainableParameters: Int? { trials.lazy.compactMap(\.trainableParameters).first }

    /// What trials of one setting share.
    private struct Identity: Hashable {
        var head: String
        var hyperparameters: [String: JSONValue]
        var training: [String: JSONValue]
    }

    /// Groups trials by everything but their seed; the settings come in the order of their first
    /// trial in `trials`.
    static func grouping(_ trials: [ReportedTrial]) -> [Setting] {
        var order: [Identity] = []
        var members: [Identity: [ReportedTrial]] = [:]
        for trial in trials {
            var identity = Identity(head: trial.head, hyperparameters: trial.hyperparameters, training: trial.training)
            identity.training["seed"] = nil
            if members[identity] == nil { order.append(identity) }
            members[identity, default: []].append(trial)
        }
        return order.map { identity in
            let bySeed = members[identity]!.sorted { a, b in
                switch (a.training["seed"], b.training["seed"]) {
                case let (.number(x)?, .number(y)?) where x != y: return x < y
                default: return a.trial < b.trial
                }
            }
            return Setting(head: identity.head, hyperparameters: identity.hyperparameters, training: identity.training, trials: bySeed)
        }
    }

    /// What `sidecar report --by-setting --json` prints for the setting.
    public var json: JSONValue {
        var members: [String: JSONValue] = [
            "head": .string(head), "hyperparameters": .object(hyperparameters), "training": .object(training),
            "seeds": .array(seeds), "trials": .array(trials.map { .string($0.trial) }),
        ]
        for (key, spread) in [("val_accuracy", spread(of: .valAccuracy)), ("test_accuracy", spread(of: .testAccuracy)),
                              ("test_macro_f1", testMacroF1), ("fit_seconds", fitSeconds)] {
            if let spread { members[key] = spread.json }
        }
        if let trainableParameters { members["trainable_parameters"] = .number(Double(trainableParameters)) }
        return .object(members)
    }
}
