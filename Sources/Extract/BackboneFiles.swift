import ActivationStore
import Foundation
import SafeTensors

/// Hashes of a backbone folder's config.json and model.safetensors: what a cache and a head record
/// to tell one backbone from another.
struct BackboneFiles {
    let configHash: String
    let weightsHash: String
    let weightsBytes: Int
    /// Elements of every tensor the encoder can run (in a full CLIPModel, the vision tower's):
    /// weights stored in f16 or bf16 count 2 bytes each, not 4.
    let parameterCount: Int

    init(folder: URL) throws {
        let config = try Data(contentsOf: folder.appendingPathComponent("config.json"))
        let weights = try Data(contentsOf: folder.appendingPathComponent("model.safetensors"), options: .alwaysMapped)
        configHash = String(config.withUnsafeBytes { XXHash64.hash($0) }, radix: 16)
        weightsHash = String(weights.withUnsafeBytes { XXHash64.hash($0) }, radix: 16)
        weightsBytes = weights.count
        let file = try SafeTensorsFile(path: folder.appendingPathComponent("model.safetensors").path)
        // A full CLIPModel's file also holds the text tower and the projections, which never run
        // here: a head's share of the backbone is counted against the vision tower alone.
        let counted = file.names.contains { $0.hasPrefix("text_model.") } && file.names.contains { $0.hasPrefix("vision_model.") }
            ? file.names.filter { $0.hasPrefix("vision_model.") } : file.names
        parameterCount = try counted.reduce(0) { $0 + (try file.info($1).shape.reduce(1, *)) }
    }

    /// The hash of the folder's `vocab.txt`, which its config and weights hashes do not cover: a
    /// changed vocabulary splits the same text into other ids.
    static func vocabularyHash(folder: URL) throws -> String {
        let vocabulary = try Data(contentsOf: folder.appendingPathComponent("vocab.txt"))
        return String(vocabulary.withUnsafeBytes { XXHash64.hash($0) }, radix: 16)
    }

    func identity(name: String, architecture: String, hiddenSize: Int, layerCount: Int) -> BackboneIdentity {
        BackboneIdentity(name: name, architecture: architecture, hiddenSize: hiddenSize, layerCount: layerCount,
                         configHash: configHash, weightsHash: weightsHash, weightsBytes: weightsBytes, parameterCount: parameterCount)
    }
}
