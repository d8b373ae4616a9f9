// Extraction with --compute bf16: the settings record it, and the cache holds what the bf16 encoder
// computes on each example alone (packing and chunking change nothing beyond summation order),
// which is within a per-token cosine of 0.999 of the f32 encoder and visibly not the f32 numbers.
import ActivationStore
import Datasets
import Encoders
import Extract
import Foundation
import OneDNN
import Testing
import TensorCore

/// The smallest cosine between corresponding rows of two row-major [rows, width] buffers.
private func worstTokenCosine(_ a: [Float], _ b: [Float], width: Int) -> Double {
    var worst = 1.0
    for row in 0..<(a.count / width) {
        var dot = 0.0, aa = 0.0, bb = 0.0
        for j in (row * width)..<((row + 1) * width) {
            dot += Double(a[j]) * Double(b[j])
            aa += Double(a[j]) * Double(a[j])
            bb += Double(b[j]) * Double(b[j])
        }
        worst = min(worst, dot / (aa * bb).squareRoot())
    }
    return worst
}

@Suite(.enabled(if: OneDNN.supportsBF16, "oneDNN has no bf16 product on this CPU (needs AVX-512)"))
struct BF16ExtractionTests {
    @Test func textRecordsHoldTheBF16EncoderStates() throws {
        let folder = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "all"
        request.options.storage = .f32
        request.options.chunkSize = 7
        request.options.batchTokens = 64
        request.options.compute = .bf16
        request.options.lstReductions = []
        request.options.topBlocks = 0
        let cache = try TextExtractor(request).run()
        #expect(cache.manifest.settings.compute == "bf16")

        let reduced = try BertEncoder(folder: folder, compute: .bf16)
        let reference = try BertEncoder(folder: folder, compute: .f32)
        let tokenizer = try WordPieceTokenizer(directory: folder)
        let source = try TextDatasetSource(directory: tinyDataset)
        let labels = try source.labelMap()
        let layers = Set(0...6)
        for (split, index) in [("train", 0), ("train", 39), ("val", 4), ("test", 9)] {
            let example = try source.examples(Split(rawValue: split)!, labels: labels)[index]
            let encoding = tokenizer.encode(example.text)
            let (ids, types) = (encoding.ids.map(Int32.init), encoding.tokenTypeIds.map(Int32.init))
            let segments = Segments(lengths: [encoding.ids.count])
            let alone = try reduced.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: layers)
            let exact = try reference.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: layers)
            for layer in layers.sorted() {
                let stored = try storedRows(cache, split, index, layer: layer).values
                let fromBF16 = zip(stored, alone[layer]!.scalars).map { abs($0 - $1) }.max()!
                let fromF32 = zip(stored, exact[layer]!.scalars).map { abs($0 - $1) }.max()!
                let cosine = worstTokenCosine(stored, exact[layer]!.scalars, width: 384)
                #expect(fromBF16 < 1e-4, "\(split):\(index) layer \(layer): \(fromBF16) from the bf16 encoder alone")
                #expect(cosine >= 0.999, "\(split):\(index) layer \(layer): cosine \(cosine) to f32")
                if layer > 0 { #expect(fromF32 > 1e-4, "\(split):\(index) layer \(layer) looks computed in f32") }
            }
        }
    }

    @Test func imageRecordsHoldTheBF16EncoderStates() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("idx-bf16-\(UUID().uuidString)").path
        defer { removeFolder(data) }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let train = try writeIDX(data, split: "train", count: 12, seed: 3)
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = ImageExtractionRequest(dataset: data, backbone: tinyViT, output: output)
        request.options.storage = .f32
        request.options.batchTokens = 17 * 4
        request.options.compute = .bf16
        let cache = try ImageExtractor(request).run()
        #expect(cache.manifest.settings.compute == "bf16")

        let reduced = try ViTEncoder(folder: URL(fileURLWithPath: tinyViT), compute: .bf16)
        let reference = try ViTEncoder(folder: URL(fileURLWithPath: tinyViT), compute: .f32)
        let preprocessing = try ImagePreprocessing(preprocessorConfigFile: tinyViT + "/preprocessor_config.json")
        for index in [0, 5, 11] {
            let pixels = preprocessing(RGBImage(grey: train[index], height: 16, width: 16))
            let input = Tensor(shape: [1, 3, pixels.height, pixels.width], scalars: pixels.values)
            let alone = try reduced.hiddenStates(pixels: input, layers: [0, 1, 2])
            let exact = try reference.hiddenStates(pixels: input, layers: [0, 1, 2])
            for layer in [0, 1, 2] {
                let stored = try storedRows(cache, "train", index, layer: layer).values
                #expect(zip(stored, alone[layer]!.scalars).map { abs($0 - $1) }.max()! < 1e-5, "train:\(index) layer \(layer)")
                #expect(worstTokenCosine(stored, exact[layer]!.scalars, width: 32) >= 0.999, "train:\(index) layer \(layer)")
                #expect(stored != exact[layer]!.scalars, "train:\(index) layer \(layer) looks computed in f32")
            }
        }
    }
}
