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
