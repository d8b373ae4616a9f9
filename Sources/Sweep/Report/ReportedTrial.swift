// One line of a sweep results file, as `sidecar report` reads it (the contract is in
// results-schema: snake_case keys, metrics absent when unknown). Keys this reader does not know are
// kept in `raw`, so `--json` passes them through; nothing here validates a trial against the heads.
import Foundation
import SideNetworks

/// Any JSON value, decoded without loss of structure. Numbers are `Double` (JSON has one number
/// type; the results files hold nothing beyond 2^53).
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// A short text for tables: integers without a decimal point, arrays as `1,2,3`.
    public var display: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .number(let value): return shortNumber(value)
        case .string(let value): return value
        case .array(let values): return values.map(\.display).joined(separator: ",")
        case .object(let members): return "{" + members.keys.sorted().map { "\($0): \(members[$0]!.display)" }.joined(separator: ", ") + "}"
        }
    }
}

/// Six significant digits, no trailing zeros, integers as integers: 0.001, 8, 3e-05.
func shortNumber(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return String(format: "%g", value)
}

/// One trial's result: what ran, how it scored, what it cost.
public struct ReportedTrial: Sendable, Decodable {
    public enum Status: String, Sendable, Codable { case ok, failed }

    /// The same metrics block the sweep writes.
    public typealias Metrics = TrialRecord.Metrics

    /// One epoch of `history`; fields are optional because a diverged epoch has no finite loss.
    public struct Epoch: Sendable, Decodable {
        public var epoch: Int
        public var trainLoss: Double?
        public var valLoss: Double?
        public var valAccuracy: Double?

        enum CodingKeys: String, CodingKey {
            case epoch, trainLoss = "train_loss", valLoss = "val_loss", valAccuracy = "val_accuracy"
        }
    }

    public var trial: String
    public var status: Status
    public var error: String?
    public var head: String
    public var hyperparameters: [String: JSONValue]
    public var training: [String: JSONValue]
    public var metrics: Metrics
    public var trainableParameters: Int?
    public var fractionOfBackbone: Double?
    public var fitSeconds: Double?
    public var peakRSSBytes: Int?
    public var host: String?
    public var shard: String?
    public var group: String?
    public var finished: String?
    public var history: [Epoch]
    /// The whole line as read, unknown keys included.
    public var raw: JSONValue = .null
    /// `file:line` the record came from.
    public var source: String = ""

    enum CodingKeys: String, CodingKey {
        case trial, status, error, head, hyperparameters, training, metrics, host, shard, group, finished, history
        case trainableParameters = "trainable_parameters", fractionOfBackbone = "fraction_of_backbone"
        case fitSeconds = "fit_seconds", peakRSSBytes = "peak_rss_bytes"
    }

    /// A key added to a head after results had been recorded (`Hyperparameter.addedLater`) reads as
    /// its default in a line written before it existed, as trial ids read it: such a setting and
    /// the same setting run after are one setting, and the key shows only where its values differ.
    static func withLaterDefaults(head: String, _ values: [String: JSONValue]) -> [String: JSONValue] {
        guard let kind = try? HeadRegistry.kind(named: head),
              let defaults = try? HeadRegistry.hyperparameters(head: head, settings: [:]).values else { return values }
        var out = values
        for parameter in kind.schema where parameter.addedLater && values[parameter.name] == nil {
            guard let value = defaults[parameter.name], let data = try? JSONEncoder().encode(value) else { continue }
            out[parameter.name] = try? JSONDecoder().decode(JSONValue.self, from: data)
        }
        return out
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        trial = try c.decode(String.self, forKey: .trial)
        if trial.isEmpty {
            throw DecodingError.dataCorruptedError(forKey: .trial, in: c, debugDescription: "the trial id is empty")
        }
        let statusText = try c.decode(String.self, forKey: .status)
        guard let status = Status(rawValue: statusText) else {
            throw DecodingError.dataCorruptedError(forKey: .status, in: c, debugDescription: "expected \"ok\" or \"failed\", found \"\(statusText)\"")
        }
        self.status = status
        error = try c.decodeIfPresent(String.self, forKey: .error)
        head = try c.decode(String.self, forKey: .head)
        hyperparameters = Self.withLaterDefaults(head: head, try c.decodeIfPresent([String: JSONValue].self, forKey: .hyperparameters) ?? [:])
        training = try c.decodeIfPresent([String: JSONValue].self, forKey: .training) ?? [:]
        metrics = try c.decodeIfPresent(Metrics.self, forKey: .metrics) ?? Metrics()
        trainableParameters = try c.decodeIfPresent(Int.self, forKey: .trainableParameters)
        fractionOfBackbone = try c.decodeIfPresent(Double.self, forKey: .fractionOfBackbone)
        fitSeconds = try c.decodeIfPresent(Double.self, forKey: .fitSeconds)
        peakRSSBytes = try c.decodeIfPresent(Int.self, forKey: .peakRSSBytes)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        shard = try c.decodeIfPresent(String.self, forKey: .shard)
        group = try c.decodeIfPresent(String.self, forKey: .group)
        finished = try c.decodeIfPresent(String.self, forKey: .finished)
        history = try c.decodeIfPresent([Epoch].self, forKey: .history) ?? []
        // Values no sweep writes (a hand-edited line) are refused by name: ranked as they were, an
        // accuracy of 1.5 had topped the board.
        let fractions = [("val_accuracy", metrics.valAccuracy), ("test_accuracy", metrics.testAccuracy), ("test_macro_f1", metrics.testMacroF1)]
        if let (name, value) = fractions.first(where: { $0.1.map { !(0...1).contains($0) } ?? false }) {
            throw DecodingError.dataCorruptedError(forKey: .metrics, in: c, debugDescription: "\(name) \(value!) is outside 0...1")
        }
        let counts: [(CodingKeys, Int?)] = [(.trainableParameters, trainableParameters), (.peakRSSBytes, peakRSSBytes)]
        if let (key, value) = counts.first(where: { ($0.1 ?? 0) < 0 }) {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(value!) is negative")
        }
        if let fitSeconds, !(fitSeconds >= 0 && fitSeconds.isFinite) {
            throw DecodingError.dataCorruptedError(forKey: .fitSeconds, in: c, debugDescription: "fit_seconds \(fitSeconds) is not a finite number of at least 0")
        }
    }

    /// The metric the leaderboard ranks by.
    public func value(of metric: RankingMetric) -> Double? {
        switch metric {
        case .valAccuracy: return metrics.valAccuracy
        case .testAccuracy: return metrics.testAccuracy
        }
    }
}

/// Which accuracy ranks the trials and goes on the charts' y axes.
public enum RankingMetric: String, Sendable, CaseIterable {
    case valAccuracy = "val_accuracy"
    case testAccuracy = "test_accuracy"

    /// Words for axis labels and headings.
    public var title: String {
        switch self {
        case .valAccuracy: return "validation accuracy"
        case .testAccuracy: return "test accuracy"
        }
    }

    /// The tie-breaker, if any: ranking by validation never looks at test accuracy (a tie broken
    /// by it would pick a trial by its test score).
    var tieBreaker: RankingMetric? { self == .testAccuracy ? .valAccuracy : nil }
}
