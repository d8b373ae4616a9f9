// The contract between the trainer and a side network. A head owns its parameters, says which
// cached features it reads, and maps a batch to logits on a tape; the trainer owns the loss, the
// optimiser and the data. Heads never see the backbone: everything they need beyond activations
// comes from the cache manifest through `HeadContext`.
import ActivationStore
import Autodiff
import Foundation
import OneDNN
import TensorCore

// Blobs (ActivationStore.Blob) are named tensors computed from the backbone's weights at
// extraction time (LST's pruned blocks, the top blocks for the consolidator).
// A blob's contents are checked where a head reads them: one written by a faulty tool, or damaged
// in a cache from before blobs had checksums, had crashed fit, eval and export (a zero head
// count, a matrix of the wrong shape).
extension Blob {
    /// A tensor that must be present with the given shape.
    public func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
        guard let t = tensors[name] else { throw HeadError("\(label) has no tensor \(name)") }
        guard t.shape == shape else { throw HeadError("\(label): \(name) has shape \(t.shape), expected \(shape)") }
        return t
    }

    /// A matrix that must be present, of any size.
    public func matrix(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw HeadError("\(label) has no tensor \(name)") }
        guard t.rank == 2, t.shape.allSatisfy({ $0 > 0 }) else { throw HeadError("\(label): \(name) has shape \(t.shape), expected a matrix") }
        return t
    }

    /// An integer of the metadata, at least `minimum`.
    public func int(_ key: String, atLeast minimum: Int) throws -> Int {
        guard let text = metadata[key], let v = Int(text) else { throw HeadError("\(label) has no integer \(key) in its metadata") }
        guard v >= minimum else { throw HeadError("\(label): \(key) is \(v) in its metadata, expected at least \(minimum)") }
        return v
    }

    /// A positive, finite number of the metadata.
    public func positiveFloat(_ key: String) throws -> Float {
        guard let text = metadata[key], let v = Float(text) else { throw HeadError("\(label) has no number \(key) in its metadata") }
        guard v > 0, v.isFinite else { throw HeadError("\(label): \(key) is \(text) in its metadata, expected a positive number") }
        return v
    }
}

/// What a head may know about the cache it trains on.
public struct HeadContext: Sendable {
    /// Backbone width D and block count L.
    public var width: Int
    public var layerCount: Int
    /// The hidden-state layers stored (0 = embedding output).
    public var layers: [Int]
    /// Extra streams stored per block ("attn", "mlp").
    public var streams: [String]
    public var layout: RowLayout
    /// The backbone's own pooling (mean for sentence encoders, cls for ViT).
    public var pooling: PoolingMode
    public var classes: Int
    /// N_max: the longest sequence the backbone could produce for this cache.
    public var maxTokens: Int?
    /// The backbone's attention head count (for side blocks of the backbone's own type).
    public var backboneHeads: Int?
    /// The arithmetic the backbone ran with for this cache; heads that re-run its frozen blocks
    /// (the consolidator) use the same by default.
    public var compute: ComputePath
    /// Names of the weight blobs stored in the cache.
    public var blobNames: [String]
    /// Loads a blob by name.
    public var loadBlob: @Sendable (String) throws -> Blob?
    /// The head is built only to plan a sweep (features, parameters, `stepFlops`): what depends on
    /// this CPU is decided from the cache and the settings alone, and nothing that needs the CPU's
    /// instructions is built, so that the shards of a job array plan alike on any node.
    public var planning = false

    public init(width: Int, layerCount: Int, layers: [Int], streams: [String] = [], layout: RowLayout, pooling: PoolingMode,
                classes: Int, maxTokens: Int? = nil, backboneHeads: Int? = nil, compute: ComputePath = .f32, blobNames: [String] = [],
                loadBlob: @escaping @Sendable (String) throws -> Blob? = { _ in nil }) {
        self.width = width
        self.layerCount = layerCount
        self.layers = layers
        self.streams = streams
        self.layout = layout
        self.pooling = pooling
        self.classes = classes
        self.maxTokens = maxTokens
        self.backboneHeads = backboneHeads
        self.compute = compute
        self.blobNames = blobNames
        self.loadBlob = loadBlob
    }

    /// Resolves a `layers` hyperparameter (`all`, `last`, `0,3,6`, `1-6`) against the stored layers.
    public func resolveLayers(_ text: String, head: String, key: String = "layers") throws -> [Int] {
        let wanted: [Int]
        do {
            switch try LayerList(text) {
            case .all: wanted = layers
            case .last: wanted = [layerCount]
            case .parts(let parts):
                // Checked before a range is expanded (0-99999999999 had been allocated).
                if let outside = parts.first(where: { $0.layers.lowerBound < 0 || $0.layers.upperBound > layerCount }) {
                    throw HeadError("--set \(key)=\(text) for head \(head): '\(outside.text)' is outside the backbone's layers 0-\(layerCount)")
                }
                wanted = Array(Set(parts.map(\.layers).joined())).sorted()
            }
        } catch let fault as LayerList.Fault {
            switch fault.reason {
            case .notALayer: throw HeadError("--set \(key)=\(text) for head \(head): '\(fault.part)' is not a layer or a range a-b")
            case .emptyRange: throw HeadError("--set \(key)=\(text) for head \(head): range \(fault.part) is empty")
            }
        }
        try requireLayers(wanted, head: head)
        return wanted
    }

    /// The blocks a `layers` hyperparameter names, for heads that adapt blocks: layer 0 (the
    /// embedding output) is left out, and at least one block must remain.
    public func resolveBlocks(_ text: String, head: String) throws -> [Int] {
        let blocks = try resolveLayers(text, head: head).filter { $0 > 0 }
        guard !blocks.isEmpty else {
            throw HeadError("--set layers=\(text) for head \(head): names no block (layer 0 is the embedding output); give layers from 1")
        }
        return blocks
    }

    /// Throws, naming the extract flag, when a layer the head reads is not in the cache.
    public func requireLayers(_ wanted: [Int], head: String) throws {
        let missing = wanted.filter { !layers.contains($0) }
        guard missing.isEmpty else {
            throw HeadError("head \(head) reads layers \(missing) that the cache does not store (it has \(layers)); "
                            + "extract again with --layers all, or a --layers list that includes them")
        }
    }

    /// Throws, naming the extract flag, when the cache holds pooled rows but the head mixes tokens.
    public func requireAllTokens(head: String) throws {
        guard layout == .tokens else {
            throw HeadError("head \(head) reads every token, but the cache stores '\(layout.rawValue)' rows; extract again with --tokens all")
        }
    }

    /// The named blob, or an error that says which extract flag writes it.
    /// Its tensors are finite: a NaN in a frozen block had read as the fit diverging.
    public func requireBlob(_ name: String, head: String, flag: String) throws -> Blob {
        guard blobNames.contains(name) else {
            let stored = blobNames.isEmpty ? "none" : blobNames.joined(separator: ", ")
            throw HeadError("head \(head) needs the cache blob \(name), which this cache lacks (it has \(stored)); extract again with \(flag)")
        }
        guard let blob = try loadBlob(name) else {
            // A listed blob the cache lacks: a missing one had read as a cache without it, and the
            // advice to extract again failed on the manifest.
            throw HeadError("head \(head) reads blob \(name), which the cache's manifest lists but the cache does not hold: "
                            + "the cache is damaged; remove it and extract it again")
        }
        if let tensor = blob.firstNonFiniteTensor() {
            throw HeadError("\(blob.label): \(tensor) holds a NaN or an infinity; the cache is damaged: remove it and extract it again")
        }
        return blob
    }
}

/// A trainable side network or probe.
public protocol Head: AnyObject {
    /// The registered name (`linear`, `losa`, …).
    var name: String { get }
    var parameters: ParameterSet { get }
    /// The cached features each batch must carry.
    var features: [Feature] { get }
    /// Maps a batch to logits [B, classes]. Stochastic parts (dropout) draw from `tape.rng` and
    /// switch off when `tape.isTraining` is false.
    func logits(_ batch: Batch, on tape: Tape) -> Variable
    /// The deployable tensors `sidecar export` writes (default: the parameters as named).
    func exportedTensors() throws -> [(String, Tensor)]
    /// Loads what `exportedTensors` wrote (default: the parameters by name).
    func loadExported(_ tensors: [String: Tensor], source: String) throws
    /// The fixed number of parts each batch is split into for training and evaluation (see
    /// `HeadKind.batchShards`).
    var batchShards: Int { get }
    /// The floating-point operations of one training step per example, forward and backward, for
    /// a sweep's time estimate; `tokens` is the cache's mean rows per example. The default counts
    /// each parameter once per example (a probe on pooled features).
    func stepFlops(tokens: Double) -> StepFlops
}

/// Operations of a training step, by the arithmetic that runs them.
public struct StepFlops: Sendable, Equatable {
    public var f32: Double
    /// Products run in bf16 (oneDNN), several times faster than f32 ones.
    public var bf16: Double

    public init(f32: Double, bf16: Double = 0) {
        self.f32 = f32
        self.bf16 = bf16
    }

    /// Every parameter in one multiply-add per token forward and two backward (the input's and
    /// its own gradient): the side networks' linears, which dominate their steps.
    public static func perToken(parameters: Int, tokens: Double) -> StepFlops {
        StepFlops(f32: 6 * Double(parameters) * tokens)
    }
}

extension Head {
    public func stepFlops(tokens: Double) -> StepFlops {
        StepFlops(f32: 6 * Double(parameterCount))
    }

    public func exportedTensors() -> [(String, Tensor)] {
        parameters.ids.map { (parameters.entry($0).name, parameters.tensor($0)) }
    }

    /// Trainable scalars.
    public var parameterCount: Int { parameters.count }
}
extension ParameterSet {
    /// Overwrites every parameter from `tensors` by name; the names must match exactly. Parameters
    /// named in `leaving` are neither read nor accepted (a form that folded them into others).
    public func load(_ tensors: [String: Tensor], source: String, leaving: (String) -> Bool = { _ in false }) throws {
        let names = Set(entries.map(\.name).filter { !leaving($0) })
        if let extra = tensors.keys.sorted().first(where: { !names.contains($0) }) {
            throw HeadError("\(source): tensor \(extra) is not a parameter of this head")
        }
        for id in ids where names.contains(entry(id).name) {
            let entry = entry(id)
            guard let t = tensors[entry.name] else { throw HeadError("\(source): parameter \(entry.name) is missing") }
            guard t.shape == entry.shape else {
                throw HeadError("\(source): parameter \(entry.name) has shape \(t.shape), the head expects \(entry.shape)")
            }
            set(id, t)
        }
    }
}

extension Head {
    /// The default deployable form is the parameters themselves.
    public func loadExported(_ tensors: [String: Tensor], source: String) throws {
        try parameters.load(tensors, source: source)
    }
}

extension Head where Self: HeadKind {
    public var name: String { Self.name }
    public var batchShards: Int { Self.batchShards }
}

/// A head kind as the registry knows it.
public protocol HeadKind: SendableMetatype {
    static var name: String { get }
    /// One line for `sidecar fit --help` and `sidecar heads`.
    static var summary: String { get }
    static var schema: [Hyperparameter] { get }
    /// Learning rate used when `fit` is given none (each head's defaults must train well untuned).
    static var defaultLearningRate: Float { get }
    /// Builds the head for a cache; throws HeadError when the cache lacks what it reads.
    static func make(_ hyperparameters: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head
    /// How many fixed parts (consecutive examples, about equal in rows) the trainer splits each
    /// batch into, each part's forward and backward on its own tape, possibly on its own core; the
    /// gradients are summed in part order. A property of the head kind, never of the machine, so
    /// that a fit's numbers are the same on any core count. Splitting only pays where a step's
    /// compute is large against the cost of slicing the batch and summing a second gradient (not
    /// for probes).
    /// A head that splits must compute each example alone: nothing may mix examples in a batch.
    static var batchShards: Int { get }
    /// Refuses, before a head is trained, settings that `make` accepts so that heads fitted by
    /// earlier versions still load (by default, a `pool` the cache's rows cannot apply).
    static func checkForTraining(_ hyperparameters: Hyperparameters, context: HeadContext) throws
}

extension HeadKind {
    public static var batchShards: Int { 1 }

    public static func checkForTraining(_ hyperparameters: Hyperparameters, context: HeadContext) throws {
        try hyperparameters.checkPoolingForTraining(context: context)
    }
}
