// The LMDB wrapper on real environments in temporary folders.
import ActivationStore
import Foundation
import Testing

func temporaryFolder(_ name: String = "lmdb") -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

struct Boom: Error {}

@Suite struct LMDBTests {
    @Test func putGetDeleteAndPersistence() throws {
        let path = temporaryFolder()
        do {
            let env = try LMDBEnvironment(path: path)
            try env.write { txn throws in
                try txn.put(Array("one".utf8), forKey: Array("a".utf8))
                try txn.put([UInt8](repeating: 7, count: 10_000), forKey: Array("b".utf8))
            }
            try env.read { txn throws in
                #expect(try txn.value(forKey: Array("a".utf8)) == Array("one".utf8))
                let length = try txn.withValue(forKey: Array("b".utf8)) { $0.count }
                #expect(length == 10_000)
                #expect(try txn.value(forKey: Array("zzz".utf8)) == nil)
                #expect(try txn.count() == 2)
            }
            try env.write { txn throws in #expect(try txn.delete(Array("a".utf8))) }
        }
        let reopened = try LMDBEnvironment(path: path, options: .init(readOnly: true))
        try reopened.read { txn throws in
            #expect(try txn.value(forKey: Array("a".utf8)) == nil)
            #expect(try txn.value(forKey: Array("b".utf8))?.count == 10_000)
        }
    }

    @Test func aThrowingWriteLeavesNothingBehind() throws {
        let env = try LMDBEnvironment(path: temporaryFolder())
        #expect(throws: Boom.self) {
            try env.write { txn throws in
                try txn.put([1, 2, 3], forKey: [1])
                throw Boom()
            }
        }
        try env.read { txn throws in #expect(try txn.count() == 0) }
    }

    @Test func cursorsWalkKeysInOrderAndScanPrefixes() throws {
        let env = try LMDBEnvironment(path: temporaryFolder())
        let keys = ["b/2", "a/1", "b/1", "c/9", "b/10"]
        try env.write { txn in for k in keys { try txn.put(Array(k.utf8), forKey: Array(k.utf8)) } }
        var seen: [String] = []
        try env.read { txn throws in
            try txn.forEach { key, _ in seen.append(String(decoding: key, as: UTF8.self)); return true }
        }
        #expect(seen == keys.sorted())
        var prefixed: [String] = []
        try env.read { txn throws in
            try txn.forEach(withPrefix: Array("b/".utf8)) { key, _ in prefixed.append(String(decoding: key, as: UTF8.self)); return true }
            let last = try txn.withCursor { cursor in try cursor.last().map { String(decoding: $0.key, as: UTF8.self) } }
            #expect(last == "c/9")
        }
        #expect(prefixed == ["b/1", "b/10", "b/2"])
    }

    /// (Named databases are keys of the main one, so data lives in named databases only.)
    @Test func appendRefusesOutOfOrderKeysAndNamedDatabasesAreSeparate() throws {
        let env = try LMDBEnvironment(path: temporaryFolder())
        let meta = try env.openDatabase("meta", create: true)
        let records = try env.openDatabase("records", create: true)
        try env.write { txn throws in
            try txn.put([1], forKey: [1], in: records, flags: .append)
            try txn.put([2], forKey: [2], in: records, flags: .append)
            try txn.put([9], forKey: [1], in: meta)
        }
        do {
            try env.write { txn throws in try txn.put([0], forKey: [0], in: records, flags: .append) }
            Issue.record("an out-of-order append was accepted")
        } catch let error as LMDBError {
            #expect(error.message.contains("MDB_KEYEXIST"))
        }
        try env.read { txn throws in
            #expect(try txn.value(forKey: [1], in: meta) == [9])
            #expect(try txn.value(forKey: [1], in: records) == [1])
            #expect(try txn.count(in: meta) == 1)
            #expect(try txn.count() == 2)   // the main database holds the two names
        }
    }

    @Test func writingToAReadOnlyEnvironmentIsAClearError() throws {
        let path = temporaryFolder()
        _ = try LMDBEnvironment(path: path)
        let env = try LMDBEnvironment(path: path, options: .init(readOnly: true))
        do {
            try env.write { txn in try txn.put([1], forKey: [1]) }
            Issue.record("wrote to a read-only environment")
        } catch let error as LMDBError {
            #expect(error.description.contains(path) && error.description.contains("read-only"))
        }
        let noLock = try LMDBEnvironment(path: path, options: .init(readOnly: true, noLock: true))
        try noLock.read { txn throws in #expect(try txn.count() == 0) }
    }

    @Test func openingAMissingFolderNamesIt() {
        do {
            _ = try LMDBEnvironment(path: "/nonexistent/cache")
            Issue.record("opened a missing folder")
        } catch {
            #expect("\(error)".contains("/nonexistent/cache") && "\(error)".contains("No such file"))
        }
    }

    @Test func aFullMapIsRecognisedAndGrown() throws {
        let env = try LMDBEnvironment(path: temporaryFolder(), options: .init(mapSize: 64 << 10))
        let value = [UInt8](repeating: 3, count: 4000)
        do {
            try env.write { txn in for i in 0..<100 { try txn.put(value, forKey: withUnsafeBytes(of: UInt32(i).bigEndian) { [UInt8]($0) }) } }
            Issue.record("100 × 4 KB fitted a 64 KB map")
        } catch let error as LMDBError {
            #expect(error.isMapFull)
        }
        try env.writeGrowing { txn in
            for i in 0..<100 { try txn.put(value, forKey: withUnsafeBytes(of: UInt32(i).bigEndian) { [UInt8]($0) }) }
        }
        #expect(env.mapSize > 64 << 10)
        try env.read { txn throws in #expect(try txn.count() == 100) }
    }

    @Test func reservedPutsWriteInPlace() throws {
        let env = try LMDBEnvironment(path: temporaryFolder())
        try env.write { txn throws in
            try txn.put(reserving: 4, forKey: [5]) { buffer in buffer.copyBytes(from: [9, 8, 7, 6]) }
        }
        try env.read { txn throws in #expect(try txn.value(forKey: [5]) == [9, 8, 7, 6]) }
        #expect(LMDBEnvironment.version.hasPrefix("LMDB"))
    }
}

@Suite struct ZstdTests {
    func roundTrip(_ data: [UInt8], level: Int32) throws -> Int {
        let compressor = ZstdCompressor(level: level), decompressor = ZstdDecompressor()
        var compressed = [UInt8](repeating: 0, count: ZstdCompressor.compressBound(data.count))
        let size = try data.withUnsafeBytes { src in try compressed.withUnsafeMutableBytes { try compressor.compress(src, into: $0) } }
        var back = [UInt8](repeating: 0, count: data.count)
        let restored = try compressed[..<size].withUnsafeBytes { src in
            #expect(ZstdDecompressor.contentSize(of: src) == data.count)
            return try back.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) }
        }
        #expect(restored == data.count && back == data)
        return size
    }

    @Test(arguments: [Int32(1), 3, 9])
    func roundTrips(level: Int32) throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var random = [UInt8](repeating: 0, count: 50_000)
        for i in random.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            random[i] = UInt8(truncatingIfNeeded: state >> 56)
        }
        let repetitive = (0..<50_000).map { UInt8($0 % 7) }
        _ = try roundTrip(random, level: level)
        #expect(try roundTrip(repetitive, level: level) < 1_000)
        _ = try roundTrip([], level: level)
    }

    @Test func faultsAreErrorsNotCrashes() throws {
        let data = (0..<10_000).map { UInt8($0 % 251) }
        let compressor = ZstdCompressor(), decompressor = ZstdDecompressor()
        var compressed = [UInt8](repeating: 0, count: ZstdCompressor.compressBound(data.count))
        let size = try data.withUnsafeBytes { src in try compressed.withUnsafeMutableBytes { try compressor.compress(src, into: $0) } }
        compressed.removeLast(compressed.count - size)
        var tiny = [UInt8](repeating: 0, count: 10)
        #expect(throws: ZstdError.self) {
            try data.withUnsafeBytes { src in try tiny.withUnsafeMutableBytes { try compressor.compress(src, into: $0) } }
        }
        var out = [UInt8](repeating: 0, count: data.count)
        #expect(throws: ZstdError.self) {   // destination too small
            try compressed.withUnsafeBytes { src in try tiny.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) } }
        }
        #expect(throws: ZstdError.self) {   // truncated
            try compressed.dropLast(5).withUnsafeBytes { src in try out.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) } }
        }
        // Flipped bytes anywhere: an error (the content checksum catches what the format does not).
        for position in stride(from: 0, to: compressed.count, by: max(1, compressed.count / 40)) {
            var corrupted = compressed
            corrupted[position] ^= 0x5A
            #expect(throws: ZstdError.self, "flipped byte \(position) went unnoticed") {
                try corrupted.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) } }
            }
        }
    }
}
