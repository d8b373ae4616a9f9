// Consolidator (Hao et al., ICLR 2023) as the "top-K consolidator" of methods-reference §5.3: the
// cache holds z_{L−K}; the top K blocks are re-run from frozen copies stored in the cache, with
// grouped-connection branches (optional channel shuffle, several group counts, per-example branch
// drop) beside every linear layer, and their layer norms and linear biases tuned, as the official
// code tunes them. Only those K blocks are backpropagated through. After training the branches
// consolidate into the frozen matrices (W′ = W + Σ_j dense(branch_j)), so the deployed blocks are
// plain linears with no extra cost. The frozen products run in the arithmetic the backbone ran
// with for the cache (bf16 through oneDNN for a bf16 cache, where the CPU has bf16 instructions).
import ActivationStore
import Autodiff
import OneDNN
import TensorCore

public final class ConsolidatorHead: Head, HeadKind {
    public static let name = "consolidator"
    public static let summary = "Consolidator: grouped-connection branches in the top K blocks, merged into the weights after training"
    // groups 48 and lr 5e-3 from a sweep on the demo data (8 epochs): 0.860 test accuracy, against
    // 0.844 for the paper code's two channels per group (192 on MiniLM's 384) at 2e-3.
    public static let schema: [Hyperparameter] = [
        Hyperparameter("K", .int(1...64), default: "1", "top blocks re-run with branches (the cache needs --top-blocks ≥ K)"),
        Hyperparameter("groups", .ints(1...65536), default: "48", "group count of each branch (several: one branch each)"),
        Hyperparameter("shuffle", .bool, default: "false", "channel shuffle before each grouped branch"),
        Hyperparameter("branch_drop", .float(0...0.95), default: "0.1", "probability of dropping a branch per example"),
        Hyperparameter("block_dropout", .float(0...0.9), default: "0",
                       "dropout on the re-run blocks' attention and feed-forward outputs, where fine-tuning the backbone applies its hidden dropout").addedAfterResults(),
        Hyperparameter("compute", .choice(["auto", "f32", "bf16"]), default: "auto",
                       "the frozen products; auto = the cache's compute path (bf16 only where this CPU has bf16 instructions)"),
        .pool,
        .dropout("0"),
    ]
    public static let defaultLearningRate: Float = 5e-3
    public static let batchShards = 2

    /// One frozen linear with its trainable bias and grouped branches.
    struct Consolidated {
        /// W [out, in]. In bf16 no f32 copy is kept: the f32 matrices stay in the cache until a
        /// merge reads them (7 MB for one MiniLM block, against the head's 50).
        let frozen: FrozenMatrix
        let shape: [Int]
        let bias: ParameterSet.ID          // b, tuned
        let branches: [(weight: ParameterSet.ID, bias: ParameterSet.ID, permutation: [Int]?)]
    }

    public let parameters = ParameterSet()
    public let features: [Feature]
    let blocks: [Int]
    let shape: BlockShape
    var linears: [String: Consolidated] = [:]
    var norms: [String: Norm] = [:]
    let finalNorm: Norm?
    let classifier: Dense
    let pooling: PoolingMode
    let branchDrop: Float
    let blockDropout: Float
    let dropout: Float
    /// Whether the frozen products run in bf16 (in a head built for planning, would run: its
    /// matrices are kept as they are).
    let bf16: Bool
    /// The merged block linears and biases, once loaded from an exported head (training never
    /// sets it).
    private var deployed: [String: (weight: FrozenMatrix, bias: Tensor)]?
    /// The cache's top-blocks blob again, for a merge in bf16 mode.
    private let reloadBlob: () throws -> Blob

    public static func make(_ h: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head {
        try context.requireAllTokens(head: name)
        let k = h.int("K")
        guard k <= context.layerCount else {
            throw HeadError("--set K=\(k) for head consolidator: the backbone has \(context.layerCount) blocks; K is at most \(context.layerCount)")
        }
        let reload = { try context.requireBlob("top_blocks", head: name, flag: "--top-blocks \(k)") }
        let blob = try reload()
        let stored = try blob.int("count", atLeast: 1)
        guard k <= stored else {
            throw HeadError("--set K=\(k) for head consolidator: the cache stores only the top \(stored) blocks; extract again with --top-blocks \(k)")
        }
        try context.requireLayers([context.layerCount - k], head: name)
        let bf16 = switch h.string("compute") {
        case "f32": false
        case "bf16": true
        // A bf16 cache on a CPU without bf16 instructions trains in f32: emulated bf16 is slower.
        default: context.compute == .bf16 && (context.planning || OneDNN.hasBF16Instructions)
        }
        do {
            return try ConsolidatorHead(blob: blob, blocks: Array((context.layerCount - k + 1)...context.layerCount),
                                        groups: h.ints("groups"), shuffle: h.bool("shuffle"), branchDrop: h.float("branch_drop"),
                                        blockDropout: h.float("block_dropout"), pooling: poolingMode(h, context), dropout: h.float("dropout"), bf16: bf16,
                                        reloadBlob: reload, context: context, seed: seed)
        } catch let error as OneDNNError {
            throw HeadError("--set compute=\(h.string("compute")) for head consolidator: bf16 products: \(error)")
        }
    }

    init(blob: Blob, blocks: [Int], groups: [Int], shuffle: Bool, branchDrop: Float, blockDropout: Float, pooling: PoolingMode,
         dropout: Float, bf16: Bool, reloadBlob: @escaping () throws -> Blob, context: HeadContext, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let width = context.width
        shape = try BlockShape(blob: blob)
        try shape.checkBlocks(in: blob, blocks, width: context.width)
        self.blocks = blocks
        self.pooling = pooling
        self.branchDrop = branchDrop
        self.blockDropout = blockDropout
        self.dropout = dropout
        self.bf16 = bf16
        self.reloadBlob = reloadBlob
        features = [.hidden(blocks[0] - 1)]
        for l in blocks {
            for linear in blockLinearNames(l) {
                let w = try blob.matrix(linear + ".weight")
                let (out, inputs) = (w.shape[0], w.shape[1])
                let b = try blob.tensor(linear + ".bias", [out])
                var branches: [(ParameterSet.ID, ParameterSet.ID, [Int]?)] = []
                for (j, g) in groups.enumerated() {
                    guard inputs % g == 0, out % g == 0 else {
                        throw HeadError("--set groups=\(groups.map(String.init).joined(separator: ",")) for head consolidator: \(g) groups do not divide \(linear) (\(inputs) → \(out))")
                    }
                    let bound: Float = 1e-3  // the official code's branch init U(−1e−3, 1e−3)
                    let weight = parameters.add("\(linear).branch.\(j).weight",
                                                Tensor.randomUniform([g, out / g, inputs / g], low: -bound, high: bound, using: &rng))
                    let bias = parameters.add("\(linear).branch.\(j).bias",
                                              Tensor.randomUniform([out], low: -bound, high: bound, using: &rng), decays: false)
                    branches.append((weight, bias, shuffle ? Self.shufflePermutation(channels: inputs, groups: g) : nil))
                }
                linears[linear] = Consolidated(frozen: try FrozenMatrix(w, bf16: bf16 && !context.planning), shape: w.shape,
                                               bias: parameters.add(linear + ".bias", b, decays: false),
                                               branches: branches.map { (weight: $0.0, bias: $0.1, permutation: $0.2) })
            }
            let (n1, n2) = shape.layout.normNames(l)
            for n in [n1, n2] {
                norms[n] = Norm(parameters, n, width: width, eps: shape.eps,
                                gain: try blob.tensor(n + ".weight", [width]),
                                bias: try blob.tensor(n + ".bias", [width]))
            }
        }
        if shape.layout == .preLN {
            finalNorm = Norm(parameters, "final_norm", width: width, eps: shape.eps,
                             gain: try blob.tensor("final_norm.weight", [width]),
                             bias: try blob.tensor("final_norm.bias", [width]))
        } else {
            finalNorm = nil
        }
        classifier = Dense(parameters, "classifier", in: width, out: context.classes, rng: &rng)
    }

    /// The frozen products forward, and backward for their inputs' gradients except where the input
    /// is the cache's own rows (the first block's Q, K and V in a post-LN block); the branches,
    /// norms and biases per token like any side network's parameters. Attention over a dozen tokens
    /// is left out: T·D per token, against D² for one product.
    public func stepFlops(tokens: Double) -> StepFlops {
        // In integers, so that the dictionary's order cannot change the sum (sharded sweeps must
        // agree on their estimates).
        var frozen = 0
        for (name, layer) in linears {
            let readsCache = shape.layout == .postLN && name.hasPrefix("block.\(blocks[0]).attention.") && !name.hasSuffix(".output")
            frozen += 2 * layer.shape[0] * layer.shape[1] * (readsCache ? 1 : 2)
        }
        let trained = StepFlops.perToken(parameters: parameterCount, tokens: tokens)
        let perExample = Double(frozen) * tokens
        return bf16 ? StepFlops(f32: trained.f32, bf16: perExample) : StepFlops(f32: trained.f32 + perExample)
    }

    /// ShuffleNet's channel shuffle as an input permutation: x′[j·g + i] = x[i·(C/g) + j].
    static func shufflePermutation(channels: Int, groups g: Int) -> [Int] {
        let per = channels / g
        var permutation = [Int](repeating: 0, count: channels)
        for i in 0..<g { for j in 0..<per { permutation[j * g + i] = i * per + j } }
        return permutation
    }

    public func logits(_ batch: Batch, on tape: Tape) -> Variable {
        logits(batch, on: tape, merged: deployed)
    }

    /// With `merged` (from `mergedWeights()`), runs the consolidated blocks instead: one plain
    /// linear per layer and no branches, which must give the same eval-mode logits (up to bf16's
    /// rounding of W + branches against W's, where the merged products run in bf16).
    func logits(_ batch: Batch, on tape: Tape, merged: [String: (weight: FrozenMatrix, bias: Tensor)]?) -> Variable {
        // Branch drop is per example: every token of an example sees the same branch kept or dropped.
        let segments = batch.segments
        func dropScales() -> [Float]? {
            guard tape.isTraining, branchDrop > 0 else { return nil }
            var mask = [Float](repeating: 0, count: segments.totalRows)
            for b in 0..<segments.count where tape.rng.nextUniform() >= branchDrop {
                for t in segments.range(b) { mask[t] = 1 / (1 - branchDrop) }
            }
            return mask
        }
        func linear(_ name: String, _ x: Variable) -> Variable {
            let layer = linears[name]!
            if let merged {
                let (weight, bias) = merged[name]!
                return weight(x, bias: tape.constant(bias))
            }
            var y = layer.frozen(x, bias: tape.parameter(parameters, layer.bias))
            for branch in layer.branches {
                y = y.addingGroupedLinear(x, tape.parameter(parameters, branch.weight), tape.parameter(parameters, branch.bias),
                                          permutation: branch.permutation, rowScale: dropScales())
            }
            return y
        }
        var x = tape.constant(batch.tensor(features[0]))
        for l in blocks {
            x = transformerBlock(x, block: l, shape: shape, segments: segments, dropout: blockDropout, linear: linear,
                                 norm: { name, x in norms[name]!(x, parameters) })
        }
        if let finalNorm { x = finalNorm(x, parameters) }
        return classifier(pool(x, batch, pooling).dropout(dropout), parameters)
    }

    /// Eval-mode logits through the consolidated blocks (plain linears, no branches); with
    /// `includeBranches: false`, through the frozen matrices with the tuned biases only.
    public func mergedLogits(_ batch: Batch, includeBranches: Bool = true) throws -> Tensor {
        let tape = Tape(training: false)
        let merged = try mergedWeights(includeBranches: includeBranches)
        return logits(batch, on: tape, merged: linears.keys.reduce(into: [:]) { out, name in
            out[name] = (.f32(merged[name + ".weight"]!), merged[name + ".bias"]!)
        }).value
    }

    /// Consolidation: each linear's branches folded into its frozen matrix and bias.
    public func mergedWeights(includeBranches: Bool = true) throws -> [String: Tensor] {
        let blob = bf16 ? try reloadBlob() : nil
        var out: [String: Tensor] = [:]
        for (name, layer) in linears {
            var stored: Tensor?
            if case .f32(let w) = layer.frozen { stored = w }
            guard var w = stored ?? blob?.tensors[name + ".weight"], w.shape == layer.shape else {
                throw HeadError("\(blob?.label ?? "blob top_blocks") no longer holds \(name).weight of shape \(layer.shape)")
            }
            var b = parameters.tensor(layer.bias)
            for branch in layer.branches where includeBranches {
                let dense = GroupedLinearKernel.denseWeight(parameters.tensor(branch.weight), permutation: branch.permutation)
                for i in 0..<w.count { w.scalars[i] += dense.scalars[i] }
                let bb = parameters.tensor(branch.bias)
                for i in 0..<b.count { b.scalars[i] += bb.scalars[i] }
            }
            out[name + ".weight"] = w
            out[name + ".bias"] = b
        }
        return out
    }

    /// The deployable form: merged block linears, tuned norms, the classifier.
    public func exportedTensors() throws -> [(String, Tensor)] {
        let merged = try mergedWeights().sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let rest = parameters.ids.map { (parameters.entry($0).name, parameters.tensor($0)) }.filter { !isFolded($0.0) }
        return merged + rest
    }

    /// Branches and the block linears' biases live on only inside the merged matrices.
    private func isFolded(_ parameter: String) -> Bool {
        parameter.contains(".branch.") || linears.keys.contains(String(parameter.dropLast(".bias".count)))
    }

    /// Loads the merged form: from then on the head runs the consolidated blocks.
    public func loadExported(_ tensors: [String: Tensor], source: String) throws {
        var merged: [String: Tensor] = [:]
        for (name, layer) in linears {
            for (suffix, shape) in [(".weight", layer.shape), (".bias", [layer.shape[0]])] {
                guard let t = tensors[name + suffix] else { throw HeadError("\(source): merged tensor \(name + suffix) is missing") }
                guard t.shape == shape else { throw HeadError("\(source): \(name + suffix) has shape \(t.shape), the head expects \(shape)") }
                merged[name + suffix] = t
            }
        }
        try parameters.load(tensors.filter { merged[$0.key] == nil }, source: source, leaving: isFolded)
        deployed = try linears.keys.reduce(into: [:]) { out, name in
            out[name] = (try FrozenMatrix(merged[name + ".weight"]!, bf16: bf16), merged[name + ".bias"]!)
        }
    }
}
