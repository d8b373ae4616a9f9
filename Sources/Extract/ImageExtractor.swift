// Stage one for images: an ImageFolder tree or IDX files, preprocessed as the backbone's
// preprocessor_config.json says (resize, crop, rescale, normalise), through the frozen ViT-family
// encoder (ViT, DeiT, CLIP's vision tower), into the cache. Images of one batch share a size, so
// each example is 1 + patches rows.
import ActivationStore
import Datasets
import Encoders
import Foundation
import TensorCore

/// What to extract from an image dataset.
public struct ImageExtractionRequest: Sendable {
    public var dataset: String
    /// A ViT-family Hugging Face model folder (ViT, DeiT, CLIP or its vision tower).
    public var backbone: String
    public var output: String
    /// Tokens per forward batch count an image as 1 + patches tokens.
    public var options = CacheOptions()

    public init(dataset: String, backbone: String, output: String) {
        self.dataset = dataset
        self.backbone = backbone
        self.output = output
    }
}

/// One image of a split: its label and how to decode it.
struct ImageExample: Sendable {
    let labelID: Int
    let load: @Sendable () throws -> RGBImage
}

public final class ImageExtractor: Sendable {
    public let request: ImageExtractionRequest
    public let settings: ExtractionSettings
    /// Files in an ImageFolder's class folders that are not PNG or JPEG, left out of the splits.
    public let skippedFiles: [String]
    let encoder: ViTEncoder
    let preprocessing: ImagePreprocessing
    let examples: @Sendable (Split) throws -> [ImageExample]
    let blobs: [BlobContent]

    /// The IDX files of `directory`; with neither layout's train split, an error naming both (an
    /// image folder's train/ is missing as much as IDX files are).
    static func idxSource(_ directory: String) throws(DatasetError) -> IDXDatasetSource {
        do {
            return try IDXDatasetSource(directory: directory)
        } catch {
            if case .missingTrainSplit(let folder, let lookedFor) = error {
                throw .missingTrainSplit(directory: folder, lookedFor: ["train/ (a folder of class folders)"] + lookedFor)
            }
            throw error
        }
    }

    public init(_ request: ImageExtractionRequest) throws {
        self.request = request
        try request.options.validate()
        let folder = try BackboneFolder.resolve(request.backbone)
        encoder = try ViTEncoder(folder: folder, compute: request.options.compute)
        preprocessing = try ImagePreprocessing(preprocessorConfigFile: folder.appendingPathComponent("preprocessor_config.json").path)
        let splits: [Split], labels: LabelMap, format: String
        /// IDX images share one size per file, known before any is preprocessed.
        var sourceSizes: [String: (height: Int, width: Int)] = [:]
        var counts: [String: Int] = [:]
        var files: [DatasetFile] = []
        if FileManager.default.fileExists(atPath: request.dataset + "/train") {
            let source = try ImageFolderSource(directory: request.dataset)
            var skipped: [String] = []
            (splits, labels, format) = (source.splits, source.labels, "imagefolder")
            try ExtractError.requireTwoLabels(labels, in: source.path(of: .train))
            for split in splits {
                let (items, left) = try source.listing(split)
                skipped += left
                counts[split.rawValue] = items.count
                // An image folder is identified by its file list and sizes (hashing every image
                // would read the dataset twice).
                var listing = ""
                for item in items { listing += "\(item.path)\t\((try? FileManager.default.attributesOfItem(atPath: item.path)[.size] as? Int) ?? -1)\n" }
                files.append(DatasetFile(split: split.rawValue, name: source.path(of: split), bytes: items.count,
                                         hash: String(XXHash64.hash(Array(listing.utf8)), radix: 16)))
            }
            skippedFiles = skipped
            let alphaOnWhite = preprocessing.alphaOnWhite ?? false
            examples = { split in
                try source.items(split).map { item in ImageExample(labelID: item.labelID, load: { try item.load(alphaOnWhite: alphaOnWhite) }) }
            }
        } else {
            let source = try Self.idxSource(request.dataset)
            skippedFiles = []
            (splits, labels, format) = (source.splits, source.labels, "idx")
            try ExtractError.requireTwoLabels(labels, in: source.files(of: .train)?.labels ?? request.dataset)
            for split in splits {
                let loaded = try source.load(split)
                sourceSizes[split.rawValue] = (loaded.images.height, loaded.images.width)
                counts[split.rawValue] = loaded.labelIDs.count
                files.append(DatasetFile(split: split.rawValue, name: source.files(of: split)?.images ?? split.rawValue,
                                         bytes: loaded.images.pixels.count, hash: String(XXHash64.hash(loaded.images.pixels), radix: 16)))
            }
            examples = { split in
                let loaded = try source.load(split)
                return loaded.labelIDs.enumerated().map { i, label in ImageExample(labelID: label, load: { loaded.images.rgbImage(at: i) }) }
            }
        }
        let backboneFiles = try BackboneFiles(folder: folder)
        // Sorted keys: JSONEncoder's key order otherwise varies between encodings, and these bytes
        // are compared to resume an extraction or merge its shards.
        let jsonEncoder = JSONEncoder()
        jsonEncoder.outputFormatting = [.sortedKeys]
        let preprocessingJSON = String(decoding: try jsonEncoder.encode(preprocessing), as: UTF8.self)
        // N_max: every image of a cache has the preprocessed size (a crop, else a fixed resize,
        // else IDX's one size as resized), so 1 + its patches. Without any, each image keeps its
        // own size: refused before any work. The configuration's image_size had been taken, which
        // larger images exceed (a finished cache fit then called damaged), and a batch of two
        // sizes failed half-way.
        let side: (height: Int, width: Int)
        if let crop = preprocessing.centerCrop {
            side = (crop.height, crop.width)
        } else if case .size(let height, let width)? = preprocessing.resize {
            side = (height, width)
        } else if let first = sourceSizes.values.first {
            let sizes = Set(sourceSizes.values.map { "\($0.height)×\($0.width)" })
            guard sizes.count == 1 else {
                throw ExtractError("\(request.dataset): the IDX splits hold images of \(sizes.sorted().joined(separator: " and ")), and "
                                   + "\(folder.appendingPathComponent("preprocessor_config.json").path) resizes them to no one size; set \"size\" to {\"height\": H, \"width\": W}")
            }
            side = preprocessing.resizedSize(height: first.height, width: first.width)
        } else {
            let resize = preprocessing.resize == nil ? "with do_resize off" : "with a shortest_edge resize"
            throw ExtractError("\(folder.appendingPathComponent("preprocessor_config.json").path): \(resize) and no centre crop, each image "
                               + "keeps a size of its own; a cache needs one: set \"size\" to {\"height\": H, \"width\": W} or add a \"crop_size\"")
        }
        let maxTokens = 1 + (side.height / encoder.config.patchSize) * (side.width / encoder.config.patchSize)
        settings = ExtractionSettings(
            backbone: backboneFiles.identity(name: folder.lastPathComponent, architecture: encoder.config.family.architecture, hiddenSize: encoder.config.hiddenSize,
                                             layerCount: encoder.config.layerCount),
            preprocessing: ["image": preprocessingJSON, "format": format],
            datasetFiles: files, layers: try request.options.keptLayers(layerCount: encoder.config.layerCount),
            tokens: request.options.tokens, storage: request.options.storage, zstdLevel: request.options.zstdLevel, shuffle: request.options.shuffle,
            labels: labels.names, splits: splits.map(\.rawValue), splitCounts: counts,
            streams: request.options.orderedStreams.map(\.name), maxTokens: maxTokens, pooling: "cls",
            blobs: request.options.blobNames, shard: request.options.shardInfo(splitCounts: counts),
            compute: request.options.compute.rawValue, int8Calibration: request.options.int8Calibration)
        blobs = try request.options.blobs(encoder.sideBlocks)
    }

    /// Extracts every split, resuming where an earlier run stopped. Returns the opened cache.
    @discardableResult
    public func run(progress report: (ExtractionProgress) -> Void = { _ in }) throws -> ActivationCache {
        try runChunks(output: request.output, settings: settings, blobs: blobs, chunkSize: request.options.chunkSize, threads: request.options.threads, report: report) { name in
            let all = try examples(Split(rawValue: name)!)
            let perImage = 1 + encoder.config.patchesPerSide * encoder.config.patchesPerSide
            let batchImages = max(1, request.options.batchTokens / perImage)
            return SplitWork(
                batches: { chunk in
                    stride(from: chunk.lowerBound, to: chunk.upperBound, by: batchImages).map { Array($0..<min($0 + batchImages, chunk.upperBound)) }
                },
                compute: { try self.activations($0, all) },
                tokens: { $0.count * perImage })
        }
    }

    /// Preprocesses and encodes one batch of same-size images; each example's kept rows per layer.
    private func activations(_ batch: [Int], _ all: [ImageExample]) throws -> [ExampleActivations] {
        let pixels = try batch.map { preprocessing(try all[$0].load()) }
        guard let first = pixels.first else { return [] }
        let (height, width) = (first.height, first.width)
        var stacked = [Float]()
        stacked.reserveCapacity(batch.count * 3 * height * width)
        for p in pixels {
            guard p.height == height, p.width == width else {
                throw ExtractError("images of one batch differ in size after preprocessing (\(p.height)×\(p.width) vs \(height)×\(width)); set a resize or crop in preprocessor_config.json")
            }
            stacked += p.values
        }
        let outputs = try encoder.hiddenStates(pixels: Tensor(shape: [batch.count, 3, height, width], scalars: stacked),
                                               layers: Set(settings.layers), streams: encoderStreams(settings))
        let hidden = encoder.config.hiddenSize, keys = blockKeys(settings)
        let rowsPerImage = outputs.hidden[settings.layers[0]]!.rowCount / batch.count
        return batch.enumerated().map { position, index in
            let range = (position * rowsPerImage)..<((position + 1) * rowsPerImage)
            let blocks = keys.map { TokenPooling.rows(of: tensor(outputs, $0), range: range, width: hidden, policy: request.options.tokens) }
            return ExampleActivations(index: index, label: all[index].labelID, rows: blocks[0].count / hidden, blocks: blocks)
        }
    }
}
