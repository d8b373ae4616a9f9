// The sweep file: a base config, then [[grid]] blocks (Cartesian products) and [[random]] blocks
// (seeded draws), each expanded into trials that are validated against the heads' schemas and the
// training options before anything runs. The format is described in full on `sidecar sweep --help`
// and in the README; SweepSpecTests holds a commented example.
//
//   [base]                      # what every trial starts from
//   head = "linear"             # the head when a block names none
//   [base.training]             # epochs lr batch_size seed optimizer weight_decay warmup
//   epochs = 4                  #   label_smoothing clip_norm patience ema_decay (lr absent: the head's own)
//   [base.set]                  # hyperparameters; each must exist on every head it reaches
//   pool = "mean"
//
//   [[grid]]                    # every combination of the lists below
//   head = ["linear", "mlp"]
//   [grid.training]
//   lr = [1e-3, 3e-3]
//   [grid.set]
//   layers = ["last", "all"]    # a list-valued hyperparameter needs its own brackets: [[1,2], "all"]
//
//   [[random]]                  # `trials` seeded draws
//   trials = 8
//   seed = 1
//   head = "losa"
//   [random.training]
//   lr = { log_uniform = [1e-4, 1e-2] }
//   [random.set]
//   rank_tokens = { int = [4, 16] }       # inclusive
//   dropout = { uniform = [0.0, 0.3] }
//   layers = ["last", "all"]              # a list is a uniform choice (also { choice = [...] })
import Foundation
import SideNetworks
import TensorCore
import TOMLKit

/// A bad sweep file, or a bad flag: the message names the file (or flag), the table/key and the fault.
public struct SweepError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A TOML value as the sweep reads it, without the parser's types.
public indirect enum SpecValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([SpecValue])
    case table([String: SpecValue])

    public var description: String {
        switch self {
        case .int(let v): String(v)
        case .float(let v): String(v)
        case .bool(let v): String(v)
        case .string(let v): "\"\(v)\""
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .table(let t): "{" + t.keys.sorted().map { "\($0) = \(t[$0]!)" }.joined(separator: ", ") + "}"
        }
    }

    var number: Double? {
        switch self {
        case .int(let v): Double(v)
        case .float(let v): v
        default: nil
        }
    }

    /// `key` is the dotted path to the value, for messages.
    init(_ value: any TOMLValueConvertible, key: String = "") throws {
        if let t = value.table {
            var out: [String: SpecValue] = [:]
            for name in t.keys { out[name] = try SpecValue(t[name]!, key: key.isEmpty ? name : key + "." + name) }
            self = .table(out)
        } else if let a = value.array {
            self = .array(try a.map { try SpecValue($0, key: key) })
        } else if let v = value.bool {
            self = .bool(v)
        } else if let v = value.int {
            self = .int(v)
        } else if let v = value.double {
            self = .float(v)
        } else if let v = value.string {
            self = .string(v)
        } else {
            throw SweepError("\(key): dates and times are not sweep values")
        }
    }
}

/// The training options a trial may set, in the results file's spelling.
public struct TrialTraining: Codable, Sendable, Equatable, Hashable {
    public var epochs = 15
    /// Resolved: the head's default learning rate when the spec gives none.
    public var lr = 0.0
    public var batchSize = 32
    public var seed = 0
    public var optimizer = "adamw"
    public var weightDecay = 0.01
    public var warmup = 0.06
    public var labelSmoothing = 0.0
    public var clipNorm = 1.0
    public var patience = 4
    /// The weight average's decay; nil (off) is left out of the encoding, so the ids of trials
    /// without one stay what they were before the option existed.
    public var emaDecay: Double? = nil

    enum CodingKeys: String, CodingKey {
        case epochs, lr, seed, optimizer, warmup, patience
        case batchSize = "batch_size", weightDecay = "weight_decay", labelSmoothing = "label_smoothing", clipNorm = "clip_norm"
        case emaDecay = "ema_decay"
    }

    public static let keys = ["epochs", "lr", "batch_size", "seed", "optimizer", "weight_decay", "warmup", "label_smoothing", "clip_norm", "patience",
                              "ema_decay"]

    public init() {}

    /// Sets one option from the spec, or says what is wrong with the value (the caller adds where).
    mutating func set(_ key: String, _ value: SpecValue) throws {
        func number(_ ok: (Double) -> Bool, _ what: String) throws -> Double {
            guard let v = value.number, v.isFinite, ok(v) else { throw SweepError("expected \(what), got \(value)") }
            // Training runs in single precision: 1e39 had become an infinite learning rate.
            guard Float(v).isFinite else {
                throw SweepError("expected \(what) that single precision holds (at most \(Float.greatestFiniteMagnitude)), got \(value)")
            }
            // Checked again as training holds it: an EMA decay of 0.99999999999 became 1 (the
            // average never moves), which fit's --ema-decay refuses.
            guard ok(Double(Float(v))) else {
                let f = Float(v)
                let rounded = f == f.rounded() && abs(f) < 1e9 ? String(Int(f)) : "\(f)"
                throw SweepError("expected \(what), got \(value), which single precision rounds to \(rounded)")
            }
            return v
        }
        func integer(_ range: ClosedRange<Int>, _ what: String) throws -> Int {
            guard case .int(let v) = value, range.contains(v) else { throw SweepError("expected \(what), got \(value)") }
            return v
        }
        switch key {
        // Bounds far past any real run, so that no step count or memory estimate overflows.
        case "epochs": epochs = try integer(1...1_000_000, "an integer in 1...1000000")
        case "lr":
            lr = try number({ $0 > 0 }, "a positive number")
        case "batch_size": batchSize = try integer(1...1 << 20, "an integer in 1...1048576")
        case "seed": seed = try integer(0...Int.max, "a non-negative integer")
        case "optimizer":
            guard case .string(let v) = value, ["adamw", "sgd"].contains(v) else { throw SweepError("expected \"adamw\" or \"sgd\", got \(value)") }
            optimizer = v
        case "weight_decay": weightDecay = try number({ $0 >= 0 }, "a non-negative number")
        case "warmup": warmup = try number({ (0...1).contains($0) }, "a fraction in 0...1")
        case "label_smoothing": labelSmoothing = try number({ $0 >= 0 && $0 < 1 }, "a number in [0, 1)")
        case "clip_norm": clipNorm = try number({ $0 >= 0 }, "a non-negative number (0: off)")
        case "patience": patience = try integer(0...Int.max, "a non-negative integer (0: never stop early)")
        case "ema_decay": emaDecay = try number({ (0..<1).contains($0) }, "a number in [0, 1)")
        default: throw SweepError("unknown training option; the options are \(Self.keys.joined(separator: ", "))")
        }
    }
}

/// One fully resolved trial.
public struct Trial: Sendable, Equatable {
    public var id: String
    public var head: String
    /// The `--set` texts that resolve to `hyperparameters`.
    public var settings: [String: String]
    public var hyperparameters: [String: HyperparameterValue]
    public var training: TrialTraining
    /// Where in the spec it came from, for messages ("[[grid]] 2").
    public var origin: String

    /// The canonical JSON (sorted keys) that the id hashes.
    public static func canonicalJSON(head: String, hyperparameters: [String: HyperparameterValue], training: TrialTraining) -> Data {
        struct Canonical: Encodable {
            var head: String
            var hyperparameters: [String: HyperparameterValue]
            var training: TrialTraining
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try! encoder.encode(Canonical(head: head, hyperparameters: hyperparameters, training: training))
    }

    public static func makeID(head: String, hyperparameters: [String: HyperparameterValue], training: TrialTraining) -> String {
        shortHash(canonicalJSON(head: head, hyperparameters: hyperparameters, training: training), hexDigits: 12)
    }
}

/// The parsed sweep file.
public struct SweepSpec: Sendable {
    public var path: String
    public var trials: [Trial]
    /// More trials than this is a mistake in the file (a sweep this size would not finish).
    public static let maxTrials = 100_000
    /// Configs listed more than once (by several blocks) and kept once.
    public var duplicates: Int

    /// Reads, expands and validates a sweep file.
    public static func load(path: String) throws -> SweepSpec {
        guard let data = FileManager.default.contents(atPath: path) else { throw SweepError("\(path): cannot read the sweep file") }
        guard let text = String(validating: data, as: UTF8.self) else {
            let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            let line = (lines.firstIndex { String(validating: $0, as: UTF8.self) == nil } ?? 0) + 1
            throw SweepError("\(path):\(line): not valid UTF-8, which TOML requires")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws -> SweepSpec {
        // The parser reads a C string: at a NUL byte it stopped, and the rest of the file was
        // dropped without a word. TOML allows no control character there anyway.
        if let nul = text.firstIndex(of: "\0") {
            let before = text[..<nul]
            let line = before.split(separator: "\n", omittingEmptySubsequences: false)
            throw SweepError("\(path):\(line.count):\((line.last?.count ?? 0) + 1): a NUL byte; TOML allows no control characters but tab")
        }
        let root: [String: SpecValue]
        do {
            let table = try TOMLTable(string: text)
            guard case .table(let t) = try SpecValue(table) else { throw SweepError("not a table") }
            root = t
        } catch let error as TOMLParseError {
            throw SweepError("\(path):\(error.source.begin.line):\(error.source.begin.column): \(error.description)")
        } catch let error as SweepError {
            throw SweepError("\(path): \(error.description)")
        }
        for key in root.keys.sorted() where !["base", "grid", "random"].contains(key) {
            throw SweepError("\(path): unknown top-level key '\(key)'; a sweep file has [base], [[grid]] and [[random]]")
        }
        var parser = Parser(path: path)
        try parser.readBase(root["base"])
        let grids = try parser.blocks(root["grid"], name: "grid")
        let randoms = try parser.blocks(root["random"], name: "random")
        var drafts: [Draft] = []
        // Checked after each block: many blocks each just under the limit would otherwise all be
        // expanded (gigabytes) before the total was refused.
        func add(_ block: [Draft]) throws {
            drafts += block
            guard drafts.count <= maxTrials else {
                throw SweepError("\(path): the blocks expand to more than the \(maxTrials) trials a sweep file may have")
            }
        }
        for (i, block) in grids.enumerated() { try add(try parser.expandGrid(block, where: "[[grid]] \(i + 1)")) }
        for (i, block) in randoms.enumerated() { try add(try parser.expandRandom(block, where: "[[random]] \(i + 1)")) }
        if grids.isEmpty && randoms.isEmpty { drafts = [Draft(head: parser.baseHead, settings: [:], training: [:], origin: "[base]")] }
        var trials: [Trial] = []
        var seen = Set<String>()
        var duplicates = 0
        for draft in drafts {
            let trial = try parser.resolve(draft)
            if seen.insert(trial.id).inserted { trials.append(trial) } else { duplicates += 1 }
        }
        return SweepSpec(path: path, trials: trials, duplicates: duplicates)
    }
}

/// A trial before validation: the head, hyperparameter texts and training values that override the base.
struct Draft {
    var head: String?
    var settings: [String: SpecValue]
    var training: [String: SpecValue]
    var origin: String
}

private struct Parser {
    let path: String
    var baseHead: String? = nil
    var baseSettings: [String: SpecValue] = [:]
    var baseTraining: [String: SpecValue] = [:]

    init(path: String) { self.path = path }

    func fail(_ table: String, _ key: String?, _ fault: String) -> SweepError {
        SweepError("\(path): \(table)\(key.map { " \($0)" } ?? ""): \(fault)")
    }

    mutating func readBase(_ value: SpecValue?) throws {
        guard let value else { return }
        guard case .table(let t) = value else { throw fail("[base]", nil, "expected a table") }
        for key in t.keys.sorted() {
            switch (key, t[key]!) {
            case ("head", .string(let h)): baseHead = h
            case ("head", let v): throw fail("[base]", "head", "expected a head name, got \(v)")
            case ("set", .table(let s)): baseSettings = s
            case ("training", .table(let s)): baseTraining = s
            case ("set", _), ("training", _): throw fail("[base]", key, "expected a table [base.\(key)]")
            default: throw fail("[base]", key, "unknown key; [base] has head, [base.training] and [base.set]")
            }
        }
        for (key, v) in baseTraining {
            var probe = TrialTraining()
            do { try probe.set(key, v) } catch let e as SweepError { throw fail("[base.training]", key, e.description) }
        }
    }

    func blocks(_ value: SpecValue?, name: String) throws -> [[String: SpecValue]] {
        guard let value else { return [] }
        guard case .array(let items) = value else { throw fail("[[\(name)]]", nil, "expected an array of tables, written [[\(name)]]") }
        return try items.enumerated().map { i, item in
            guard case .table(let t) = item else { throw fail("[[\(name)]] \(i + 1)", nil, "expected a table") }
            return t
        }
    }

    /// The head, set and training tables of a block, with unknown keys refused.
    func parts(_ block: [String: SpecValue], where origin: String, extra: Set<String>) throws
        -> (head: SpecValue?, set: [String: SpecValue], training: [String: SpecValue]) {
        var set: [String: SpecValue] = [:], training: [String: SpecValue] = [:]
        for key in block.keys.sorted() {
            switch (key, block[key]!) {
            case ("head", _): break
            case ("set", .table(let t)): set = t
            case ("training", .table(let t)): training = t
            case ("set", _), ("training", _): throw fail(origin, key, "expected a sub-table")
            default:
                guard extra.contains(key) else {
                    let known = (["head", "set", "training"] + extra.sorted()).joined(separator: ", ")
                    throw fail(origin, key, "unknown key; this block may have \(known)")
                }
            }
        }
        for key in training.keys.sorted() where !TrialTraining.keys.contains(key) {
            throw fail(origin, "training.\(key)", "unknown training option; the options are \(TrialTraining.keys.joined(separator: ", "))")
        }
        return (block["head"], set, training)
    }

    func expandGrid(_ block: [String: SpecValue], where origin: String) throws -> [Draft] {
        let (head, set, training) = try parts(block, where: origin, extra: [])
        // Axes in a fixed order (head, then set.*, then training.*, keys sorted) so the trial order
        // is the same however the file orders them.
        var axes: [(String, [SpecValue])] = []
        func values(_ v: SpecValue, _ key: String) throws -> [SpecValue] {
            if case .array(let a) = v {
                guard !a.isEmpty else { throw fail(origin, key, "an empty list gives no trials") }
                return a
            }
            return [v]
        }
        if let head { axes.append(("head", try values(head, "head"))) }
        for key in set.keys.sorted() { axes.append(("set.\(key)", try values(set[key]!, "set.\(key)"))) }
        for key in training.keys.sorted() { axes.append(("training.\(key)", try values(training[key]!, "training.\(key)"))) }
        // Counted before expanding: a typo'd grid must be refused, not fill memory.
        var product = 1
        for (axis, options) in axes {
            let (next, overflow) = product.multipliedReportingOverflow(by: options.count)
            guard !overflow, next <= SweepSpec.maxTrials else {
                throw fail(origin, axis, "the grid expands to more than \(SweepSpec.maxTrials) trials (the most a sweep file may have)")
            }
            product = next
        }
        var drafts = [Draft(head: nil, settings: [:], training: [:], origin: origin)]
        for (axis, options) in axes {
            drafts = drafts.flatMap { d in options.map { v in assign(d, axis, v) } }
        }
        return drafts
    }

    func assign(_ draft: Draft, _ axis: String, _ value: SpecValue) -> Draft {
        var d = draft
        if axis == "head" {
            if case .string(let h) = value { d.head = h } else { d.head = value.description }
        } else if axis.hasPrefix("set.") {
            d.settings[String(axis.dropFirst(4))] = value
        } else {
            d.training[String(axis.dropFirst(9))] = value
        }
        return d
    }

    func expandRandom(_ block: [String: SpecValue], where origin: String) throws -> [Draft] {
        let (head, set, training) = try parts(block, where: origin, extra: ["trials", "seed"])
        guard case .int(let count) = block["trials"] ?? .int(-1), count >= 1 else {
            throw fail(origin, "trials", block["trials"] == nil ? "missing: how many draws" : "expected an integer of at least 1")
        }
        guard count <= SweepSpec.maxTrials else {
            throw fail(origin, "trials", "\(count) draws are more than the \(SweepSpec.maxTrials) trials a sweep file may have")
        }
        var seed = 0
        if let s = block["seed"] {
            guard case .int(let v) = s, v >= 0 else { throw fail(origin, "seed", "expected a non-negative integer, got \(s)") }
            seed = v
        }
        var axes: [(String, Distribution)] = []
        if let head { axes.append(("head", try Distribution(head, fail: { fail(origin, "head", $0) }))) }
        for key in set.keys.sorted() {
            axes.append(("set.\(key)", try Distribution(set[key]!, fail: { fail(origin, "set.\(key)", $0) })))
        }
        for key in training.keys.sorted() {
            axes.append(("training.\(key)", try Distribution(training[key]!, fail: { fail(origin, "training.\(key)", $0) })))
        }
        // Every value a block can draw is checked now, as a grid's are: checked per draw, a bad
        // choice or bound (lr = [inf, 1e-3]) passed until a larger `trials` happened to draw it.
        // The options' valid values are intervals, so a range's two bounds stand for it.
        // The settings too, where the block's head is one known head (a drawn head is checked per draw).
        let fixedHead: String? = switch head {
        case .string(let name)?: name
        case nil: baseHead
        default: nil
        }
        let knownHead = fixedHead.flatMap { (try? HeadRegistry.kind(named: $0)) != nil ? $0 : nil }
        for (axis, distribution) in axes {
            for value in distribution.extremes {
                if axis.hasPrefix("training.") {
                    let key = String(axis.dropFirst("training.".count))
                    var options = TrialTraining()
                    do { try options.set(key, value) } catch let e as SweepError { throw fail(origin, axis, e.description) }
                } else if axis.hasPrefix("set."), let knownHead, let text = settingText(value) {
                    let key = String(axis.dropFirst("set.".count))
                    do { _ = try HeadRegistry.hyperparameters(head: knownHead, settings: [key: text]) } catch { throw fail(origin, axis, "\(error)") }
                }
            }
        }
        var rng = SplitMix64(seed: UInt64(seed))
        var drafts: [Draft] = []
        for _ in 0..<count {
            var d = Draft(head: nil, settings: [:], training: [:], origin: origin)
            for (axis, distribution) in axes { d = assign(d, axis, distribution.draw(&rng)) }
            drafts.append(d)
        }
        return drafts
    }

    /// Base + draft → a validated trial with its id.
    func resolve(_ draft: Draft) throws -> Trial {
        guard let head = draft.head ?? baseHead else {
            throw fail(draft.origin, "head", "no head: name one in this block or as [base] head")
        }
        let kind: any HeadKind.Type
        do { kind = try HeadRegistry.kind(named: head) } catch { throw fail(draft.origin, "head", "\(error)") }
        var training = TrialTraining()
        training.lr = Double(String(describing: kind.defaultLearningRate)) ?? Double(kind.defaultLearningRate)
        for (key, value) in baseTraining { try! training.set(key, value) }
        for key in draft.training.keys.sorted() {
            do { try training.set(key, draft.training[key]!) } catch let e as SweepError {
                throw fail(draft.origin, "training.\(key)", e.description)
            }
        }
        var settings: [String: String] = [:]
        var merged = baseSettings
        for (k, v) in draft.settings { merged[k] = v }
        for key in merged.keys.sorted() {
            let table = draft.settings[key] != nil ? draft.origin : "[base.set]"
            guard let text = settingText(merged[key]!) else {
                throw fail(table, "set.\(key)", "expected a number, bool, string or list of them, got \(merged[key]!)")
            }
            settings[key] = text
        }
        let hyperparameters: Hyperparameters
        do { hyperparameters = try HeadRegistry.hyperparameters(head: head, settings: settings) } catch {
            let what = settings.keys.sorted().map { "\($0)=\(settings[$0]!)" }.joined(separator: " ")
            throw fail(draft.origin, "set", "trial \(head) \(what): \(error)")
        }
        let identifying = HeadRegistry.identifyingValues(head: head, hyperparameters.values)
        return Trial(id: Trial.makeID(head: head, hyperparameters: identifying, training: training), head: head,
                     settings: settings, hyperparameters: hyperparameters.values, training: training, origin: draft.origin)
    }

    func settingText(_ value: SpecValue) -> String? {
        switch value {
        case .int, .float, .bool: value.description
        case .string(let s): s
        case .array(let items):
            items.allSatisfy({ if case .array = $0 { false } else if case .table = $0 { false } else { true } })
                ? items.map { settingText($0)! }.joined(separator: ",") : nil
        case .table: nil
        }
    }
}

/// How a [[random]] block draws one value.
enum Distribution {
    case constant(SpecValue)
    case choice([SpecValue])
    case uniform(Double, Double)
    case logUniform(Double, Double)
    case int(Int, Int)

    init(_ value: SpecValue, fail: (String) -> SweepError) throws {
        switch value {
        case .array(let a):
            guard !a.isEmpty else { throw fail("an empty choice list") }
            self = .choice(a)
        case .table(let t):
            guard t.count == 1, let (kind, arg) = t.first else {
                throw fail("expected one of { choice = [...] }, { uniform = [lo, hi] }, { log_uniform = [lo, hi] }, { int = [lo, hi] }")
            }
            func bounds() throws -> (Double, Double) {
                guard case .array(let a) = arg, a.count == 2, let lo = a[0].number, let hi = a[1].number else {
                    throw fail("\(kind) needs [low, high] with low <= high, got \(arg)")
                }
                guard lo.isFinite, hi.isFinite else { throw fail("\(kind) needs finite bounds, got \(arg)") }
                guard lo <= hi else { throw fail("\(kind) needs [low, high] with low <= high, got \(arg)") }
                return (lo, hi)
            }
            switch kind {
            case "choice":
                guard case .array(let a) = arg, !a.isEmpty else { throw fail("choice needs a non-empty list") }
                self = .choice(a)
            case "uniform": let (lo, hi) = try bounds(); self = .uniform(lo, hi)
            case "log_uniform":
                let (lo, hi) = try bounds()
                guard lo > 0 else { throw fail("log_uniform needs a positive low bound, got \(lo)") }
                self = .logUniform(lo, hi)
            case "int":
                guard case .array(let a) = arg, a.count == 2, case .int(let lo) = a[0], case .int(let hi) = a[1], lo <= hi else {
                    throw fail("int needs [low, high] integers with low <= high, got \(arg)")
                }
                self = .int(lo, hi)
            default: throw fail("unknown distribution '\(kind)'; use choice, uniform, log_uniform or int")
            }
        default:
            self = .constant(value)
        }
    }

    /// The values that stand for every draw: a choice's every value, a range's two bounds.
    var extremes: [SpecValue] {
        switch self {
        case .constant(let v): [v]
        case .choice(let a): a
        case .uniform(let lo, let hi), .logUniform(let lo, let hi): [.float(lo), .float(hi)]
        case .int(let lo, let hi): [.int(lo), .int(hi)]
        }
    }

    func draw(_ rng: inout SplitMix64) -> SpecValue {
        switch self {
        case .constant(let v): return v
        case .choice(let a): return a[Int(rng.next() % UInt64(a.count))]
        case .uniform(let lo, let hi): return .float(Self.rounded(lo + (hi - lo) * rng.unit(), within: lo, hi))
        case .logUniform(let lo, let hi): return .float(Self.rounded(exp(log(lo) + (log(hi) - log(lo)) * rng.unit()), within: lo, hi))
        case .int(let lo, let hi):
            // Unsigned, hi − lo + 1 cannot overflow; it wraps to 0 for the whole Int range, where any draw will do.
            let span = UInt64(UInt(bitPattern: hi &- lo)) &+ 1
            return .int(lo &+ Int(bitPattern: UInt(span == 0 ? rng.next() : rng.next() % span)))
        }
    }

    /// Six significant digits: readable in the results and the same text on every machine. Kept
    /// within the bounds, which may have more digits: [0.9999999, 0.99999999] had drawn 1.
    static func rounded(_ v: Double, within lo: Double, _ hi: Double) -> Double {
        min(max(Double(String(format: "%.6g", v)) ?? v, lo), hi)
    }
}

/// The first `hexDigits` hex digits of FNV-1a 64 over the bytes, mixed; stable across machines.
func shortHash(_ data: Data, hexDigits: Int) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in data { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    var mix = SplitMix64(seed: h)
    let value = mix.next()
    return String(String(format: "%016llx", value).prefix(hexDigits))
}
