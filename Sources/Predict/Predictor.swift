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
    public let trained: TrainedHead
    public let head: any Head
    public let runner: BackboneRunner
    public let context: HeadContext
    private let tape = Tape(training: false)

    public var labels: [String] { trained.config.labels }

    /// Loads the head (a fit folder or an exported file) and its backbone. `backbone` defaults to
    /// the built-in MiniLM when the head was trained on it; a different backbone is refused unless
    /// `force`. The backbone computes as the head's cache was extracted; `compute` may only name
    /// that path, unless `force`. `offersForce` and `computeFlag` as for `BackboneRunner`.
    public init(head path: String, backbone: String? = nil, force: Bool = false, offersForce: Bool = true,
                compute: ComputePath? = nil, computeFlag: String? = nil) throws {
        trained = try TrainedHead.load(path)
        let settings = try trained.extraction()
        let spec: String
        if let backbone {
            spec = backbone
        } else if settings.backbone.name == "all-MiniLM-L6-v2" {
            spec = "minilm"
        } else {
            throw HeadError("\(path) was trained on backbone \(settings.backbone.name); give its folder with --backbone")
        }
        let runner = try BackboneRunner(backbone: spec, settings: settings, force: force, offersForce: offersForce,
                                        compute: compute, computeFlag: computeFlag)
        self.runner = runner
        let metadata = trained.config.blobMetadata ?? [:]
        context = try settings.headContext(path: path, loadBlob: { name in
            try runner.blob(name, metadata: metadata[name]).map { content in
                Blob(tensors: Dictionary(content.tensors.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a }), metadata: content.metadata)
            }
        })
        head = try trained.instantiate(context: context)
    }

    /// Logits [inputs, classes] in eval mode.
    public func logits(_ inputs: [BackboneRunner.Input]) throws -> Tensor {
        let features = head.features
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
        // Emptied after the forward, not before the next: its steps hold the batch's activations,
        // which would otherwise stay until the next call.
        defer { tape.reset() }
        return head.logits(batch, on: tape).value
    }
}

/// Softmax probabilities of one row of logits.
public func softmax(_ row: ArraySlice<Float>) -> [Double] {
    let top = Double(row.max() ?? 0)
    let e = row.map { exp(Double($0) - top) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
}
