// Each head declares its hyperparameters (type, range, default, help) so that a bad `--set` key or
// value is refused before any data is read, and so that `config.json` records every value that ran,
// defaults included.
import ActivationStore
import Foundation

/// A resolved hyperparameter value.
public enum HyperparameterValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case ints([Int])

    public var description: String {
        switch self {
        case .int(let v): String(v)
        case .float(let v): String(v)
        case .bool(let v): String(v)
        case .string(let v): v
        case .ints(let v): v.map(String.init).joined(separator: ",")
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(Int.self) { self = .int(v) }
        else if let v = try? c.decode(Double.self) { self = .float(v) }
        else if let v = try? c.decode([Int].self) { self = .ints(v) }
        else { self = .string(try c.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let v): try c.encode(v)
        case .float(let v): try c.encode(v)
        case .bool(let v): try c.encode(v)
        case .string(let v): try c.encode(v)
        case .ints(let v): try c.encode(v)
        }
    }
}

/// One declared hyperparameter.
public struct Hyperparameter: Sendable {
    public enum Kind: Sendable {
        case int(ClosedRange<Int>)
        case float(ClosedRange<Double>)
        case bool
        case choice([String])
        /// A comma-separated list of integers, each in the range (e.g. `groups=96,192`).
        case ints(ClosedRange<Int>)
        /// Backbone layers: `all`, `last`, `0,3,6` or `1-6` (resolved against the cache).
        case layers
    }

    public let name: String
    public let kind: Kind
    public let defaultValue: String
    public let help: String
    /// A key added after results had been recorded: at its default, a sweep trial's id leaves it
    /// out and `report` reads it into lines written before it, so that older results folders still
    /// resume and group with newer ones.
    public private(set) var addedLater = false

    public init(_ name: String, _ kind: Kind, default defaultValue: String, _ help: String) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.help = help
    }

    /// This hyperparameter, marked as added after results had been recorded (see `addedLater`).
    public func addedAfterResults() -> Hyperparameter {
        var copy = self
        copy.addedLater = true
        return copy
    }

    /// Parses `text` as this hyperparameter's value, or says what is wrong.
    func parse(_ text: String, head: String) throws -> HyperparameterValue {
        func bad(_ why: String) -> HeadError { HeadError("--set \(name)=\(text) for head \(head): \(why)") }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        switch kind {
        case .int(let range):
            guard let v = Int(trimmed) else { throw bad("not an integer") }
            guard range.contains(v) else { throw bad("outside \(range.lowerBound)...\(range.upperBound)") }
            return .int(v)
        case .float(let range):
            guard let v = Double(trimmed) else { throw bad("not a number") }
            guard v.isFinite else { throw bad(v.isNaN ? "not a number" : "not finite (the range is \(range.lowerBound)...\(range.upperBound))") }
            guard range.contains(v) else { throw bad("outside \(range.lowerBound)...\(range.upperBound)") }
            return .float(v)
        case .bool:
            switch trimmed.lowercased() {
            case "true", "1", "yes", "on": return .bool(true)
            case "false", "0", "no", "off": return .bool(false)
            default: throw bad("not true or false")
            }
        case .choice(let options):
            guard options.contains(trimmed) else { throw bad("expected one of \(options.joined(separator: ", "))") }
            return .string(trimmed)
        case .ints(let range):
            let parts = trimmed.split(separator: ",", omittingEmptySubsequences: false)
            var values: [Int] = []
            for part in parts {
                guard let v = Int(part.trimmingCharacters(in: .whitespaces)) else { throw bad("'\(part)' is not an integer") }
                guard range.contains(v) else { throw bad("\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
                values.append(v)
            }
            guard !values.isEmpty else { throw bad("empty list") }
            return .ints(values)
        case .layers:
            guard !trimmed.isEmpty else { throw bad("empty layer list") }
            // The spelling is checked here, where fit and a sweep's spec both check values: a sweep
            // had planned "6-1" and "1-" and recorded them as failed trials. Which layers exist is
            // for the cache to say.
            do { _ = try LayerList(trimmed) } catch {
                switch error.reason {
                case .notALayer: throw bad("'\(error.part)' is not a layer or a range a-b")
                case .emptyRange: throw bad("range \(error.part) is empty")
                }
            }
            return .string(trimmed)
        }
    }

    /// A list of layers and ranges in one spelling: sorted, each layer once, three or more in a
    /// row as a range (`6,1-3,2` → `1-3,6`; `4-5` → `4,5`), read by `LayerList` as the cache's
    /// resolution reads it, so that two spellings of one list are one sweep trial. Nil for
    /// anything else (`all`, `last`, or text the cache's resolution refuses with its own message).
    static func canonicalLayers(_ text: String) -> String? {
        // No backbone has 100,000 layers: a larger number is left to the cache to refuse, before
        // a range of it is expanded here.
        guard case .parts(let parts)? = try? LayerList(text), parts.allSatisfy({ $0.layers.lowerBound >= 0 && $0.layers.upperBound < 100_000 }) else {
            return nil
        }
        let layers = Set(parts.map(\.layers).joined())
        var runs: [String] = []
        var rest = layers.sorted()[...]
        while let first = rest.first {
            var last = first
            while rest.dropFirst(last - first + 1).first == last + 1 { last += 1 }
            rest = rest.dropFirst(last - first + 1)
            runs += last - first >= 2 ? ["\(first)-\(last)"] : (first...last).map(String.init)
        }
        return runs.joined(separator: ",")
    }

    /// The help line for `sidecar heads`.
    public var usage: String {
        let type: String
        switch kind {
        case .int(let r): type = "int \(r.lowerBound)...\(r.upperBound)"
        case .float(let r): type = "float \(r.lowerBound)...\(r.upperBound)"
        case .bool: type = "bool"
        case .choice(let o): type = o.joined(separator: "|")
        case .ints(let r): type = "ints \(r.lowerBound)...\(r.upperBound), comma-separated"
        case .layers: type = "layers: all|last|0,3,6|1-6"
        }
        return "\(name)=\(defaultValue)  (\(type)) \(help)"
    }
}

extension Hyperparameter {
    /// The pooling choice every head offers.
    static let pool = Hyperparameter("pool", .choice(["auto", "cls", "mean"]), default: "auto", "pooling; auto = the backbone's own")

    /// Dropout with a head's own default.
    static func dropout(_ defaultValue: String, _ help: String = "dropout before the classifier") -> Hyperparameter {
        Hyperparameter("dropout", .float(0...0.9), default: defaultValue, help)
    }
}

/// A head's resolved hyperparameters: every declared key, from `--set` or its default.
public struct Hyperparameters: Sendable, Equatable, Codable {
    public private(set) var values: [String: HyperparameterValue]

    public init(values: [String: HyperparameterValue]) {
        self.values = values
    }

    /// Resolves `settings` (key → text) against `schema`; unknown keys and bad values throw.
    public init(head: String, schema: [Hyperparameter], settings: [String: String]) throws {
        let known = Dictionary(uniqueKeysWithValues: schema.map { ($0.name, $0) })
        for key in settings.keys.sorted() where known[key] == nil {
            throw HeadError("--set \(key): head \(head) has no hyperparameter \(key); it has \(schema.map(\.name).joined(separator: ", "))")
        }
        var values: [String: HyperparameterValue] = [:]
        for parameter in schema {
            values[parameter.name] = try parameter.parse(settings[parameter.name] ?? parameter.defaultValue, head: head)
        }
        self.values = values
    }

    public func int(_ name: String) -> Int {
        guard case .int(let v) = values[name] else { preconditionFailure("hyperparameter \(name) is not a declared int") }
        return v
    }

    public func float(_ name: String) -> Float {
        guard case .float(let v) = values[name] else { preconditionFailure("hyperparameter \(name) is not a declared float") }
        return Float(v)
    }

    public func bool(_ name: String) -> Bool {
        guard case .bool(let v) = values[name] else { preconditionFailure("hyperparameter \(name) is not a declared bool") }
        return v
    }

    public func string(_ name: String) -> String {
        guard case .string(let v) = values[name] else { preconditionFailure("hyperparameter \(name) is not a declared string") }
        return v
    }

    public func ints(_ name: String) -> [Int] {
        guard case .ints(let v) = values[name] else { preconditionFailure("hyperparameter \(name) is not a declared int list") }
        return v
    }
}

/// A head that cannot be built as asked, or a cache that lacks what it reads.
public struct HeadError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
