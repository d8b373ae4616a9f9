// Inference with a trained head on raw inputs: the frozen backbone, run only to the deepest layer
// the head reads, produces the rows its cache would have held (in the cache's arithmetic, f32 or
// bf16), and the head maps them to logits. The only place where stage one's encoders and stage
// two's heads meet.
import ActivationStore
import Autodiff
import Extract
import Foundation
import OneDNN
import SideNetworks
import TensorCore
import Training

public final class Predictor {
    /// The first head, whose dataset settings (text columns, labels) the inputs are read by.
    public let trained: TrainedHead
    public var head: any Head { heads[0] }
    /// The heads given, in order: one, or an ensemble scored by the mean of their probabilities.
    public let heads: [any Head]
    public let runner: BackboneRunner
    /// The first head's context; its width and row layout are every head's (checked at init).
    public let context: HeadContext
    private let tape = Tape(training: false)

    public var labels: [String] { trained.config.labels }

    /// Loads the head (a fit folder or an exported file) and its backbone. `backbone` defaults to
    /// the built-in MiniLM when the head was trained on it; a different backbone is refused unless
    /// `force`. The backbone computes as the head's cache was extracted; `compute` may only name
    /// that path, unless `force`. `offersForce` and `computeFlag` as for `BackboneRunner`.
    public convenience init(head path: String, backbone: String? = nil, force: Bool = false, offersForce: Bool = true,
                            compute: ComputePath? = nil, computeFlag: String? = nil) throws {
        try self.init(heads: [path], backbone: backbone, force: force, offersForce: offersForce, compute: compute, computeFlag: computeFlag)
    }

    /// Several heads as one ensemble, as `sidecar eval` scores them: the backbone runs once per
    /// batch, to the deepest layer any of them reads. They must have been trained on the same
    /// features of the same backbone, computed the same way (the first head's settings run it).
    public init(heads paths: [String], backbone: String? = nil, force: Bool = false, offersForce: Bool = true,
                compute: ComputePath? = nil, computeFlag: String? = nil) throws {
        precondition(!paths.isEmpty, "a prediction with no head")
        let all = try paths.map { try TrainedHead.load($0) }
        try TrainedHead.checkDistinct(all, paths: paths)
        trained = all[0]
        let path = paths[0]
        let settings = try trained.extraction()
        for (other, otherPath) in zip(all, paths).dropFirst() {
            try other.checkCompatible(with: settings, cachePath: "the cache \(path) was trained on")
            let otherSettings = try other.extraction()
            // Column names say nothing of the features, so a cache may be read through others; but
            // the inputs here are read once, by the first head's columns, and a head trained on
            // another pair column would lose its second text (or get one it never had).
            for key in ["text_column", "text_pair_column"] {
                let (firstColumn, otherColumn) = (settings.preprocessing[key] ?? "", otherSettings.preprocessing[key] ?? "")
                guard firstColumn == otherColumn else {
                    throw HeadError("\(otherPath) was trained with \(key) \"\(otherColumn)\", \(path) with \"\(firstColumn)\"; "
                                    + "the heads of one prediction read the same inputs")
                }
            }
            let (otherCompute, firstCompute) = (try ComputePath.recorded(otherSettings.compute), try ComputePath.recorded(settings.compute))
            // As for one head, --compute with --force runs them all on the path it names.
            guard otherCompute == firstCompute || (force && compute != nil) else {
                throw HeadError("\(otherPath) was trained on activations computed in \(otherCompute.rawValue), \(path) in \(firstCompute.rawValue); "
                                + "the heads of one prediction share one run of the backbone\(offersForce ? " (or name one with --compute and --force)" : "")")
            }
        }
        let spec: String
        if let backbone {
            spec = backbone
        } else if settings.backbone.name == "all-MiniLM-L6-v2" || BackboneRunner.isBuiltInMiniLM(settings.backbone) {
            spec = "minilm"
        } else {
            throw HeadError("\(path) was trained on backbone \(settings.backbone.name); give its folder with --backbone")
        }
        let runner = try BackboneRunner(backbone: spec, settings: settings, force: force, offersForce: offersForce,
                                        compute: compute, computeFlag: computeFlag)
        self.runner = runner
        // Heads may read different blobs, or one blob with other metadata (the top blocks of
        // caches extracted with other counts): each loads its own by what it recorded.
        let contexts = try zip(all, paths).map { trained, path in
            let metadata = trained.config.blobMetadata ?? [:]
            return try trained.extraction().headContext(path: path, loadBlob: { name in
                guard let content = try runner.blob(name, metadata: metadata[name]) else {
                    throw HeadError("\(path): config.json records no count of blocks for blob \(name) (blob_metadata), "
                                    + "which predict computes from the backbone; the head folder is damaged: fit it again")
                }
                return Blob(tensors: Dictionary(content.tensors.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a }),
                            metadata: content.metadata, label: "blob \(name) computed from the backbone")
            })
        }
        heads = try zip(all, contexts).map { try $0.instantiate(context: $1) }
        context = contexts[0]
    }

    /// Logits [inputs, classes] in eval mode; an ensemble's are the logarithms of its heads' mean
    /// class probabilities (`Evaluation.meanProbabilityLogits`).
    public func logits(_ inputs: [BackboneRunner.Input]) throws -> Tensor {
        let features = Feature.union(heads.map(\.features))
        let keys = features.map { feature -> (layer: Int, stream: ActivationStore.Stream) in
            switch feature {
            case .hidden(let l): (l, .hidden)
            case .attention(let l): (l, .attention)
            case .mlp(let l): (l, .mlp)
            }
        }
        let activations = try runner.activations(inputs, blocks: keys)
        let segments = Segments(lengths: activations.map(\.rows))
        var tensors: [Feature: Tensor] = [:]
        for (k, feature) in features.enumerated() {
            tensors[feature] = Tensor(shape: [segments.totalRows, context.width], scalars: activations.flatMap { $0.blocks[k] })
        }
        let batch = Batch(labels: [Int](repeating: 0, count: inputs.count), segments: segments, features: tensors, layout: context.layout)
        // Emptied after each forward, not before the next: its steps hold the batch's activations,
        // which would otherwise stay until the next call.
        let outputs = heads.map { head in
            defer { tape.reset() }
            return head.logits(batch, on: tape).value
        }
        return outputs.count == 1 ? outputs[0] : Evaluation.meanProbabilityLogits(outputs)
    }
}

/// Softmax probabilities of one row of logits.
public func softmax(_ row: ArraySlice<Float>) -> [Double] {
    let top = Double(row.max() ?? 0)
    let e = row.map { exp(Double($0) - top) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
}
