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

/// Writes IDX image and label files for `count` side×side grey images with a seeded pattern.
func writeIDX(_ folder: String, split: String, count: Int, seed: Int, side: Int = 16) throws -> [[UInt8]] {
    func header(_ magic: UInt8, _ dims: [Int]) -> [UInt8] {
        [0, 0, 8, magic] + dims.flatMap { d in withUnsafeBytes(of: UInt32(d).bigEndian) { Array($0) } }
    }
    var images: [[UInt8]] = []
    for i in 0..<count {
        images.append((0..<(side * side)).map { p in UInt8(truncatingIfNeeded: (p * (i + seed) * 37 + i * 11) % 251) })
    }
    try Data(header(3, [count, side, side]) + images.flatMap { $0 }).write(to: URL(fileURLWithPath: "\(folder)/\(split)-images-idx3-ubyte"))
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

    /// With do_resize off and no crop, IDX's 20×20 images keep their size: N_max is theirs
    /// (1 + 5 × 5 patches of 4), not the configuration's 16 (17), which had made a finished cache
    /// read back as damaged. An image folder's sizes are not known up front: refused before any work.
    @Test func withoutAResizeNMaxIsTheImagesOwnOrTheConfigIsRefused() throws {
        let fm = FileManager.default
        let scratch = fm.temporaryDirectory.appendingPathComponent("noresize-\(UUID().uuidString)").path
        defer { removeFolder(scratch) }
        let backbone = scratch + "/backbone", data = scratch + "/idx"
        try fm.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try fm.copyItem(atPath: tinyViT, toPath: backbone)
        let configPath = backbone + "/preprocessor_config.json"
        let config = try String(contentsOfFile: configPath, encoding: .utf8).replacingOccurrences(of: #""do_resize": true"#, with: #""do_resize": false"#)
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        try fm.createDirectory(atPath: data, withIntermediateDirectories: true)
        _ = try writeIDX(data, split: "train", count: 6, seed: 1, side: 20)
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = ImageExtractionRequest(dataset: data, backbone: backbone, output: output)
        request.options.storage = .f32
        let cache = try ImageExtractor(request).run()
        #expect(cache.manifest.settings.maxTokens == 26)
        #expect(try storedRows(cache, "train", 5, layer: 2).rows == 26)
        #expect(try CacheReport.make(cache, verify: true, digest: false).damaged == [])
        // Splits of two sizes have no one size either.
        _ = try writeIDX(data, split: "test", count: 2, seed: 3, side: 16)
        let mixed = temporaryCache()
        defer { removeFolder(mixed) }
        #expect {
            _ = try ImageExtractor(ImageExtractionRequest(dataset: data, backbone: backbone, output: mixed))
        } throws: { "\($0)".contains("the IDX splits hold images of 16×16 and 20×20") }

        // Refused from the configuration alone, before any image is read.
        for name in ["a", "b"] {
            let folder = scratch + "/images/train/" + name
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try Data("not read".utf8).write(to: URL(fileURLWithPath: folder + "/0.png"))
        }
        let refused = temporaryCache()
        defer { removeFolder(refused) }
        #expect {
            _ = try ImageExtractor(ImageExtractionRequest(dataset: scratch + "/images", backbone: backbone, output: refused))
        } throws: { "\($0)".contains("\(configPath): with do_resize off and no centre crop, each image keeps a size of its own") }
        #expect(!fm.fileExists(atPath: refused))
    }
}
