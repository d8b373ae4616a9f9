// Stage one end to end on the real MiniLM weights and the committed tiny dataset: what the cache
// holds equals what the encoder computes, token policies pool as documented, and a cache made
// with other settings is refused.
import ActivationStore
import Datasets
import Encoders
import Extract
import Foundation
import Testing
import TensorCore

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let tinyDataset = repositoryRoot.appendingPathComponent("datasets/tiny").path

/// A fresh path for a cache, not yet created; the caller removes it with `removeFolder`.
func temporaryCache() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)").path
}

func removeFolder(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Decoded rows of one layer of one stored example.
func storedRows(_ cache: ActivationCache, _ split: String, _ index: Int, layer: Int) throws -> (values: [Float], rows: Int, label: Int?) {
    let decoder = try cache.makeDecoder()
    return try cache.withRecord(split: split, index: index) { record in
        var values = [Float](repeating: 0, count: record.rows * record.width)
        try values.withUnsafeMutableBufferPointer { try decoder.decode(record, layer: layer, into: $0) }
        return (values, record.rows, record.label)
    }
}

@Suite(.serialized) struct ExtractionTests {
    @Test func recordsHoldWhatTheEncoderComputes() throws {
        let folder = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "0,1,2"
        request.options.storage = .f32
        request.options.chunkSize = 7          // several transactions per split
        request.options.batchTokens = 64       // several packed batches per chunk
        let cache = try TextExtractor(request).run()
        #expect(cache.manifest.settings.layers == [0, 1, 2])
        #expect(cache.manifest.settings.splitCounts == ["train": 40, "val": 10, "test": 10])
        // Summed over the safetensors header's shapes by a separate script: 22,713,728.
        #expect(cache.manifest.settings.backbone.parameterCount == 22_713_728)

        let encoder = try BertEncoder(folder: folder)
        let tokenizer = try WordPieceTokenizer(directory: folder)
        let source = try TextDatasetSource(directory: tinyDataset)
        let labels = try source.labelMap()
        for (split, index) in [("train", 0), ("train", 39), ("val", 4), ("test", 9)] {
            let example = try source.examples(Split(rawValue: split)!, labels: labels)[index]
            let encoding = tokenizer.encode(example.text)
            let expected = try encoder.hiddenStates(ids: encoding.ids.map(Int32.init), tokenTypes: encoding.tokenTypeIds.map(Int32.init),
                                                    segments: Segments(lengths: [encoding.ids.count]), layers: [0, 1, 2])
            for layer in [0, 1, 2] {
                let stored = try storedRows(cache, split, index, layer: layer)
                #expect(stored.rows == encoding.ids.count)
                #expect(stored.label == example.labelID)
                let worst = zip(stored.values, expected[layer]!.scalars).map { abs($0 - $1) }.max()!
                // Alone or packed with other examples: the same numbers up to summation order.
                #expect(worst < 1e-5, "\(split):\(index) layer \(layer): \(worst)")
            }
        }
        let report = try CacheReport.make(cache, verify: true, digest: true)
        #expect(report.damaged == [])
        #expect(report.splits.map(\.records) == [40, 10, 10])
        #expect(report.splits.allSatisfy { $0.complete })
    }

    @Test func tokenPoliciesPoolTheStoredTokens() throws {
        _ = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var all = TextExtractionRequest(dataset: tinyDataset, output: output)
        all.options.layers = "2"
        all.options.storage = .f32
        let full = try TextExtractor(all).run()
        for policy in [TokenPolicy.cls, .mean, .clsAndMean] {
            var request = all
            let otherOutput = temporaryCache()
            defer { removeFolder(otherOutput) }
            request.output = otherOutput
            request.options.tokens = policy
            let pooled = try TextExtractor(request).run()
            let tokens = try storedRows(full, "val", 3, layer: 2)
            let rows = try storedRows(pooled, "val", 3, layer: 2)
            let width = 384
            var mean = [Float](repeating: 0, count: width)
            for r in 0..<tokens.rows { for j in 0..<width { mean[j] += tokens.values[r * width + j] / Float(tokens.rows) } }
            let cls = Array(tokens.values.prefix(width))
            let expected = policy == .cls ? cls : (policy == .mean ? mean : cls + mean)
            #expect(rows.rows == expected.count / width)
            #expect(zip(rows.values, expected).map { abs($0 - $1) }.max()! < 1e-5, "\(policy)")
        }
    }

    @Test func aChangedVocabularyIsRefusedOnResume() throws {
        // The backbone folder's config and weights stay; its vocab.txt changes between two runs,
        // which would mix two tokenizers' records in one cache.
        let minilm = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("minilm-vocabulary-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copy) }
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: minilm.path) where file != "vocab.txt" {
            try FileManager.default.createSymbolicLink(at: copy.appendingPathComponent(file), withDestinationURL: minilm.appendingPathComponent(file))
        }
        let vocabulary = copy.appendingPathComponent("vocab.txt")
        try FileManager.default.copyItem(at: minilm.appendingPathComponent("vocab.txt"), to: vocabulary)
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.backbone = copy.path
        request.options.layers = "1"
        try TextExtractor(request).run()
        var words = try String(contentsOf: vocabulary, encoding: .utf8).components(separatedBy: "\n")
        words.swapAt(words.firstIndex(of: "the")!, words.firstIndex(of: "dog")!)
        try Data(words.joined(separator: "\n").utf8).write(to: vocabulary)
        do {
            try TextExtractor(request).run()
            Issue.record("a cache was extended through another vocabulary")
        } catch {
            let message = "\(error)"
            #expect(message.contains("preprocessing vocabulary: ") && !message.contains("backbone"), "\(message)")
        }
    }

    @Test func otherSettingsOnAnExistingCacheAreRefused() throws {
        _ = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "1"
        try TextExtractor(request).run()
        request.options.layers = "2"
        request.options.storage = .f16
        do {
            try TextExtractor(request).run()
            Issue.record("a cache with other settings was extended")
        } catch {
            let message = "\(error)"
            #expect(message.contains("layers: [2] requested, [1] in the cache"), "\(message)")
            #expect(message.contains("dtype: f16 requested, bf16 in the cache"), "\(message)")
        }
        // The same settings again: nothing to do, and the cache is intact.
        request.options.layers = "1"
        request.options.storage = .bf16
        let cache = try TextExtractor(request).run()
        #expect(try CacheReport.make(cache, verify: true, digest: false).damaged == [])
    }

    /// int8 keeps every value within half a step of its channel's scale (calibration saw the
    /// largest values of the first chunk; here the chunk is the whole train split).
    @Test func int8RecordsAreWithinHalfAStepOfFloat32() throws {
        _ = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "0,2"
        request.options.storage = .f32
        let reference = try TextExtractor(request).run()
        let otherOutput = temporaryCache()
        defer { removeFolder(otherOutput) }
        request.output = otherOutput
        request.options.storage = .int8
        let quantised = try TextExtractor(request).run()
        let scales = try #require(try quantised.int8Scales())
        #expect(scales.keys.sorted() == [0, 2] && scales[0]!.count == 384)
        for index in [0, 17, 39] {
            for layer in [0, 2] {
                let exact = try storedRows(reference, "train", index, layer: layer), rounded = try storedRows(quantised, "train", index, layer: layer)
                for i in exact.values.indices {
                    #expect(abs(exact.values[i] - rounded.values[i]) <= 0.5001 * scales[layer]![i % 384], "train:\(index) layer \(layer) value \(i)")
                }
            }
        }
        let report = try CacheReport.make(quantised, verify: true, digest: false)
        #expect(report.damaged == [])
        print("int8 cache: \(report.ratioVsF32) of raw fp32")
        #expect(report.ratioVsF32 < 0.3)
    }

    /// The int8 scales depend on how many examples calibrated them (the chunk size): the manifest
    /// says how many, and resuming with another chunk size is refused.
    @Test func int8CachesRecordTheirCalibration() throws {
        _ = try #require(try? BackboneFolder.resolve("minilm"), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let output = temporaryCache()
        defer { removeFolder(output) }
        var request = TextExtractionRequest(dataset: tinyDataset, output: output)
        request.options.layers = "0"
        request.options.storage = .int8
        request.options.chunkSize = 16
        #expect(try TextExtractor(request).run().manifest.settings.int8Calibration == 16)
        request.options.chunkSize = 8
        do {
            _ = try TextExtractor(request).run()
            Issue.record("an int8 cache was resumed with another chunk size")
        } catch {
            #expect("\(error)".contains("int8 calibration examples (--chunk-size): 8 requested, 16 in the cache"), "\(error)")
        }
        request.options.storage = .f32
        request.output = output + "-f32"
        defer { removeFolder(output + "-f32") }
        #expect(try TextExtractor(request).run().manifest.settings.int8Calibration == nil)
    }

    @Test func layerSelections() throws {
        #expect(try LayerSelection.parse("all", layerCount: 6) == [0, 1, 2, 3, 4, 5, 6])
        #expect(try LayerSelection.parse("0,3,6", layerCount: 6) == [0, 3, 6])
        #expect(try LayerSelection.parse("4-6,0", layerCount: 6) == [0, 4, 5, 6])
        // Read as a head reads its layers (LayerList): "last" too.
        #expect(try LayerSelection.parse("last", layerCount: 6) == [6])
        for bad in ["7", "3-1", "a", "", "1,,2", "-1"] {
            #expect(throws: ExtractError.self, "\(bad)") { try LayerSelection.parse(bad, layerCount: 6) }
        }
    }
}
