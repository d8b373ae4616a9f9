// A trained head's folder: the weights as safetensors, config.json (exactly what ran), log.tsv (one
// line per epoch) and result.json (metrics, size, cost). Written after training, each file
// atomically, result.json last: a folder with result.json is complete.
import Foundation
import SafeTensors
import SideNetworks

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

        enum CodingKeys: String, CodingKey {
            case head, hyperparameters, training, cache, labels, features
            case learningRate = "lr", cacheManifestHash = "cache_manifest_hash"
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

    /// Writes the folder for one trained head.
    public static func write(_ result: FitResult, head: any Head, options: TrainingOptions, cachePath: String, to folder: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let url = URL(fileURLWithPath: folder)
        try SafeTensorsWriter.write(head.exportedTensors().map { (name: $0.0, tensor: $0.1) },
                                    metadata: ["head": result.head, "format": "sidecar-head-1"],
                                    to: url.appendingPathComponent("head.safetensors").path)
        let config = Config(head: result.head, hyperparameters: result.hyperparameters, training: options,
                            learningRate: result.learningRate, cache: cachePath, cacheManifestHash: result.cacheManifestHash,
                            labels: result.labels, features: head.features.map(\.description))
        try encoder().encode(config).write(to: url.appendingPathComponent("config.json"), options: .atomic)
        var tsv = "epoch\ttrain_loss\tval_loss\tval_accuracy\tlr\texamples_per_s\tseconds\n"
        func cell(_ v: Double?) -> String { v.map { String(format: "%.6f", $0) } ?? "" }
        for r in result.history {
            tsv += "\(r.epoch)\t\(cell(r.trainLoss))\t\(cell(r.valLoss))\t\(cell(r.valAccuracy))\t\(r.learningRate)\t"
                + String(format: "%.1f\t%.3f\n", r.examplesPerSecond, r.seconds)
        }
        try Data(tsv.utf8).write(to: url.appendingPathComponent("log.tsv"), options: .atomic)
        try encoder().encode(result).write(to: url.appendingPathComponent("result.json"), options: .atomic)
    }
}
