// Shards and merging on real caches with synthetic records: how shards divide the splits, how
// `--shard` values and job-array variables parse, and that CacheMerge copies shards into the cache
// one writer would have written (record bytes, blobs, int8 scales), resumes a killed merge, and
// refuses damaged, incomplete or foreign shards before writing anything.
import ActivationStore
import Foundation
import Testing
import TensorCore

/// Settings for a small int8 cache with one blob; `counts` per split.
func shardableSettings(counts: [String: Int] = ["train": 37, "val": 9], storage: StorageType = .int8) -> ExtractionSettings {
    var settings = sampleSettings(blobs: ["extra"])
    settings.streams = nil
    settings.layers = [0, 2]
    settings.storage = storage
    settings.splits = ["train", "val"]
    settings.splitCounts = counts
    return settings
}

let mergeScales: [Int: [Float]] = [0: [0.01, 0.02, 0.03, 0.04], 2: [0.05, 0.01, 0.02, 0.5]]
let mergeBlob = BlobContent(name: "extra", tensors: [("w", Tensor(shape: [2], scalars: [1, -2]))], metadata: ["k": "v"])

/// The record of example `index` of `split`: values derived from both, so a record in the wrong
/// place changes the digest.
func syntheticRecord(_ split: String, _ index: Int, storage: StorageType) throws -> [UInt8] {
    let rows = 1 + index % 3, width = 4
    let encoder = RecordEncoder(storage: storage, zstdLevel: 1, shuffle: true, int8Scales: storage == .int8 ? mergeScales : [:])
    let base = Float(split == "train" ? 1 : -1) * Float(index + 1)
    let a = (0..<(rows * width)).map { base * 0.001 * Float($0 + 1) }, b = a.map { -$0 * 0.5 }
    return try a.withUnsafeBufferPointer { pa in
        try b.withUnsafeBufferPointer { pb in
            try encoder.encode(key: ActivationCache.keyName(split: split, index: index), label: index % 2, rows: rows, width: width,
                               blocks: [RecordEncoder.Block(layer: 0, values: pa), RecordEncoder.Block(layer: 2, values: pb)])
        }
    }
}

/// Writes a cache holding `shard`'s part (or everything), the way extraction does: records of a
/// part in chunks, each with its progress; `stopAfter` records of the first split leave it incomplete.
@discardableResult
func writeSyntheticCache(_ path: String, settings base: ExtractionSettings, shard: Shard?, chunkSize: Int = 4,
                         stopAfter: Int? = nil, damage: Int? = nil) throws -> ActivationCache {
    var settings = base
    settings.shard = shard.map { ShardInfo($0, chunkSize: chunkSize, splitCounts: settings.splitCounts) }
    let cache = try ActivationCache.openForWriting(path: path, settings: settings, blobs: [mergeBlob])
    if settings.storage == .int8 { try cache.storeInt8Scales(mergeScales) }
    for split in settings.splits {
        let part = settings.shard?.range(of: split) ?? 0..<settings.splitCounts[split]!
        var written = 0
        if part.isEmpty { try cache.append(split: split, records: [], progress: SplitProgress(written: 0, complete: true)) }
        while written < part.count {
            if let stopAfter, split == settings.splits[0], written >= stopAfter { return cache }
            let chunk = (part.lowerBound + written)..<min(part.lowerBound + written + chunkSize, part.upperBound)
            let records = try chunk.map { index in
                var bytes = try syntheticRecord(split, index, storage: settings.storage)
                if index == damage { bytes[bytes.count - 2] ^= 0xff }
                return (index: index, bytes: bytes)
            }
            written += chunk.count
            try cache.append(split: split, records: records, progress: SplitProgress(written: written, complete: written == part.count))
        }
    }
    return cache
}

func digestsOf(_ cache: ActivationCache) throws -> [String: String] {
    let report = try CacheReport.make(cache, verify: true, digest: true)
    #expect(report.damaged == [])
    return Dictionary(uniqueKeysWithValues: report.splits.map { ($0.name, $0.digest ?? "") })
}

func allRecordBytes(_ cache: ActivationCache, split: String) throws -> [Int: [UInt8]] {
    var out: [Int: [UInt8]] = [:]
    try cache.forEachRecord(split: split) { index, _, raw in
        out[index] = Array(raw)
        return true
    }
    return out
}

@Suite struct ShardTests {
    @Test(arguments: [(37, 4, 3), (9, 4, 3), (9, 4, 5), (1, 4, 2), (64, 16, 4), (100, 1, 7), (5, 8, 1)])
    func partsTileEachSplitOnChunkBoundaries(total: Int, chunkSize: Int, count: Int) throws {
        var next = 0
        for index in 0..<count {
            let info = ShardInfo(try Shard(index: index, count: count), chunkSize: chunkSize, splitCounts: ["train": total])
            let part = info.range(of: "train")
            #expect(part.lowerBound == next, "shard \(index)/\(count) of \(total) in chunks of \(chunkSize): \(part)")
            #expect(part.isEmpty || part.lowerBound % chunkSize == 0)
            #expect(part.upperBound == total || part.upperBound % chunkSize == 0)
            next = part.upperBound
            // Chunk counts of the parts differ by at most one.
            let chunks = (total + chunkSize - 1) / chunkSize
            let mine = (part.count + chunkSize - 1) / chunkSize
            #expect(mine == chunks / count || mine == chunks / count + 1)
        }
        #expect(next == total)
    }

    @Test func shardValuesAndJobArrayVariables() throws {
        #expect(try Shard.parse("2/5", environment: [:]) == Shard(index: 2, count: 5))
        #expect(try Shard.parse("auto", environment: ["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5"]) == Shard(index: 4, count: 5))
        #expect(try Shard.parse("auto", environment: ["SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "5",
                                                     "SLURM_ARRAY_TASK_COUNT": "5"]) == Shard(index: 4, count: 5))
        #expect(try Shard.parse("auto/3", environment: ["JOB_COMPLETION_INDEX": "2"]) == Shard(index: 2, count: 3))
        #expect(try Shard.parse("auto/3", environment: ["SLURM_ARRAY_TASK_ID": "1"]) == Shard(index: 1, count: 3))
        let failures: [(String, [String: String], String)] = [
            ("3/3", [:], "--shard 3/3: the index must be in 0...2"),
            ("1", [:], "--shard 1: expected i/N"),
            ("x/2", [:], "--shard x/2: the index \"x\" is not a non-negative integer"),
            ("1/0", [:], "--shard 1/0: the count \"0\" is not an integer in 1...1000000"),
            ("9223372036854775806/9223372036854775807", [:], "the count \"9223372036854775807\" is not an integer in 1...1000000"),
            ("auto", ["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "-1"], "SLURM_ARRAY_TASK_COUNT=-1 is not an integer in 0...2147483647"),
            ("auto", ["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "0"], "SLURM_ARRAY_TASK_COUNT=0 is not an integer in 1...1000000"),
            ("auto", ["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "-9223372036854775808"],
             "SLURM_ARRAY_TASK_MIN=-9223372036854775808 is not an integer in 0...2147483647"),
            ("auto", [:], "--shard auto: neither SLURM_ARRAY_TASK_ID"),
            ("auto", ["JOB_COMPLETION_INDEX": "1"], "--shard auto: a Kubernetes Indexed Job sets no count; give it as --shard auto/N"),
            ("auto", ["SLURM_ARRAY_TASK_ID": "1"], "SLURM_ARRAY_TASK_COUNT is not; give the count as --shard auto/N"),
            ("auto/4", ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"], "the Slurm job array has 3 tasks, not 4"),
            ("auto", ["SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "6"],
             "the job array 2-6 has 3 tasks, not one per index"),
            ("auto/3", ["JOB_COMPLETION_INDEX": "3"], "JOB_COMPLETION_INDEX=3 is not below the count 3"),
        ]
        for (text, environment, message) in failures {
            #expect { try Shard.parse(text, environment: environment) } throws: { "\($0)".contains(message) }
        }
    }

    @Test func anUnshardedManifestIsWrittenAsBefore() throws {
        var settings = shardableSettings()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(Manifest(settings: settings)), as: UTF8.self)
        #expect(!json.contains("shard"))
        settings.shard = ShardInfo(try Shard(index: 1, count: 2), chunkSize: 4, splitCounts: settings.splitCounts)
        let sharded = String(decoding: try encoder.encode(Manifest(settings: settings)), as: UTF8.self)
        #expect(sharded.contains("\"shard\":{\"chunkSize\":4,\"count\":2,\"index\":1,\"ranges\":{\"train\":{\"end\":37,\"start\":20},\"val\":{\"end\":9,\"start\":4}}}"), "\(sharded)")
        #expect(try JSONDecoder().decode(Manifest.self, from: Data(sharded.utf8)).settings == settings)
    }
}

@Suite struct CacheMergeTests {
    @Test(arguments: [StorageType.int8, .bf16])
    func shardsMergeIntoWhatOneWriterWrites(storage: StorageType) throws {
        let settings = shardableSettings(storage: storage)
        var made: [String] = []
        defer { made.forEach(removeFolder) }
        let wholePath = temporaryFolder("whole")
        made.append(wholePath)
        let whole = try writeSyntheticCache(wholePath, settings: settings, shard: nil)
        // Four shards of 10 + 3 chunks: val leaves one shard empty.
        let shards = try (0..<4).map { i in
            let path = temporaryFolder("shard\(i)")
            made.append(path)
            try writeSyntheticCache(path, settings: settings, shard: try Shard(index: i, count: 4))
            return path
        }
        let mergedPath = temporaryFolder("merged")
        made.append(mergedPath)
        let output = mergedPath + "/cache"
        let merged = try CacheMerge.merge(shards: shards.reversed(), into: output)
        #expect(merged.manifest == whole.manifest)
        for split in settings.splits {
            #expect(try allRecordBytes(merged, split: split) == allRecordBytes(whole, split: split))
            #expect(try merged.progress(of: split) == SplitProgress(written: settings.splitCounts[split]!, complete: true))
        }
        #expect(try digestsOf(merged) == digestsOf(whole))
        #expect(try merged.int8Scales() == (storage == .int8 ? mergeScales : nil))
        #expect(try merged.blob("extra")?.tensors["w"] == mergeBlob.tensors[0].tensor)
    }

    @Test func aKilledMergeNeverLooksCompleteAndResumes() throws {
        let settings = shardableSettings()
        var made: [String] = []
        defer { made.forEach(removeFolder) }
        let wholePath = temporaryFolder("whole")
        made.append(wholePath)
        let whole = try writeSyntheticCache(wholePath, settings: settings, shard: nil)
        let shards = try (0..<3).map { i in
            let path = temporaryFolder("shard\(i)")
            made.append(path)
            try writeSyntheticCache(path, settings: settings, shard: try Shard(index: i, count: 3))
            return path
        }
        // What a merge killed part way leaves: the manifest and a prefix of train, none complete.
        let output = temporaryFolder("merged")
        made.append(output)
        do {
            var manifestSettings = settings
            manifestSettings.shard = nil
            let partial = try ActivationCache.openForWriting(path: output, settings: manifestSettings, blobs: [mergeBlob])
            try partial.storeInt8Scales(mergeScales)
            let prefix = try (0..<15).map { (index: $0, bytes: try syntheticRecord("train", $0, storage: .int8)) }
            try partial.append(split: "train", records: prefix, progress: SplitProgress(written: 15, complete: false))
        }
        let report = try CacheReport.make(try ActivationCache.open(path: output), verify: false, digest: false)
        #expect(report.splits.map(\.complete) == [false, false])
        let merged = try CacheMerge.merge(shards: shards, into: output)
        #expect(try digestsOf(merged) == digestsOf(whole))
        #expect(try allRecordBytes(merged, split: "train") == allRecordBytes(whole, split: "train"))
    }

    @Test func refusalsNameTheShardAndWriteNothing() throws {
        let settings = shardableSettings()
        var made: [String] = []
        defer { made.forEach(removeFolder) }
        func shard(_ i: Int, of n: Int = 3, settings: ExtractionSettings? = nil, chunkSize: Int = 4, stopAfter: Int? = nil, damage: Int? = nil) throws -> String {
            let path = temporaryFolder("shard\(i)")
            made.append(path)
            try writeSyntheticCache(path, settings: settings ?? shardableSettings(), shard: try Shard(index: i, count: n),
                                    chunkSize: chunkSize, stopAfter: stopAfter, damage: damage)
            return path
        }
        let good = try (0..<3).map { try shard($0) }
        func refused(_ paths: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let folder = temporaryFolder("refused")
            defer { removeFolder(folder) }
            let output = folder + "/cache"
            #expect(sourceLocation: sourceLocation) { try CacheMerge.merge(shards: paths, into: output) } throws: { "\($0)".contains(message) }
            #expect(!FileManager.default.fileExists(atPath: output), "a refused merge wrote \(output)", sourceLocation: sourceLocation)
        }
        let incomplete = try shard(1, stopAfter: 4)
        refused([good[0], incomplete, good[2]], "\(incomplete): shard 1/3 is incomplete (train 4 of 12 examples, val 0 of 4 examples)")
        // Killed after its last record, before it marked the part finished.
        let unfinished = temporaryFolder("shard1-unfinished")
        made.append(unfinished)
        do {
            let cache = try writeSyntheticCache(unfinished, settings: settings, shard: try Shard(index: 1, count: 3))
            try cache.append(split: "train", records: [], progress: SplitProgress(written: 12, complete: false))
        }
        refused([good[0], unfinished, good[2]], "\(unfinished): shard 1/3 is incomplete (train has all 12 examples but was not marked finished)")
        var other = settings
        other.zstdLevel = 3
        let foreign = try shard(2, settings: other)
        refused([good[0], good[1], foreign], "\(foreign) and \(good[0]) are not shards of one extraction:\n  zstd level: 3 in \(foreign), 1 in \(good[0])")
        refused([good[0], good[1]], "shard 2/3 missing")
        refused([good[0], good[1], try shard(1), good[2]], "are both shard 1/3")
        let unsharded = temporaryFolder("whole")
        made.append(unsharded)
        try writeSyntheticCache(unsharded, settings: settings, shard: nil)
        refused([good[0], unsharded], "\(unsharded): not a shard")
        refused([], "no shard caches given")

        // A damaged record is found while copying: reported by its shard's folder and key, and the
        // output is left incomplete.
        let damaged = try shard(1, damage: 17)
        let output = temporaryFolder("damaged")
        made.append(output)
        #expect { try CacheMerge.merge(shards: [good[0], damaged, good[2]], into: output) } throws: {
            "\($0)" == "\(damaged): record train:17 is damaged: checksum mismatch in layer 2; remove that shard's folder and extract it "
                + "again (--shard 1/3; extract leaves a complete shard as it is), then run the same merge, which resumes"
        }
        let left = try ActivationCache.open(path: output)
        #expect(try left.progress(of: "train").complete == false && left.progress(of: "val").complete == false)
        // Another blob under the same name means a damaged shard.
        let otherBlob = temporaryFolder("shard-blob")
        made.append(otherBlob)
        do {
            var s = settings
            s.shard = ShardInfo(try Shard(index: 2, count: 3), chunkSize: 4, splitCounts: s.splitCounts)
            let cache = try ActivationCache.openForWriting(path: otherBlob, settings: s,
                                                           blobs: [BlobContent(name: "extra", tensors: [("w", Tensor(shape: [1], scalars: [3]))], metadata: [:])])
            try cache.storeInt8Scales(mergeScales)
            for split in s.splits {
                let part = s.shard!.range(of: split)
                try cache.append(split: split, records: try part.map { (index: $0, bytes: try syntheticRecord(split, $0, storage: .int8)) },
                                 progress: SplitProgress(written: part.count, complete: true))
            }
        }
        refused([good[0], good[1], otherBlob], "\(otherBlob) and \(good[0]) hold different blob:extra")
    }
}
