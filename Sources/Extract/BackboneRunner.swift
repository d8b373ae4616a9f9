// The frozen backbone on raw inputs, outside any cache (`sidecar predict`): the same tokeniser or
// image preprocessing, the same encoder and the same token policy as the extraction that made a
// cache, so an input gets the rows its cache record would hold, computed in the arithmetic the cache
// records (f32 or bf16). Only the layers and streams asked for are computed, and the encoder stops
// at the deepest of them.
import ActivationStore
import Datasets
import Encoders
import Foundation
import OneDNN
import TensorCore

public final class BackboneRunner: @unchecked Sendable {
    /// One raw input.
    public enum Input: Sendable {
        case text(String, pair: String?)
        case image(RGBImage)
    }

    /// One input's rows per requested block, as `blocks[k]` = rows × width values.
    public struct Activations: Sendable {
        public let rows: Int
        public let blocks: [[Float]]
    }

    public let settings: ExtractionSettings
    /// The identity of the backbone folder actually loaded.
    public let identity: BackboneIdentity
    /// The arithmetic of the encoder's dense products.
    public let compute: ComputePath
    private let bert: BertEncoder?
    private let tokenizer: WordPieceTokenizer?
    private let vit: ViTEncoder?
    private let preprocessing: ImagePreprocessing?
    private let maxLength: Int

    /// Loads `backbone` ("minilm" or a folder) for inputs prepared as `settings` says, computing as
    /// they record unless `compute` names another path. Throws when the folder is not the backbone
    /// the settings record, or `compute` is not the recorded path, unless `force`; the advice names
    /// `--force` only where the command has it (`offersForce`). `computeFlag` is the --compute value
    /// as given (auto, before it was resolved), for the message.
    public init(backbone: String, settings: ExtractionSettings, force: Bool = false, offersForce: Bool = true,
                compute: ComputePath? = nil, computeFlag: String? = nil) throws {
        self.settings = settings
        let orForce = offersForce ? ", or --force to run anyway" : ""
        let recordedCompute: ComputePath
        do { recordedCompute = try ComputePath.recorded(settings.compute) } catch { throw ExtractError("\(error)") }
        if let compute, compute != recordedCompute, !force {
            let given = computeFlag.map { $0 == compute.rawValue ? $0 : "\($0) (\(compute.rawValue) here)" } ?? compute.rawValue
            throw ExtractError("--compute \(given): the head was trained on activations extracted with --compute "
                               + "\(recordedCompute.rawValue); predict computes the same way (leave out --compute)\(orForce)")
        }
        let computePath = compute ?? recordedCompute
        self.compute = computePath
        let folder = try BackboneFolder.resolve(backbone)
        let files = try BackboneFiles(folder: folder)
        let (configHash, weightsHash) = (files.configHash, files.weightsHash)
        let recorded = settings.backbone
        if !force && (configHash != recorded.configHash || weightsHash != recorded.weightsHash) {
            throw ExtractError("backbone \(folder.path) is not the one the head was trained on: \(recorded.name) had config hash "
                               + "\(recorded.configHash) and weights hash \(recorded.weightsHash), this folder has \(configHash) and "
                               + "\(weightsHash); give that backbone with --backbone\(orForce)")
        }
        if ViTConfig.Family(architecture: recorded.architecture) != nil {
            let encoder = try ViTEncoder(folder: folder, compute: computePath)
            vit = encoder
            let imagePreprocessing = try ImagePreprocessing(preprocessorConfigFile: folder.appendingPathComponent("preprocessor_config.json").path)
            preprocessing = imagePreprocessing
            // Like the tokenizer's settings, preprocessor_config.json is outside the hashes.
            let json = JSONEncoder()
            json.outputFormatting = [.sortedKeys]
            let now = String(decoding: try json.encode(imagePreprocessing), as: UTF8.self)
            if !force, let trained = settings.preprocessing["image"], trained != now {
                let fields = ExtractionSettings.fieldDifferences(now, trained)?.map { "\($0.field) \($0.a), trained with \($0.b)" }
                throw ExtractError("backbone \(folder.path) preprocesses images otherwise than the head's cache: "
                                   + (fields?.joined(separator: "; ") ?? "\(now), trained with \(trained)")
                                   + " (its preprocessor_config.json); give the backbone the head was trained on\(orForce)")
            }
            bert = nil
            tokenizer = nil
            maxLength = 0
            identity = files.identity(name: folder.lastPathComponent, architecture: encoder.config.family.architecture, hiddenSize: encoder.config.hiddenSize,
                                      layerCount: encoder.config.layerCount)
        } else {
            let encoder = try BertEncoder(folder: folder, compute: computePath)
            bert = encoder
            let tokenizer = try WordPieceTokenizer(directory: folder)
            self.tokenizer = tokenizer
            // The folder's tokenizer settings are not part of its config or weights hashes: a
            // folder that lowercases differently would pass them and split the text otherwise.
            let t = tokenizer.configuration
            let differing = [("lowercase", String(t.lowercase)), ("strip_accents", t.stripAccents.map(String.init) ?? "default"),
                             ("vocabulary", try BackboneFiles.vocabularyHash(folder: folder))]
                .filter { key, value in settings.preprocessing[key].map { $0 != value } ?? false }
            if !force && !differing.isEmpty {
                throw ExtractError("backbone \(folder.path) tokenizes otherwise than the head's cache: "
                                   + differing.map { "\($0.0) \($0.1), trained with \(settings.preprocessing[$0.0]!)" }.joined(separator: "; ")
                                   + " (its tokenizer_config.json and vocab.txt); give the backbone the head was trained on\(orForce)")
            }
            vit = nil
            preprocessing = nil
            maxLength = settings.preprocessing["max_length"].flatMap(Int.init) ?? 128
            identity = files.identity(name: folder.lastPathComponent, architecture: "bert", hiddenSize: encoder.config.hiddenSize,
                                      layerCount: encoder.config.layerCount)
        }
        guard identity.hiddenSize == recorded.hiddenSize, identity.layerCount == recorded.layerCount else {
            throw ExtractError("backbone \(folder.path) has width \(identity.hiddenSize) and \(identity.layerCount) layers; "
                               + "the head expects \(recorded.hiddenSize) and \(recorded.layerCount)")
        }
    }

    /// Whether `identity` is the built-in MiniLM's, by its hashes: a cache extracted from the
    /// package's folder given by path records the folder's name ("model"), not the model's.
    public static func isBuiltInMiniLM(_ identity: BackboneIdentity) -> Bool {
        guard let folder = try? BackboneFolder.resolve("minilm"), let files = try? BackboneFiles(folder: folder) else { return false }
        return files.configHash == identity.configHash && files.weightsHash == identity.weightsHash
    }

    /// Whether inputs are images (a ViT-family backbone) rather than text.
    public var takesImages: Bool { vit != nil }

    /// Whether the backbone's processor composites transparent images onto white (do_convert_rgb).
    public var imageAlphaOnWhite: Bool { preprocessing?.alphaOnWhite ?? false }

    /// The blocks `keys` (layer, stream) of each input, in input order.
    public func activations(_ inputs: [Input], blocks keys: [(layer: Int, stream: ActivationStore.Stream)]) throws -> [Activations] {
        guard !inputs.isEmpty, !keys.isEmpty else { return inputs.map { _ in Activations(rows: 0, blocks: []) } }
        if let deepest = keys.map(\.layer).max(), deepest > identity.layerCount {
            throw ExtractError("layer \(deepest) was asked for; the backbone has \(identity.layerCount)")
        }
        let width = identity.hiddenSize
        let layers = Set(keys.map(\.layer))
        let streams = Set(keys.compactMap { key -> EncoderStream? in
            switch key.stream {
            case .attention: .attention
            case .mlp: .mlp
            case .hidden: nil
            }
        })
        let outputs: EncoderOutputs
        var ranges: [Range<Int>] = []
        if let bert, let tokenizer {
            let encodings = try inputs.enumerated().map { i, input -> Encoding in
                guard case .text(let text, let pair) = input else { throw ExtractError("input \(i + 1) is an image; this backbone reads text") }
                return tokenizer.encode(text, pair: pair, maxLength: maxLength)
            }
            let segments = Segments(lengths: encodings.map(\.ids.count))
            ranges = (0..<inputs.count).map { segments.range($0) }
            outputs = try bert.hiddenStates(ids: encodings.flatMap { $0.ids.map(Int32.init) },
                                            tokenTypes: encodings.flatMap { $0.tokenTypeIds.map(Int32.init) },
                                            segments: segments, layers: layers, streams: streams)
        } else if let vit, let preprocessing {
            let pixels = try inputs.enumerated().map { i, input -> PixelValues in
                guard case .image(let image) = input else { throw ExtractError("input \(i + 1) is text; this backbone reads images") }
                return preprocessing(image)
            }
            let (height, side) = (pixels[0].height, pixels[0].width)
            guard pixels.allSatisfy({ $0.height == height && $0.width == side }) else {
                throw ExtractError("images differ in size after preprocessing; the backbone's preprocessor_config.json needs a resize or crop")
            }
            outputs = try vit.hiddenStates(pixels: Tensor(shape: [inputs.count, 3, height, side], scalars: pixels.flatMap(\.values)),
                                           layers: layers, streams: streams)
            let perImage = outputs.hidden[layers.min()!]!.rowCount / inputs.count
            ranges = (0..<inputs.count).map { ($0 * perImage)..<(($0 + 1) * perImage) }
        } else {
            preconditionFailure("no encoder loaded")
        }
        return ranges.map { range in
            let blocks = keys.map { TokenPooling.rows(of: tensor(outputs, $0), range: range, width: width, policy: settings.tokens) }
            return Activations(rows: (blocks.first?.count ?? 0) / width, blocks: blocks)
        }
    }

    /// A blob the extraction would have stored, computed from the loaded weights: "lst.rR", or
    /// "top_blocks" with the block count its metadata records.
    public func blob(_ name: String, metadata: [String: String]?) throws -> BlobContent? {
        let blocks = bert?.sideBlocks ?? vit!.sideBlocks
        let made: WeightBlob
        if name.hasPrefix("lst.r"), let r = Int(name.dropFirst("lst.r".count)) {
            made = try SideBlobs.lst(blocks, reduction: r)
        } else if name == "top_blocks" {
            guard let count = metadata?["count"].flatMap(Int.init) else { return nil }
            made = try SideBlobs.topBlocks(blocks, count: count)
        } else {
            return nil
        }
        return BlobContent(name: made.name, tensors: made.tensors, metadata: made.metadata)
    }
}
