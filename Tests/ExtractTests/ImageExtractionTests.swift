// Stage one for images: IDX files (as Debian's Fashion-MNIST ships them) through the committed tiny
// ViT; the cache holds what the encoder computes on the preprocessed image.
import ActivationStore
import Datasets
import Encoders
import Extract
import Foundation
import Testing
import TensorCore

let tinyViT = repositoryRoot.appendingPathComponent("Tests/EncodersTests/Fixtures/tiny_vit").path

/// Writes IDX image and label files for `count` 16×16 grey images with a seeded pattern.
func writeIDX(_ folder: String, split: String, count: Int, seed: Int) throws -> [[UInt8]] {
    func header(_ magic: UInt8, _ dims: [Int]) -> [UInt8] {
        [0, 0, 8, magic] + dims.flatMap { d in withUnsafeBytes(of: UInt32(d).bigEndian) { Array($0) } }
    }
    var images: [[UInt8]] = []
    for i in 0..<count {
        images.append((0..<256).map { p in UInt8(truncatingIfNeeded: (p * (i + seed) * 37 + i * 11) % 251) })
    }
    try Data(header(3, [count, 16, 16]) + images.flatMap { $0 }).write(to: URL(fileURLWithPath: "\(folder)/\(split)-images-idx3-ubyte"))
    try Data(header(1, [count]) + (0..<count).map { UInt8($0 % 3) }).write(to: URL(fileURLWithPath: "\(folder)/\(split)-labels-idx1-ubyte"))
    return images
}

@Suite struct ImageExtractionTests {
    @Test func idxImagesThroughTheTinyViT() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
        defer { removeFolder(data) }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let train = try writeIDX(data, split: "train", count: 24, seed: 1)
        _ = try writeIDX(data, split: "test", count: 8, seed: 5)
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = ImageExtractionRequest(dataset: data, backbone: tinyViT, output: output)
        request.options.storage = .f32
        request.options.chunkSize = 10
        request.options.batchTokens = 17 * 4   // four images per batch
        let cache = try ImageExtractor(request).run()
        #expect(cache.manifest.settings.splitCounts == ["train": 24, "test": 8])
        #expect(cache.manifest.settings.backbone.architecture == "vit")

        let encoder = try ViTEncoder(folder: URL(fileURLWithPath: tinyViT))
        let preprocessing = try ImagePreprocessing(preprocessorConfigFile: tinyViT + "/preprocessor_config.json")
        for index in [0, 13, 23] {
            let pixels = preprocessing(RGBImage(grey: train[index], height: 16, width: 16))
            let states = try encoder.hiddenStates(pixels: Tensor(shape: [1, 3, pixels.height, pixels.width], scalars: pixels.values), layers: [0, 1, 2])
            for layer in [0, 1, 2] {
                let stored = try storedRows(cache, "train", index, layer: layer)
                #expect(stored.rows == 17)
                #expect(stored.label == index % 3)
                let worst = zip(stored.values, states[layer]!.scalars).map { abs($0 - $1) }.max()!
                #expect(worst < 1e-5, "train:\(index) layer \(layer): \(worst)")
            }
        }
        #expect(try CacheReport.make(cache, verify: true, digest: false).damaged == [])
    }
}
