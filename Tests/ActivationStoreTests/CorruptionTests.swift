// Damage on disk, made the way it happens: bytes flipped inside data.mdb itself and the file cut
// short. `inspect --verify` (CacheReport) names every damaged record; a truncated data file is
// refused when the cache is opened, naming the file, instead of killing the reader with SIGBUS.
// A second writer is refused naming the one that holds the cache.
import ActivationStore
import Foundation
import Testing

/// Flips the byte `offset(recordLength)` of a stored record inside `path`/data.mdb, wherever the
/// record's bytes appear in the file (LMDB copies pages on write, so stale copies may exist too;
/// flipping all of them makes sure the live one is hit). Returns how many copies were changed.
@discardableResult
func flipStoredByte(cache path: String, split: String, index: Int, offset: (Int) -> Int) throws -> Int {
    var record: [UInt8]?
    try ActivationCache.open(path: path).forEachRecord(split: split) { i, _, raw in
        if i == index { record = Array(raw) }
        return i < index
    }
    guard let record else { throw CacheError("\(path): no record \(split):\(index) to damage") }
    let file = URL(fileURLWithPath: path + "/data.mdb")
    var data = try Data(contentsOf: file)
    let needle = Data(record)
    var changed = 0
    var searchFrom = data.startIndex
    while let range = data.range(of: needle, in: searchFrom..<data.endIndex) {
        data[range.lowerBound + offset(record.count)] ^= 0x5A
        searchFrom = range.upperBound
        changed += 1
    }
    try data.write(to: file)
    return changed
}

/// Replaces `text` by `replacement` (of the same length) in every copy LMDB keeps of it in
/// `path`/data.mdb, as a damaged disk would change the live one; returns how many were changed.
func replaceEveryCopy(cache path: String, of text: String, with replacement: String) throws -> Int {
    precondition(text.utf8.count == replacement.utf8.count)
    let file = URL(fileURLWithPath: path + "/data.mdb")
    var data = try Data(contentsOf: file)
    var changed = 0, searchFrom = data.startIndex
    while let range = data.range(of: Data(text.utf8), in: searchFrom..<data.endIndex) {
        data.replaceSubrange(range, with: Data(replacement.utf8))
        searchFrom = range.upperBound
        changed += 1
    }
    try data.write(to: file)
    return changed
}

@Suite struct CorruptionTests {
    @Test func everyRecordWithAFlippedByteIsNamed() throws {
        let path = temporaryFolder("flipped")
        defer { removeFolder(path) }
        try writeSyntheticCache(path, settings: shardableSettings(storage: .f16), shard: nil)
        #expect(try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: false).damaged == [])
        // Header (the label field), the first block's first byte, the last block's last byte, a
        // record of the other split.
        #expect(try flipStoredByte(cache: path, split: "train", index: 3) { _ in 5 } >= 1)
        #expect(try flipStoredByte(cache: path, split: "train", index: 17) { _ in 20 + 24 * 2 + 8 } >= 1)
        #expect(try flipStoredByte(cache: path, split: "train", index: 36) { $0 - 1 } >= 1)
        #expect(try flipStoredByte(cache: path, split: "val", index: 0) { $0 - 1 } >= 1)
        let report = try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: true)
        #expect(report.damaged == [
            "record train:3 is damaged: header checksum mismatch",
            "record train:17 is damaged: checksum mismatch in layer 0",
            "record train:36 is damaged: checksum mismatch in layer 2",
            "record val:0 is damaged: checksum mismatch in layer 2",
        ])
        // Without verification, the first damaged header read is an error naming it.
        #expect { try CacheReport.make(try ActivationCache.open(path: path), verify: false, digest: false) } throws: {
            "\($0)" == "record train:3 is damaged: header checksum mismatch"
        }
    }

    /// A split's progress record has no checksum, and readers take their example count from it:
    /// a damaged count on a complete split had trained on part of it while --verify passed.
    @Test func aDamagedProgressRecordIsRefused() throws {
        let path = temporaryFolder("progress")
        defer { removeFolder(path) }
        try writeSyntheticCache(path, settings: shardableSettings(storage: .f16), shard: nil)
        #expect(try ActivationCache.open(path: path).progress(of: "train") == SplitProgress(written: 37, complete: true))
        #expect(try replaceEveryCopy(cache: path, of: #""written":37"#, with: #""written":20"#) >= 1)
        let message = "\(path): the train split's progress record says 20 of 37 examples, complete; the cache is damaged"
        #expect(throws: CacheError(message)) { try ActivationCache.open(path: path).progress(of: "train") }
        #expect(throws: CacheError(message)) { try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: true) }
    }

    /// LMDB keeps no checksums: a damaged page can drop a record or file it under another key.
    /// --verify names every record the progress counts that is not there, and every one past it.
    @Test func missingAndStrayRecordsAreNamed() throws {
        let path = temporaryFolder("missing")
        defer { removeFolder(path) }
        var settings = shardableSettings(counts: ["train": 6], storage: .f16)
        settings.splits = ["train"]
        let cache = try ActivationCache.openForWriting(path: path, settings: settings, blobs: [mergeBlob])
        let records = try [0, 1, 3, 4, 7].map { (index: $0, bytes: try syntheticRecord("train", $0, storage: .f16)) }
        try cache.append(split: "train", records: records, progress: SplitProgress(written: 6, complete: true))
        let report = try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: false)
        #expect(report.damaged == ["record train:2 is missing", "record train:5 is missing",
                                   "record train:7 is beyond the 6 the split's progress counts"])
        // A reader (fit's batches) calls such a record damage, with what to do.
        let message = "\(path): record train:2 is missing; the cache is damaged (`sidecar inspect \(path) --verify` lists every damaged "
            + "or missing record), restore it from a copy or extract it again"
        #expect(throws: CacheError(message)) { try ActivationCache.open(path: path).withRecords(split: "train", indices: [1, 2]) { $0.count } }
        // Where the split is not finished, a record past what its progress counts is not written
        // yet; one it counts is still missing.
        try cache.append(split: "train", records: [], progress: SplitProgress(written: 5, complete: false))
        #expect(throws: CacheError("\(path): record train:5 is not written yet (the train split is incomplete); \(SplitProgress.toFinish)")) {
            try ActivationCache.open(path: path).withRecord(split: "train", index: 5) { $0.rows }
        }
        #expect(throws: CacheError(message)) { try ActivationCache.open(path: path).withRecord(split: "train", index: 2) { $0.rows } }
    }

    /// A run killed after its last record but before it marked the split finished: readers say
    /// so rather than "6 of 6 examples", which reads as a contradiction.
    @Test func everyRecordWrittenButUnfinishedIsNamedAsSuch() throws {
        let path = temporaryFolder("unfinished")
        defer { removeFolder(path) }
        var settings = shardableSettings(counts: ["train": 6], storage: .f16)
        settings.splits = ["train"]
        let cache = try ActivationCache.openForWriting(path: path, settings: settings, blobs: [mergeBlob])
        let records = try (0..<6).map { (index: $0, bytes: try syntheticRecord("train", $0, storage: .f16)) }
        try cache.append(split: "train", records: records, progress: SplitProgress(written: 6, complete: false))
        #expect(throws: CacheError("\(path): the train split has all 6 examples but was not marked finished; \(SplitProgress.toFinish)")) {
            try ActivationCache.open(path: path).requireComplete()
        }
        try cache.append(split: "train", records: [], progress: SplitProgress(written: 4, complete: false))
        #expect(throws: CacheError("\(path): the train split is incomplete (4 of 6 examples); \(SplitProgress.toFinish)")) {
            try ActivationCache.open(path: path).requireComplete()
        }
    }

    /// The manifest has no checksum: a record its settings do not allow (here, longer than a
    /// damaged N_max) is listed by --verify, as fit refuses it.
    @Test func recordsTheManifestDoesNotAllowAreListed() throws {
        let path = temporaryFolder("shape")
        defer { removeFolder(path) }
        var settings = shardableSettings(counts: ["train": 6], storage: .f16)
        settings.splits = ["train"]
        try writeSyntheticCache(path, settings: settings, shard: nil)
        #expect(try replaceEveryCopy(cache: path, of: #""maxTokens":8"#, with: #""maxTokens":2"#) >= 1)
        // N_max below max_length is no extraction's: refused as soon as the cache is opened.
        #expect(throws: CacheError("\(path): the manifest records preprocessing.max_length 8, more than maxTokens 2, which no "
                                   + "extraction writes; the cache is damaged")) { try ActivationCache.open(path: path) }
        // Without a max_length beside it, N_max 2 could be an extraction's; the records disagree.
        #expect(try replaceEveryCopy(cache: path, of: #""max_length":"8""#, with: #""max_lengtX":"8""#) >= 1)
        let report = try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: false)
        // Records i hold 1 + i % 3 rows.
        #expect(report.damaged == [2, 5].map { "record train:\($0) does not match the manifest: 3 tokens, more than the manifest's N_max 2; one of them is damaged" })
    }

    /// Scales of another count than the width, in a cache whose scales have no checksum (written
    /// before they had one), are named as such: they had been blamed on every record.
    @Test func int8ScalesOfAnotherCountAreNamed() throws {
        let path = temporaryFolder("scales-count")
        defer { removeFolder(path) }
        try writeSyntheticCache(path, settings: shardableSettings(storage: .int8), shard: nil)
        #expect(try replaceEveryCopy(cache: path, of: "int8-scales-xxh64", with: "int8-scales-xxh65") >= 1)
        // Layer 2's four scales become three, in as many bytes.
        #expect(try replaceEveryCopy(cache: path, of: "0.02,0.5]}", with: "0.025   ]}") >= 1)
        let message = "\(path): the int8 scales of layer 2 hold 3 values, not one per channel of the width 4; "
            + "the cache is damaged: remove it and extract it again"
        #expect(throws: CacheError(message)) { try ActivationCache.open(path: path).int8Scales() }
        #expect(throws: CacheError(message)) { try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: false) }
        // Layer 2's scales filed under layer 9.
        #expect(try replaceEveryCopy(cache: path, of: "0.025   ]}", with: "0.02,0.5]}") >= 1)
        #expect(try replaceEveryCopy(cache: path, of: #""2":["#, with: #""9":["#) >= 1)
        #expect(throws: CacheError("\(path): the int8 scales hold none for layer 2; the cache is damaged: remove it and extract it again")) {
            try ActivationCache.open(path: path).int8Scales()
        }
    }

    /// The int8 scales multiply every value of their channel: a damaged one is refused by every
    /// reader of records, and so by --verify.
    @Test func damagedInt8ScalesAreRefused() throws {
        let path = temporaryFolder("scales")
        defer { removeFolder(path) }
        try writeSyntheticCache(path, settings: shardableSettings(storage: .int8), shard: nil)
        #expect(try ActivationCache.open(path: path).int8Scales() == mergeScales)
        // The scales as stored (JSON with sorted keys): 0.5 becomes 9.5.
        #expect(try replaceEveryCopy(cache: path, of: ",0.5]}", with: ",9.5]}") >= 1)
        let message = "\(path): the int8 scales are damaged (their checksum does not match); remove the cache and extract it again (extract leaves a complete cache as it is)"
        #expect(throws: CacheError(message)) { try ActivationCache.open(path: path).int8Scales() }
        #expect(throws: CacheError(message)) { try CacheReport.make(try ActivationCache.open(path: path), verify: true, digest: true) }
    }

    @Test(arguments: [0.5, 0.9])
    func aTruncatedDataFileIsRefusedNamingIt(keptFraction: Double) throws {
        let path = temporaryFolder("truncated")
        defer { removeFolder(path) }
        try writeSyntheticCache(path, settings: shardableSettings(counts: ["train": 400, "val": 40], storage: .f32), shard: nil)
        let file = path + "/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let kept = Int(Double(size) * keptFraction) / 4096 * 4096
        #expect(truncate(file, off_t(kept)) == 0)
        for noLock in [false, true] {
            #expect { try ActivationCache.open(path: path, noLock: noLock) } throws: {
                "\($0)".hasPrefix("\(file) is truncated: it holds \(kept) bytes, but its meta page says the data reaches ")
            }
        }
        // Resuming a write into it is refused the same way.
        #expect { try writeSyntheticCache(path, settings: shardableSettings(counts: ["train": 400, "val": 40], storage: .f32), shard: nil) } throws: {
            "\($0)".hasPrefix("\(file) is truncated")
        }
    }

    @Test(arguments: [0, 100, 4096])
    func aDataFileShorterThanItsMetaPagesIsRefused(kept: Int) throws {
        let path = temporaryFolder("stub")
        defer { removeFolder(path) }
        try writeSyntheticCache(path, settings: shardableSettings(), shard: nil)
        let file = path + "/data.mdb"
        #expect(truncate(file, off_t(kept)) == 0)
        #expect { try ActivationCache.open(path: path) } throws: {
            "\($0)" == "\(file) is truncated: it holds \(kept) bytes, less than LMDB's two meta pages (8192 bytes); the environment is damaged, restore it from a copy or create it again"
        }
    }

    @Test func aSecondWriterIsRefusedNamingTheFirst() throws {
        let path = temporaryFolder("writers")
        defer { removeFolder(path) }
        do {
            let first = try ActivationCache.openForWriting(path: path, settings: shardableSettings(), blobs: [mergeBlob])
            // flock locks belong to an open file, so a second open in this process is refused as
            // another process would be.
            let command = ([URL(fileURLWithPath: CommandLine.arguments[0]).lastPathComponent] + CommandLine.arguments.dropFirst().prefix(1)).joined(separator: " ")
            #expect { try ActivationCache.openForWriting(path: path, settings: shardableSettings(), blobs: [mergeBlob]) } throws: {
                "\($0)" == "another \(command) is writing \(path) (pid \(getpid())); wait for it to end or use another --out folder"
            }
            withExtendedLifetime(first) {}
        }
        // Once the first writer is gone, the lock is free.
        _ = try ActivationCache.openForWriting(path: path, settings: shardableSettings(), blobs: [mergeBlob])
    }
}
