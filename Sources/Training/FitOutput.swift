// A trained head's folder: the trainable parameters as safetensors, config.json (exactly what ran,
// and the cache's extraction settings, so eval and predict can rebuild the head without the
// cache), log.tsv (one line per epoch) and result.json (metrics, size, cost). Written after
// training, each file atomically, result.json last: a folder with result.json is complete. A head
// that failed (diverged) gets no head.safetensors, only the record of why.
import ActivationStore
import Foundation
import SafeTensors
import SideNetworks
import TensorCore

public enum FitOutput {
    /// What ran, as config.json records it.
    public struct Config: Codable, Sendable {
        public var head: String
        public var hyperparameters: Hyperparameters
        public var training: TrainingOptions
        public var learningRate: Float
        public var cache: String
        public var cacheManifestHash: String
        public var labels: [String]
        public var features: [String]
        /// The training cache's settings: backbone identity, preprocessing, layers, token policy.
        public var extraction: ExtractionSettings?
        /// The metadata of the cache's blobs (e.g. how many top blocks it stores), so predict can
        /// recompute them from the backbone.
        public var blobMetadata: [String: [String: String]]?

        enum CodingKeys: String, CodingKey {
            case head, hyperparameters, training, cache, labels, features, extraction
            case learningRate = "lr", cacheManifestHash = "cache_manifest_hash", blobMetadata = "blob_metadata"
        }
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return encoder
    }

    /// result.json's content on one line (for `--json`).
    public static func jsonLine(_ result: FitResult) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(result), as: UTF8.self)
    }

    /// The files `fit` writes in a head's folder.
    public static let headFiles = ["result.json", "config.json", "head.safetensors", "log.tsv"]

    /// Removes an earlier fit's heads from `out` that this fit's `folders` will not replace: the
    /// `NN-head` sub-folders of a fit of several heads, or the head files of a fit of one. Left,
    /// they sat beside the new results as if one fit had made them all. Only what a fit writes
    /// goes: the four files of a folder that a fit wrote (a result.json, or a config.json beside
    /// a log.tsv), then the sub-folder itself if nothing else is left in it. Whole sub-folders
    /// had gone, with the user's notes in them, and any `NN-name` folder holding a config.json.
    public static func removeStaleOutputs(in out: String, keeping folders: [String]) throws {
        let fm = FileManager.default
        let root = URL(userPath: out)
        // Compared as the file system resolves them (the heads are written by now, so every path
        // exists): standardizedFileURL drops "x/.." as text, which a link x makes another folder.
        func real(_ url: URL) -> String { url.resolvingSymlinksInPath().path }
        let kept = Set(folders.map { real(URL(userPath: $0)) })
        // An earlier head here has lost its result.json to invalidateEarlierOutputs by now: its
        // config.json and log.tsv together still say a fit wrote them (a config.json alone may be
        // the user's own).
        func wroteByFit(_ folder: URL) -> Bool {
            func exists(_ name: String) -> Bool { fm.fileExists(atPath: folder.appendingPathComponent(name).path) }
            return exists("result.json") || exists("config.json") && exists("log.tsv")
        }
        if !kept.contains(real(root)), wroteByFit(root) { try removeHeadFiles(in: root.path) }
        for name in (try? fm.contentsOfDirectory(atPath: root.path)) ?? [] where name.range(of: #"^[0-9]{2}-[A-Za-z0-9_]+$"#, options: .regularExpression) != nil {
            let folder = root.appendingPathComponent(name)
            guard !kept.contains(real(folder)), wroteByFit(folder) else { continue }
            try removeHeadFiles(in: folder.path)
            if (try? fm.contentsOfDirectory(atPath: folder.path))?.isEmpty == true { try fm.removeItem(at: folder) }
        }
    }

    /// Removes the files a fit writes (`headFiles`) from `folder`, and nothing else.
    public static func removeHeadFiles(in folder: String) throws {
        let fm = FileManager.default
        let url = URL(userPath: folder)
        for name in headFiles where fm.fileExists(atPath: url.appendingPathComponent(name).path) {
            try fm.removeItem(at: url.appendingPathComponent(name))
        }
    }

    /// What a head folder records of the cache it was trained on. Read before training: every
    /// blob's metadata is read whichever heads train, and a damaged one had stopped a fit after
    /// its last epoch.
    public struct CacheRecord: Sendable {
        /// Absolute: export and eval may run from another folder.
        public let path: String
        public let settings: ExtractionSettings
        /// The metadata of each blob that can be read (what `predict` recomputes a blob by).
        public let blobMetadata: [String: [String: String]]
        /// Blobs that cannot be read, each with why. Heads that do not read them still train (a
        /// damaged top-blocks blob had stopped every head's fit); one that does is refused when
        /// it is built, before training, by the same error.
        public let damagedBlobs: [(name: String, error: String)]

        public init(_ cache: ActivationCache) {
            // Through the file system, not standardizedFileURL: that drops "x/.." as text, and a
            // link x had recorded another cache than the one opened.
            path = URL(userPath: cache.path).resolvingSymlinksInPath().path
            settings = cache.manifest.settings
            var metadata: [String: [String: String]] = [:], damaged: [(name: String, error: String)] = []
            for name in settings.blobs ?? [] {
                do {
                    guard let read = try cache.blobMetadata(name) else {
                        damaged.append((name, cache.missingBlobMessage(name)))
                        continue
                    }
                    metadata[name] = read
                } catch {
                    damaged.append((name, "\(error)"))
                }
            }
            blobMetadata = metadata
            damagedBlobs = damaged
        }
    }

    /// Before a fit writes its heads into `out`: every earlier head there (`out` itself, its
    /// `NN-head` folders) loses its result.json, so that a fit stopped half-way through writing
    /// leaves no folder that reads as complete. The new first head had stood beside the old
    /// second, each with its result.json, as if one fit had made them.
    public static func invalidateEarlierOutputs(in out: String) throws {
        let fm = FileManager.default
        let root = URL(userPath: out)
        let heads = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? [])
            .filter { $0.range(of: #"^[0-9]{2}-[A-Za-z0-9_]+$"#, options: .regularExpression) != nil }
            .map { root.appendingPathComponent($0) }
        for folder in [root] + heads {
            let result = folder.appendingPathComponent("result.json")
            if fm.fileExists(atPath: result.path) { try fm.removeItem(at: result) }
        }
    }

    /// Writes the folder for one trained head.
    public static func write(_ result: FitResult, head: any Head, options: TrainingOptions, cache: ActivationCache, to folder: String) throws {
        try write(result, head: head, options: options, cache: CacheRecord(cache), to: folder)
    }

    /// Writes the folder for one trained head, with what was read of its cache before training.
    public static func write(_ result: FitResult, head: any Head, options: TrainingOptions, cache: CacheRecord, to folder: String) throws {
        let config = Config(head: result.head, hyperparameters: result.hyperparameters, training: options,
                            learningRate: result.learningRate, cache: cache.path, cacheManifestHash: result.cacheManifestHash,
                            labels: result.labels, features: head.features.map(\.description),
                            extraction: cache.settings, blobMetadata: cache.blobMetadata)
        var tsv = "epoch\ttrain_loss\tval_loss\tval_accuracy\tlr\texamples_per_s\tseconds\n"
        func cell(_ v: Double?) -> String { v.map { String(format: "%.6f", $0) } ?? "" }
        for r in result.history {
            tsv += "\(r.epoch)\t\(cell(r.trainLoss))\t\(cell(r.valLoss))\t\(cell(r.valAccuracy))\t\(r.learningRate)\t"
                + String(format: "%.1f\t%.3f\n", r.examplesPerSecond, r.seconds)
        }
        // Encoded before anything is touched: a value JSON cannot hold fails here, not half-way.
        let (configData, resultData) = (try encoder().encode(config), try encoder().encode(result))
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let url = URL(userPath: folder)
        // An earlier fit's files may be here: its result.json goes first, so that until the new one
        // is written the folder reads as incomplete, never as the old head with new weights.
        let resultURL = url.appendingPathComponent("result.json"), weightsURL = url.appendingPathComponent("head.safetensors")
        for stale in [resultURL, weightsURL] where fm.fileExists(atPath: stale.path) { try fm.removeItem(at: stale) }
        if result.failure == nil {
            let parameters = head.parameters
            try SafeTensorsWriter.write(parameters.ids.map { (name: parameters.entry($0).name, tensor: parameters.tensor($0)) },
                                        metadata: ["head": result.head, "format": TrainedHead.fitFormat], to: weightsURL.path)
        }
        try configData.write(to: url.appendingPathComponent("config.json"), options: .atomic)
        try Data(tsv.utf8).write(to: url.appendingPathComponent("log.tsv"), options: .atomic)
        try resultData.write(to: resultURL, options: .atomic)
    }

    /// Writes the deployable form of a head (`sidecar export`): its exported tensors (merged where
    /// the method allows) with the config in the metadata, so the file alone can be loaded again.
    public static func export(_ head: any Head, config: Config, to path: String) throws {
        let json = String(decoding: try encoder().encode(config), as: UTF8.self)
        try SafeTensorsWriter.write(head.exportedTensors().map { (name: $0.0, tensor: $0.1) },
                                    metadata: ["head": config.head, "format": TrainedHead.exportFormat, "config": json,
                                               "labels": config.labels.joined(separator: "\n")],
                                    to: path)
    }
}
