// What extraction writes for stage two besides hidden states: the attention/MLP streams (same token
// rows as the hidden states, recorded in the manifest), N_max and pooling, and the blobs computed
// from the backbone's weights; resuming with other stream or blob flags is refused.
import ActivationStore
import Datasets
import Encoders
import Extract
import Foundation
import Testing
import TensorCore

/// Decoded rows of one (layer, stream) block of one stored example.
func storedBlock(_ cache: ActivationCache, _ split: String, _ index: Int, layer: Int, stream: ActivationStore.Stream) throws -> [Float] {
    let decoder = try cache.makeDecoder()
    return try cache.withRecord(split: split, index: index) { record in
        var values = [Float](repeating: 0, count: record.rows * record.width)
        try values.withUnsafeMutableBufferPointer { try decoder.decode(record, layer: layer, stream: stream, into: $0) }
        return values
    }
}

@Suite(.serialized) struct StreamAndBlobExtractionTests {
    @Test func textStreamsAndBlobsAreStoredAndRecorded() throws {
        let folder = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "0,2"
        request.options.storage = .f32
        request.options.streams = [.mlp, .attention]
        request.options.lstReductions = [8, 4]
        request.options.batchTokens = 64
        let cache = try TextExtractor(request).run()
        let settings = cache.manifest.settings
        #expect(settings.streams == ["attn", "mlp"])
        #expect(settings.maxTokens == 128 && settings.pooling == "mean")
        #expect(settings.blobs == ["lst.r4", "lst.r8", "top_blocks"])

        let encoder = try BertEncoder(folder: folder)
        let tokenizer = try WordPieceTokenizer(directory: folder)
        let source = try TextDatasetSource(directory: tinyDataset)
        let example = try source.examples(Split(rawValue: "val")!, labels: try source.labelMap())[3]
        let encoding = tokenizer.encode(example.text)
        let expected = try encoder.hiddenStates(ids: encoding.ids.map(Int32.init), tokenTypes: encoding.tokenTypeIds.map(Int32.init),
                                                segments: Segments(lengths: [encoding.ids.count]), layers: [0, 2], streams: [.attention, .mlp])
        let blocks = try cache.withRecord(split: "val", index: 3) { $0.blocks.map { "\($0.layer):\($0.stream.name)" } }
        #expect(blocks == ["0:hidden", "2:hidden", "2:attn", "2:mlp"])
        for (stream, reference) in [(ActivationStore.Stream.attention, expected.streams[EncoderStream.attention]![2]!), (.mlp, expected.streams[EncoderStream.mlp]![2]!)] {
            let stored = try storedBlock(cache, "val", 3, layer: 2, stream: stream)
            #expect(stored.count == encoding.ids.count * 384)
            let worst = zip(stored, reference.scalars).map { abs($0 - $1) / max(1, abs($1)) }.max()!
            #expect(worst < 1e-5, "\(stream): \(worst)")
        }

        // The blobs equal what the encoder's weights give now.
        let lst = try #require(try cache.blob("lst.r8"))
        let direct = try SideBlobs.lst(encoder.sideBlocks, reduction: 8)
        #expect(lst.tensors.count == direct.tensors.count && lst.metadata == direct.metadata)
        for (name, tensor) in direct.tensors { #expect(lst.tensors[name] == tensor, "\(name)") }
        let top = try #require(try cache.blob("top_blocks"))
        #expect(top.metadata["count"] == "2" && top.metadata["layers"] == "6")
        #expect(top.tensors["block.5.attention.query.weight"] == encoder.weights.layers[4].query.weight)
        #expect(top.tensors["block.4.attention.query.weight"] == nil)
        #expect(try cache.blob("lst.r2") == nil)
        #expect(try CacheReport.make(cache, verify: true, digest: false).damaged == [])
    }

    @Test func resumingWithOtherStreamOrBlobFlagsIsRefused() throws {
        _ = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "6"
        try TextExtractor(request).run()
        request.options.lstReductions = [4]
        request.options.topBlocks = 0
        request.options.streams = [.attention]
        do {
            try TextExtractor(request).run()
            Issue.record("a cache with other blobs was extended")
        } catch {
            let message = "\(error)"
            #expect(message.contains("blobs: [\"lst.r4\"] requested, [\"lst.r8\", \"top_blocks\"] in the cache"), "\(message)")
            #expect(message.contains("streams: [\"attn\"] requested, [] in the cache"), "\(message)")
        }
        // The original flags resume (nothing to do) and the blobs check out.
        request.options = CacheOptions()
        request.options.layers = "6"
        let cache = try TextExtractor(request).run()
        #expect(cache.manifest.settings.blobs == ["lst.r8", "top_blocks"])
    }

    @Test func badStreamAndBlobFlagsAreErrorsNamingTheFlag() throws {
        #expect(try StreamSelection.parse("attn,mlp") == [.attention, .mlp])
        #expect(try StreamSelection.parse("none") == [])
        #expect(try ReductionSelection.parse("4,8") == [4, 8] && ReductionSelection.parse("none") == [])
        for bad in ["hidden", "attn,", "ffn"] {
            #expect(throws: ExtractError.self, "\(bad)") { try StreamSelection.parse(bad) }
        }
        for bad in ["0", "x", "8,"] {
            #expect(throws: ExtractError.self, "\(bad)") { try ReductionSelection.parse(bad) }
        }
        _ = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.lstReductions = [5]
        #expect { try TextExtractor(request) } throws: {
            "\($0)".hasPrefix("--lst-reductions 5:") && "\($0)".hasSuffix("; give reductions this backbone allows, or --lst-reductions none to store no LST blob")
        }
        request.options.lstReductions = [8]
        request.options.topBlocks = 7
        #expect { try TextExtractor(request) } throws: { "\($0)".hasPrefix("--top-blocks 7:") }
        request.options.topBlocks = 2
        request.options.streams = [.attention]
        request.options.storage = .int8
        #expect { try TextExtractor(request) } throws: { "\($0)".contains("--streams with --dtype int8") }
    }

    @Test func imageStreamsWithClsRows() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
        defer { removeFolder(data) }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let train = try writeIDX(data, split: "train", count: 6, seed: 2)
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = ImageExtractionRequest(dataset: data, backbone: tinyViT, output: output)
        request.options.storage = .f32
        request.options.tokens = .cls
        request.options.streams = [.attention, .mlp]
        request.options.lstReductions = [2]
        let cache = try ImageExtractor(request).run()
        let settings = cache.manifest.settings
        #expect(settings.streams == ["attn", "mlp"] && settings.maxTokens == 17 && settings.pooling == "cls")
        #expect(settings.blobs == ["lst.r2", "top_blocks"])
        #expect(try cache.blob("top_blocks")?.tensors["final_norm.weight"]?.shape == [32])
        #expect(try cache.blob("lst.r2")?.metadata["layout"] == "pre-ln")

        let encoder = try ViTEncoder(folder: URL(fileURLWithPath: tinyViT))
        let preprocessing = try ImagePreprocessing(preprocessorConfigFile: tinyViT + "/preprocessor_config.json")
        let pixels = preprocessing(RGBImage(grey: train[4], height: 16, width: 16))
        let outputs = try encoder.hiddenStates(pixels: Tensor(shape: [1, 3, pixels.height, pixels.width], scalars: pixels.values),
                                               layers: [0, 1, 2], streams: [.attention, .mlp])
        for layer in [1, 2] {
            for (stream, reference) in [(ActivationStore.Stream.attention, outputs.streams[EncoderStream.attention]![layer]!), (.mlp, outputs.streams[EncoderStream.mlp]![layer]!)] {
                let stored = try storedBlock(cache, "train", 4, layer: layer, stream: stream)
                #expect(stored.count == 32)
                #expect(zip(stored, reference.scalars.prefix(32)).map { abs($0 - $1) }.max()! < 1e-5, "\(stream) \(layer)")
            }
        }
        #expect(throws: CorruptRecord.self) { try storedBlock(cache, "train", 4, layer: 0, stream: .attention) }
    }
}
