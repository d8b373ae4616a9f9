import ActivationStore
import Foundation

/// Hashes of a backbone folder's config.json and model.safetensors: what a cache and a head record
/// to tell one backbone from another.
struct BackboneFiles {
    let configHash: String
    let weightsHash: String
    let weightsBytes: Int

    init(folder: URL) throws {
        let config = try Data(contentsOf: folder.appendingPathComponent("config.json"))
        let weights = try Data(contentsOf: folder.appendingPathComponent("model.safetensors"), options: .alwaysMapped)
        configHash = String(config.withUnsafeBytes { XXHash64.hash($0) }, radix: 16)
        weightsHash = String(weights.withUnsafeBytes { XXHash64.hash($0) }, radix: 16)
        weightsBytes = weights.count
    }

    /// The hash of the folder's `vocab.txt`, which its config and weights hashes do not cover: a
    /// changed vocabulary splits the same text into other ids.
    static func vocabularyHash(folder: URL) throws -> String {
        let vocabulary = try Data(contentsOf: folder.appendingPathComponent("vocab.txt"))
        return String(vocabulary.withUnsafeBytes { XXHash64.hash($0) }, radix: 16)
    }

    func identity(name: String, architecture: String, hiddenSize: Int, layerCount: Int) -> BackboneIdentity {
        BackboneIdentity(name: name, architecture: architecture, hiddenSize: hiddenSize, layerCount: layerCount,
                         configHash: configHash, weightsHash: weightsHash, weightsBytes: weightsBytes)
    }
}
