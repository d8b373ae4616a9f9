// Sharded extraction through the library, for images (the CLI tests cover text): IDX images through
// the tiny ViT in three int8 shards merge into exactly the cache one unsharded run writes, scales
// included, because every shard calibrates on the whole dataset's first chunk.
import ActivationStore
import Extract
import Foundation
import Testing

@Suite struct ShardExtractionTests {
    @Test func int8ImageShardsMergeIntoTheUnshardedCache() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("idx-shards-\(UUID().uuidString)").path
        defer { removeFolder(data) }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        _ = try writeIDX(data, split: "train", count: 23, seed: 2)
        _ = try writeIDX(data, split: "test", count: 5, seed: 7)
        var outputs: [String] = []
        defer { outputs.forEach(removeFolder) }
        func request(_ shard: Shard?) -> ImageExtractionRequest {
            outputs.append(temporaryCache())
            var request = ImageExtractionRequest(dataset: data, backbone: tinyViT, output: outputs.last!)
            request.options.storage = .int8
            request.options.chunkSize = 4
            request.options.batchTokens = 17 * 3
            request.options.shard = shard
            return request
        }
        let whole = try ImageExtractor(request(nil)).run()
        let shards = try (0..<3).map { i in try ImageExtractor(request(try Shard(index: i, count: 3))).run() }
        // Shard 1 holds train chunks 2..<4 and test chunk 0 (of 6 and 2; shard 0 has no test part), under their global indices.
        #expect(shards[1].manifest.settings.shard?.ranges == ["train": IndexRange(8..<16), "test": IndexRange(0..<4)])
        #expect(shards[0].manifest.settings.shard?.range(of: "test") == 0..<0)
        #expect(try shards[0].progress(of: "test") == SplitProgress(written: 0, complete: true))
        for shard in shards { #expect(try shard.int8Scales() == whole.int8Scales()) }

        outputs.append(temporaryCache())
        let merged = try CacheMerge.merge(shards: shards.map(\.path), into: outputs.last!)
        #expect(merged.manifest == whole.manifest)
        let a = try CacheReport.make(merged, verify: true, digest: true), b = try CacheReport.make(whole, verify: true, digest: true)
        #expect(a.damaged == [] && a.splits.map(\.digest) == b.splits.map(\.digest))
        #expect(a.splits.map(\.records) == [23, 5] && a.splits.allSatisfy(\.complete))
    }
}
