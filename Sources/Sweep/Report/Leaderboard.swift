// The trials in rank order, the hyperparameters worth showing, the Pareto fronts, and the
// terminal table. Pure functions of the merged trials: the same input gives the same bytes.
import Foundation
import Training

/// The points that no other point beats on both axes: lower cost and higher value.
public enum ParetoFront {
    /// Indices into `points` of the non-dominated points, by increasing cost. A point is dominated
    /// when another has cost ≤ and value ≥ with at least one strict; equal points do not dominate
    /// each other, so both stay on the front. Points with a non-finite coordinate are ignored.
    public static func indices(of points: [(cost: Double, value: Double)]) -> [Int] {
        let order = points.indices.filter { points[$0].cost.isFinite && points[$0].value.isFinite }.sorted {
            let a = points[$0], b = points[$1]
            if a.cost != b.cost { return a.cost < b.cost }
            if a.value != b.value { return a.value > b.value }
            return $0 < $1
        }
        var front: [Int] = []
        for i in order {
            let p = points[i]
            guard let last = front.last.map({ points[$0] }) else { front.append(i); continue }
            // Sorted by cost, then value descending: p is beaten iff the best value so far (the
            // front's last) is higher, or equal at a lower cost.
            if p.value > last.value || (p.value == last.value && p.cost == last.cost) { front.append(i) }
        }
        return front
    }
}

/// A hyperparameter or training option that takes more than one value across the trials.
public struct VaryingKey: Sendable, Hashable {
    public enum Section: Sendable, Hashable { case hyperparameters, training }
    public var section: Section
    public var name: String
}

public struct Leaderboard: Sendable {
    public let metric: RankingMetric
    /// Trials with status ok, best first.
    public let ranked: [ReportedTrial]
    /// Failed trials, by head then id.
    public let failed: [ReportedTrial]
    public let varyingKeys: [VaryingKey]
    /// Ids on the accuracy-vs-parameters and accuracy-vs-seconds fronts.
    public let parametersFront: Set<String>
    public let secondsFront: Set<String>

    /// The successful trials grouped by everything but their seed, ranked as trials are but by
    /// their mean accuracies.
    public let settings: [Setting]

    public init(trials: [ReportedTrial], metric: RankingMetric) {
        self.metric = metric
        ranked = trials.filter { $0.status == .ok }.sorted { a, b in
            Self.ranksFirst((a.value(of: metric), metric.tieBreaker.flatMap(a.value), a.trainableParameters, a.trial),
                            (b.value(of: metric), metric.tieBreaker.flatMap(b.value), b.trainableParameters, b.trial))
        }
        failed = trials.filter { $0.status == .failed }.sorted { ($0.head, $0.trial) < ($1.head, $1.trial) }
        varyingKeys = Self.varyingKeys(in: trials)
        parametersFront = Self.front(ranked, metric: metric) { $0.trainableParameters.map(Double.init) }
        secondsFront = Self.front(ranked, metric: metric) { $0.fitSeconds }
        settings = Setting.grouping(ranked).sorted { a, b in
            Self.ranksFirst((a.spread(of: metric)?.mean, metric.tieBreaker.flatMap { a.spread(of: $0)?.mean }, a.trainableParameters, a.trials[0].trial),
                            (b.spread(of: metric)?.mean, metric.tieBreaker.flatMap { b.spread(of: $0)?.mean }, b.trainableParameters, b.trials[0].trial))
        }
    }

    /// The ranking: higher accuracy by the metric, then (ranking by test only) by validation
    /// accuracy (absent ones last), then fewer parameters, then the id, so that the order never
    /// depends on the input's.
    static func ranksFirst(_ a: (Double?, Double?, Int?, String), _ b: (Double?, Double?, Int?, String)) -> Bool {
        func descending(_ a: Double?, _ b: Double?) -> Bool? {
            switch (a, b) {
            case let (x?, y?) where x != y: return x > y
            case (_?, nil): return true
            case (nil, _?): return false
            default: return nil
            }
        }
        if let order = descending(a.0, b.0) { return order }
        if let order = descending(a.1, b.1) { return order }
        if let order = descending(a.2.map { -Double($0) }, b.2.map { -Double($0) }) { return order }
        return a.3 < b.3
    }

    /// Every trial: ranked ones first, then failed ones.
    public var all: [ReportedTrial] { ranked + failed }

    static func front(_ trials: [ReportedTrial], metric: RankingMetric, cost: (ReportedTrial) -> Double?) -> Set<String> {
        let plotted = trials.compactMap { t in cost(t).flatMap { c in t.value(of: metric).map { (t.trial, c, $0) } } }
        return Set(ParetoFront.indices(of: plotted.map { (cost: $0.1, value: $0.2) }).map { plotted[$0].0 })
    }

    /// Keys whose values differ among the trials that have them; a key only some heads have but
    /// that is constant where present says nothing the head column does not.
    static func varyingKeys(in trials: [ReportedTrial]) -> [VaryingKey] {
        func varying(_ section: VaryingKey.Section, _ values: (ReportedTrial) -> [String: JSONValue]) -> [VaryingKey] {
            // Sets: a list per key made a random search of 20,000 trials quadratic (76 s).
            var seen: [String: Set<JSONValue>] = [:]
            for trial in trials {
                for (key, value) in values(trial) { seen[key, default: []].insert(value) }
            }
            return seen.filter { $0.value.count > 1 }.keys.sorted().map { VaryingKey(section: section, name: $0) }
        }
        return varying(.hyperparameters, \.hyperparameters) + varying(.training, \.training)
    }

    /// `key=value` for each varying key the trial has.
    public func keyHyperparameters(of trial: ReportedTrial) -> String {
        keySettings(trial.hyperparameters, trial.training)
    }

    /// `key=value` for each varying key the setting has (its seeds have a column of their own).
    public func keyHyperparameters(of setting: Setting) -> String {
        keySettings(setting.hyperparameters, setting.training)
    }

    private func keySettings(_ hyperparameters: [String: JSONValue], _ training: [String: JSONValue]) -> String {
        varyingKeys.compactMap { key in
            let values = key.section == .hyperparameters ? hyperparameters : training
            return values[key.name].map { "\(key.name)=\($0.display)" }
        }.joined(separator: " ")
    }

    /// Every hyperparameter and training option of a trial, for tooltips.
    public static func allSettings(of trial: ReportedTrial) -> String {
        let hyper = trial.hyperparameters.keys.sorted().map { "\($0)=\(trial.hyperparameters[$0]!.display)" }
        let training = trial.training.keys.sorted().map { "\($0)=\(trial.training[$0]!.display)" }
        return (hyper + training).joined(separator: " ")
    }

    /// The leaderboard for a terminal: one row per trial, failed ones last, then their errors.
    public func terminalTable() -> String {
        let headers = ["rank", "trial", "head", "hyperparameters", "val_acc", "test_acc", "macro_f1", "params", "fit_s", "status"]
        let rightAligned: Set<Int> = [0, 4, 5, 6, 7, 8]
        func accuracy(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "-" }
        var rows: [[String]] = []
        for (i, t) in ranked.enumerated() {
            rows.append([String(i + 1), t.trial, t.head, keyHyperparameters(of: t), accuracy(t.metrics.valAccuracy),
                         accuracy(t.metrics.testAccuracy), accuracy(t.metrics.testMacroF1), t.trainableParameters.map(String.init) ?? "-",
                         t.fitSeconds.map { String(format: "%.1f", $0) } ?? "-", "ok"])
        }
        for t in failed {
            rows.append(["-", t.trial, t.head, keyHyperparameters(of: t), "-", "-", "-", t.trainableParameters.map(String.init) ?? "-",
                         t.fitSeconds.map { String(format: "%.1f", $0) } ?? "-", "failed"])
        }
        var lines = Self.aligned([headers] + rows, rightAligned: rightAligned)
        if !failed.isEmpty {
            lines.append("")
            lines.append("failed:")
            for t in failed { lines.append(TerminalText.safe("  \(t.trial) \(t.head): \(t.error ?? "no reason recorded")")) }
        }
        return lines.joined(separator: "\n")
    }

    /// The settings for a terminal: one row per setting, with the seeds that ran it and its
    /// accuracies' mean ± standard deviation over them.
    public func settingsTable() -> String {
        let headers = ["rank", "head", "hyperparameters", "seeds", "val_acc", "test_acc", "macro_f1", "params", "fit_s"]
        var rows = [headers]
        for (i, s) in settings.enumerated() {
            rows.append([String(i + 1), s.head, keyHyperparameters(of: s), s.seeds.map(\.display).joined(separator: ","),
                         s.spread(of: .valAccuracy)?.formatted() ?? "-", s.spread(of: .testAccuracy)?.formatted() ?? "-",
                         s.testMacroF1?.formatted() ?? "-", s.trainableParameters.map(String.init) ?? "-",
                         s.fitSeconds.map { String(format: "%.1f", $0.mean) } ?? "-"])
        }
        var lines = Self.aligned(rows, rightAligned: [0, 4, 5, 6, 7, 8])
        if !failed.isEmpty { lines.append("\n\(failed.count) failed trial\(failed.count == 1 ? "" : "s") left out (the trial table lists them)") }
        return lines.joined(separator: "\n")
    }

    /// Rows as columns padded to their widest cell, two spaces apart.
    static func aligned(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        let rows = rows.map { $0.map(TerminalText.safe) }
        var widths = rows[0].map(\.count)
        for row in rows { for (c, cell) in row.enumerated() { widths[c] = max(widths[c], cell.count) } }
        return rows.map { cells in
            cells.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return rightAligned.contains(c) ? pad + cell : cell + pad
            }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
        }
    }
}
