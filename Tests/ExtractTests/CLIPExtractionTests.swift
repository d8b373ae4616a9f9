// Stage one through CLIP's vision tower (the committed tiny random CLIPVisionModel): IDX images,
// resized by their shortest edge and centre-cropped as openai/clip-vit-base-patch32's
// preprocessor_config.json says; the cache records the architecture, class-token pooling and
// quick-GELU side blobs, holds what the encoder computes, and `predict`'s backbone runner
// recomputes the same rows from the recorded settings.
import ActivationStore
import Datasets
import Encoders
import Extract
import Foundation
import Testing
import TensorCore

let tinyCLIP = repositoryRoot.appendingPathComponent("Tests/EncodersTests/Fixtures/tiny_clip").path

@Suite struct CLIPExtractionTests {
    @Test func idxImagesThroughTheTinyCLIP() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
        defer { removeFolder(data) }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let train = try writeIDX(data, split: "train", count: 10, seed: 3)
        _ = try writeIDX(data, split: "test", count: 4, seed: 7)
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = ImageExtractionRequest(dataset: data, backbone: tinyCLIP, output: output)
        request.options.storage = .f32
        request.options.chunkSize = 4
        request.options.batchTokens = 17 * 3   // three images per batch
        request.options.streams = [.attention, .mlp]
        let cache = try ImageExtractor(request).run()
        let settings = cache.manifest.settings
        #expect(settings.backbone.architecture == "clip-vit" && settings.backbone.hiddenSize == 32 && settings.backbone.layerCount == 2)
        #expect(settings.pooling == "cls" && settings.maxTokens == 17)
        #expect(settings.splitCounts == ["train": 10, "test": 4])
        #expect(settings.blobs == ["lst.r8", "top_blocks"])
        for name in ["lst.r8", "top_blocks"] {
            let blob = try #require(try cache.blob(name))
            #expect(blob.metadata["activation"] == "quick_gelu" && blob.metadata["layout"] == "pre-ln", "\(name): \(blob.metadata)")
        }
        let encoder = try ViTEncoder(folder: URL(fileURLWithPath: tinyCLIP))
        // The top blocks' final norm is CLIP's post_layernorm.
        let postNorm = try #require(encoder.sideBlocks.finalNorm)
        #expect(try cache.blob("top_blocks")?.tensors["final_norm.weight"]?.scalars == postNorm.gain.scalars)
        let preprocessing = try ImagePreprocessing(preprocessorConfigFile: tinyCLIP + "/preprocessor_config.json")
        #expect(preprocessing.resize == .shortestEdge(32) && preprocessing.centerCrop == .init(height: 32, width: 32))
        let runner = try BackboneRunner(backbone: tinyCLIP, settings: settings)
        #expect(runner.takesImages && runner.identity == settings.backbone)
        for index in [0, 4, 9] {
            let image = RGBImage(grey: train[index], height: 16, width: 16)
            let pixels = preprocessing(image)
            #expect(pixels.height == 32 && pixels.width == 32)
            let outputs = try encoder.hiddenStates(pixels: Tensor(shape: [1, 3, 32, 32], scalars: pixels.values), layers: [0, 1, 2],
                                                   streams: [.attention, .mlp])
            let recomputed = try runner.activations([.image(image)], blocks: [(0, .hidden), (1, .hidden), (2, .hidden), (2, .mlp)])[0]
            #expect(recomputed.rows == 17)
            for layer in [0, 1, 2] {
                let stored = try storedRows(cache, "train", index, layer: layer)
                #expect(stored.rows == 17 && stored.label == index % 3)
                let worst = zip(stored.values, outputs.hidden[layer]!.scalars).map { abs($0 - $1) }.max()!
                #expect(worst < 1e-5, "train:\(index) layer \(layer): \(worst)")
                #expect(zip(stored.values, recomputed.blocks[layer]).map { abs($0 - $1) }.max()! < 1e-5, "runner, layer \(layer)")
            }
            let mlp = try storedBlock(cache, "train", index, layer: 2, stream: .mlp)
            #expect(zip(mlp, outputs.streams[.mlp]![2]!.scalars).map { abs($0 - $1) }.max()! < 1e-5)
            #expect(zip(mlp, recomputed.blocks[3]).map { abs($0 - $1) }.max()! < 1e-5)
        }
        #expect(try CacheReport.make(cache, verify: true, digest: false).damaged == [])
    }

    /// A full CLIPModel folder holding the same tower extracts the same rows; only the backbone's
    /// file hashes differ. Its parameters, against which a head's share is counted, are the
    /// tower's: the text tower and the projections never run.
    @Test func fullCLIPModelFolderExtractsTheSameRows() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
        defer { removeFolder(data) }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        _ = try writeIDX(data, split: "train", count: 5, seed: 11)
        var caches: [ActivationCache] = []
        let outputs = [temporaryCache(), temporaryCache()]
        defer { outputs.forEach(removeFolder) }
        for (backbone, output) in zip([tinyCLIP, tinyCLIP + "_model"], outputs) {
            var request = ImageExtractionRequest(dataset: data, backbone: backbone, output: output)
            request.options.storage = .f32
            request.options.layers = "2"
            request.options.lstReductions = []
            request.options.topBlocks = 0
            caches.append(try ImageExtractor(request).run())
        }
        #expect(caches[1].manifest.settings.backbone.architecture == "clip-vit")
        #expect(caches[0].manifest.settings.backbone.weightsHash != caches[1].manifest.settings.backbone.weightsHash)
        // 23,936 in the vision tower alone; the whole CLIPModel file holds 28,113.
        #expect(caches.map(\.manifest.settings.backbone.parameters) == [23_936, 23_936])
        for index in 0..<5 {
            #expect(try storedRows(caches[0], "train", index, layer: 2).values == (try storedRows(caches[1], "train", index, layer: 2).values))
        }
    }
}
