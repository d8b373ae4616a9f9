// From trials to passes: trials with the same shared training options (everything but the learning
// rate, which the trainer takes per head) train together in one pass, up to a memory budget and a
// head count; groups are split into shards deterministically, from the spec and the cache alone, so
// every shard of a job array computes the same partition without talking to the others.
import ActivationStore
import Foundation
import SideNetworks
import Training

// Shards are ActivationStore's (`--shard i/N`, `auto`, `auto/N`), as for sharded extraction; a
// sweep also takes its shard from a job array's environment without being asked, since a sweep
// script is only ever submitted as an array for that.
extension Shard {
    public static let whole = try! Shard(index: 0, count: 1)

    /// Whether a job-array engine set a task index in the environment (Slurm's or Kubernetes').
    public static func environmentHasIndex(_ env: [String: String]) -> Bool {
        env["SLURM_ARRAY_TASK_ID"] != nil || env["JOB_COMPLETION_INDEX"] != nil
    }

    /// The shard a job-array engine assigned through the environment, or nil when none did:
    /// Slurm's SLURM_ARRAY_TASK_ID (less SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT, or
    /// Kubernetes' JOB_COMPLETION_INDEX of `count` (--shard-count, else SIDECAR_SHARD_COUNT).
    public static func fromEnvironment(_ env: [String: String], count explicitCount: Int?) throws -> Shard? {
        guard environmentHasIndex(env) else { return nil }
        var count = explicitCount
        if count == nil, let text = env["SIDECAR_SHARD_COUNT"] {
            guard let n = Int(text), n >= 1 else { throw ShardError("SIDECAR_SHARD_COUNT=\(text): not a positive integer") }
            count = n
        }
        if env["SLURM_ARRAY_TASK_ID"] == nil && count == nil {
            throw ShardError("JOB_COMPLETION_INDEX is set but the shard count is not; give --shard-count or SIDECAR_SHARD_COUNT")
        }
        // Named as what the user set: no --shard was given.
        return try Shard.parse(count.map { "auto/\($0)" } ?? "auto", source: "the job array's environment", environment: env)
    }

    /// The results file this shard appends to.
    public var fileName: String { "trials-\(index)-of-\(count).jsonl" }
}

/// One trial as planned against a cache.
public struct PlannedTrial: Sendable {
    public var trial: Trial
    /// A training step's operations per example (zero when the head could not be built).
    public var flops = StepFlops(f32: 0)
    public var features: [String]
    /// Bytes this head adds to a pass (weights, gradients, optimiser state, what its steps keep):
    /// `WorkingSet.head`'s estimate.
    public var memoryBytes: Int
    /// Set when the head cannot be built on this cache (a config error found late): recorded as
    /// failed when its shard runs, without training.
    public var lateError: String?
}

/// Trials sharing one data pass.
public struct TrialGroup: Sendable {
    /// Twelve hex digits, from the member trial ids (stable across runs and resumes).
    public var id: String
    /// The member trial ids, sorted and joined: what `id` hashes, and the order of groups whose
    /// ids collide (so that every shard sorts them alike).
    var memberKey: String
    public var members: [PlannedTrial]
    public var training: TrialTraining
    public var estimatedSeconds: Double
    public var memoryBytes: Int

    /// A total order, the same in every process: by id, then by members.
    static func precedes(_ a: TrialGroup, _ b: TrialGroup) -> Bool {
        (a.id, a.memberKey) < (b.id, b.memberKey)
    }
}

public struct PlanLimits: Sendable {
    public var memoryBudget: Int = 4 << 30
    public var maxHeadsPerGroup: Int = 16
    public init() {}
}

public struct SweepPlan: Sendable {
    public var groups: [TrialGroup]
    public var limits: PlanLimits
    let cost: CostModel

    public var trialCount: Int { groups.reduce(0) { $0 + $1.members.count } }

    /// Builds every head once on the cache (parameter counts, features, late errors) and groups them.
    public static func make(trials: [Trial], cache: ActivationCache, limits: PlanLimits) throws -> SweepPlan {
        let description = try cache.describe()
        let s = cache.manifest.settings
        let tokens = s.maxTokens ?? 128
        let width = s.backbone.hiddenSize
        // Read once (it reads records of the cache), for the time and the memory estimates.
        let measuredRows = cache.meanRows()
        let meanTokens = measuredRows ?? Double(tokens) / 4
        let rowsPerExample = WorkingSet.rowsPerExample(measured: measuredRows, s)
        var context = description.context
        context.planning = true
        var planned: [PlannedTrial] = []
        // A head's shape depends on its name and settings, not on its seed or training options:
        // each distinct one is built once (a grid over learning rates and seeds had built the same
        // consolidator, its blocks read from the cache, for every trial).
        var built: [String: Result<(parameters: Int, flops: StepFlops, features: [String]), Error>] = [:]
        for trial in trials {
            let key = ([trial.head] + trial.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: "\u{0}")
            let shape = built[key] ?? Result {
                let kind = try HeadRegistry.kind(named: trial.head)
                let h = try Hyperparameters(head: trial.head, schema: kind.schema, settings: trial.settings)
                let head = try kind.make(h, context: context, seed: UInt64(trial.training.seed))
                try kind.checkForTraining(h, context: context)
                return (head.parameterCount, head.stepFlops(tokens: meanTokens), head.features.map(\.description))
            }
            built[key] = shape
            switch shape {
            case .success(let head):
                let memory = WorkingSet.head(parameters: head.parameters, features: head.features.count,
                                             rows: rowsPerExample * Double(trial.training.batchSize), width: width, training: true)
                planned.append(PlannedTrial(trial: trial, flops: head.flops, features: head.features, memoryBytes: Int(min(memory, Double(1 << 50)))))
            case .failure(let error):
                planned.append(PlannedTrial(trial: trial, features: [], memoryBytes: 0, lateError: "\(error)"))
            }
        }
        let examples = s.splits.reduce(0) { $0 + (s.splitCounts[$1] ?? 0) }
        // Hidden states of every stored layer, and each stream of every layer after the embedding.
        let storedFeatures = s.layers.count + (s.streams ?? []).count * s.layers.filter { $0 > 0 }.count
        let cost = CostModel(examples: examples, trainExamples: s.splitCounts["train"] ?? 0,
                             bytesPerFeature: Double(LMDBEnvironment.dataFileSize(cache.path) ?? 0) / Double(max(examples, 1) * max(storedFeatures, 1)),
                             rowsPerExample: rowsPerExample, width: width)
        return SweepPlan(groups: group(planned, limits: limits, cost: cost), limits: limits, cost: cost)
    }

    /// `group` with only the members `keep` accepts (the ones a resumed run still has to train), its
    /// time and memory estimated for those alone; nil when none is left.
    public func remaining(of group: TrialGroup, keep: (PlannedTrial) -> Bool) -> TrialGroup? {
        let members = group.members.filter(keep)
        if members.isEmpty { return nil }
        var g = Self.makeGroup(members, cost: cost)
        (g.id, g.memberKey) = (group.id, group.memberKey)
        return g
    }

    static func group(_ planned: [PlannedTrial], limits: PlanLimits, cost: CostModel) -> [TrialGroup] {
        // Key: every shared training option except lr.
        func key(_ t: TrialTraining) -> TrialTraining { var k = t; k.lr = 0; return k }
        var byKey: [TrialTraining: [PlannedTrial]] = [:]
        var lateOnes: [PlannedTrial] = []
        for p in planned {
            if p.lateError != nil { lateOnes.append(p) } else { byKey[key(p.trial.training), default: []].append(p) }
        }
        var groups: [TrialGroup] = []
        for (_, members) in byKey {
            // Heads reading the same features side by side, so a chunk decodes little it does not need.
            let sorted = members.sorted { ($0.features.joined(separator: " "), $0.trial.id) < ($1.features.joined(separator: " "), $1.trial.id) }
            var chunk: [PlannedTrial] = []
            func flush() {
                guard !chunk.isEmpty else { return }
                groups.append(makeGroup(chunk, cost: cost))
                chunk = []
            }
            for p in sorted {
                if !chunk.isEmpty && (chunk.count >= limits.maxHeadsPerGroup || cost.memoryBytes(chunk + [p]) > limits.memoryBudget) { flush() }
                chunk.append(p)
            }
            flush()
        }
        groups += lateOnes.map { makeGroup([$0], cost: cost) }
        return groups.sorted(by: TrialGroup.precedes)
    }

    static func makeGroup(_ members: [PlannedTrial], cost: CostModel) -> TrialGroup {
        let memberKey = members.map(\.trial.id).sorted().joined(separator: ",")
        return TrialGroup(id: shortHash(Data(memberKey.utf8), hexDigits: 12), memberKey: memberKey,
                          members: members, training: members[0].trial.training,
                          estimatedSeconds: members[0].lateError != nil ? 0 : cost.seconds(members),
                          memoryBytes: cost.memoryBytes(members))
    }

    /// The groups of shard i of N: the longest groups first, each to the shard with the least
    /// estimated work so far (ties to the lower index). Whole groups, so a pass is never split.
    public func groups(of shard: Shard) -> [TrialGroup] {
        guard shard.count > 1 else { return groups }
        return Self.partition(groups, parts: shard.count)[shard.index]
    }

    /// Splits groups into `parts` lists of similar estimated work, deterministically.
    public static func partition(_ groups: [TrialGroup], parts: Int) -> [[TrialGroup]] {
        var out = [[TrialGroup]](repeating: [], count: parts)
        // Integer milliseconds: the same sums, and so the same choices, on every machine.
        var load = [Int](repeating: 0, count: parts)
        let order = groups.sorted {
            let a = Int($0.estimatedSeconds * 1000), b = Int($1.estimatedSeconds * 1000)
            return a != b ? a > b : TrialGroup.precedes($0, $1)
        }
        for g in order {
            let target = load.indices.min { load[$0] != load[$1] ? load[$0] < load[$1] : $0 < $1 }!
            out[target].append(g)
            load[target] += max(Int(g.estimatedSeconds * 1000), 1)
        }
        return out.map { $0.sorted(by: TrialGroup.precedes) }
    }
}

/// The plan's time estimate: decoding the features a pass reads, once per pass and epoch, plus for
/// each head a cost per feature it reads per example (pooling, normalising, the tape) and its
/// step's operations (`Head.stepFlops`), evaluation at a third of a training step. The rates were
/// fitted once to epoch times on a 2-core x86 machine with AVX512-BF16 (the MiniLM debian-sections
/// cache): each head alone (`sidecar-bench fit`), three K=4-6 consolidators in one pass and the
/// demo's 12 probes in one pass, all within a factor of two, most within 40% (a probe alone decodes
/// on one core while it trains on the other, which a sum does not see). They are assumptions here,
/// not a measurement of this machine.
struct CostModel: Sendable {
    var examples: Int
    var trainExamples: Int
    /// Stored bytes of one feature (a layer's hidden states or one stream) of one example.
    var bytesPerFeature: Double
    /// Rows of one example, and floats of one row, for the decoded batches' memory.
    var rowsPerExample: Double
    var width: Int
    static let decodeBytesPerSecond = 1e9
    static let secondsPerFeatureExample = 8e-6
    static let f32FlopsPerSecond = 150e9
    static let bf16FlopsPerSecond = 300e9

    func seconds(_ members: [PlannedTrial]) -> Double {
        let epochs = Double(members[0].trial.training.epochs)
        let features = Set(members.flatMap(\.features)).count
        let decode = bytesPerFeature * Double(features * examples) * epochs / Self.decodeBytesPerSecond
        let seen = (Double(trainExamples) + Double(examples - trainExamples) / 3) * epochs
        let compute = members.reduce(0.0) { sum, p in
            sum + seen * (Self.secondsPerFeatureExample * Double(max(p.features.count, 1)) + p.flops.f32 / Self.f32FlopsPerSecond
                          + p.flops.bf16 / Self.bf16FlopsPerSecond)
        }
        return decode + compute
    }

    /// The pass's heads (they share a batch size) and its decoded batches, each feature decoded
    /// once for all of them.
    func memoryBytes(_ members: [PlannedTrial]) -> Int {
        let rows = rowsPerExample * Double(members[0].trial.training.batchSize)
        let batches = WorkingSet.batches(features: Set(members.flatMap(\.features)).count, rows: rows, width: width)
        return Int(min(batches, Double(1 << 50))) + members.reduce(0) { $0 + $1.memoryBytes }
    }
}
