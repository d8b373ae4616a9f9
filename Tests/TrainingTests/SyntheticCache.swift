// Real caches (LMDB, zstd, the record format) filled with synthetic activations whose class is
// learnable: each class shifts a few channels of every token, under unit noise.
import ActivationStore
import Foundation
import TensorCore

enum SyntheticCache {
    /// A fresh path for `make`, not yet created; the caller removes it (with a `defer` made before
    /// `make`, which can fail half-way).
    static func temporaryPath(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "sidecar-training-\(name)-\(UUID().uuidString)"
        return path
    }

    /// Writes a cache with splits train/val/test; returns its path. Token counts vary 2...maxTokens.
    @discardableResult
    static func make(at path: String, counts: [String: Int] = ["train": 120, "val": 40, "test": 40], width: Int = 16,
                     layers: [Int] = [0, 1, 2], classes: Int = 3, maxTokens: Int = 8, tokens: TokenPolicy = .all,
                     storage: StorageType = .f32, streams: [String] = [], signal: Float = 1.5, seed: UInt64 = 1,
                     incomplete: String? = nil, backboneParameters: Int? = nil, blobs: [BlobContent] = []) throws -> String {
        let splits = ["train", "val", "test"].filter { counts[$0] != nil }
        var settings = ExtractionSettings(
            backbone: BackboneIdentity(name: "synthetic", architecture: "bert", hiddenSize: width, layerCount: layers.max()!,
                                       configHash: "0", weightsHash: "0", weightsBytes: 4_000_000, parameterCount: backboneParameters),
            preprocessing: ["source": "synthetic"], datasetFiles: [], layers: layers, tokens: tokens, storage: storage,
            zstdLevel: 1, shuffle: true, labels: (0..<classes).map { "class\($0)" }, splits: splits, splitCounts: counts)
        settings.maxTokens = maxTokens
        settings.pooling = "mean"
        settings.streams = streams.isEmpty ? nil : streams
        settings.blobs = blobs.isEmpty ? nil : blobs.map(\.name)
        let cache = try ActivationCache.openForWriting(path: path, settings: settings, blobs: blobs)
        let encoder = RecordEncoder(storage: storage, zstdLevel: 1, shuffle: true)
        var rng = SeededGenerator(seed: seed)
        for split in splits {
            var records: [(index: Int, bytes: [UInt8])] = []
            let count = counts[split]!
            let written = split == incomplete ? count / 2 : count
            for i in 0..<written {
                let label = Int(rng.next() % UInt64(classes))
                let length = tokens == .all ? 2 + Int(rng.next() % UInt64(maxTokens - 1)) : (tokens == .clsAndMean ? 2 : 1)
                var blocks: [[Float]] = []
                var kinds: [(Int, ActivationStore.Stream)] = []
                for l in layers {
                    for stream in [ActivationStore.Stream.hidden] + (l > 0 ? streams.map { $0 == "attn" ? ActivationStore.Stream.attention : ActivationStore.Stream.mlp } : []) {
                        var values = (0..<(length * width)).map { _ in rng.nextNormal() }
                        for t in 0..<length { values[t * width + label] += signal * Float(l + 1) / Float(layers.count) }
                        blocks.append(values)
                        kinds.append((l, stream))
                    }
                }
                let bytes = try withPointers(blocks) { pointers in
                    try encoder.encode(key: ActivationCache.keyName(split: split, index: i), label: label, rows: length, width: width,
                                       blocks: zip(kinds, pointers).map { RecordEncoder.Block(layer: $0.0, stream: $0.1, values: $1) })
                }
                records.append((i, bytes))
            }
            try cache.append(split: split, records: records, progress: SplitProgress(written: written, complete: written == count))
        }
        return path
    }

    static func withPointers<R>(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
        func recurse(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) throws -> R {
            if i == arrays.count { return try body(acc) }
            return try arrays[i].withUnsafeBufferPointer { try recurse(i + 1, acc + [$0]) }
        }
        return try recurse(0, [])
    }
}
