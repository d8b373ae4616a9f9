// The LMDB wrapper on real environments in temporary folders: persistence, abort on throw, key
// order, named databases, map growth, and misuse (read-only writes, bad keys, resizing under an
// open transaction) reported as errors that name the path.
import ActivationStore
import Dispatch
import Foundation
import Testing

func temporaryFolder(_ name: String = "lmdb") -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeFolder(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// A 4-byte big-endian key, so numeric order is key order.
func key(_ index: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(index).bigEndian) { [UInt8]($0) } }

struct Boom: Error {}

@Suite struct LMDBTests {
    @Test func putGetDeleteAndPersistence() throws {
        let path = temporaryFolder()
        defer { removeFolder(path) }
        do {
            let env = try LMDBEnvironment(path: path)
            try env.write { txn throws in
                try txn.put("a", Array("one".utf8))
                try txn.put([UInt8]("b".utf8), [UInt8](repeating: 7, count: 10_000))
                try txn.put("empty value", [UInt8]())
            }
            try env.read { txn throws in
                #expect(try txn.value(forKey: "a") == Array("one".utf8))
                let length = try txn.withValue(forKey: "b") { $0.count }
                #expect(length == 10_000)
                #expect(try txn.value(forKey: "empty value") == [])
                #expect(try txn.value(forKey: "zzz") == nil)
                #expect(try txn.withValue(forKey: "zzz") { _ in Issue.record("called for an absent key") } == nil)
                #expect(try txn.count() == 3)
            }
            try env.write { txn throws in
                #expect(try txn.delete("a"))
                #expect(try !txn.delete("a"))
            }
        }
        let reopened = try LMDBEnvironment(path: path, options: .init(readOnly: true))
        try reopened.read { txn throws in
            #expect(try txn.value(forKey: "a") == nil)
            #expect(try txn.value(forKey: "b")?.count == 10_000)
        }
        #expect(reopened.usedBytes > 10_000 && reopened.usedBytes <= reopened.mapSize)
    }

    /// A data.mdb that is a link to the file elsewhere (a cache assembled from shared storage) opens:
    /// its size is the file's, not the link's, which had been reported as a truncated environment.
    @Test func aLinkedDataFileOpens() throws {
        let path = temporaryFolder(), linked = temporaryFolder()
        defer { removeFolder(path); removeFolder(linked) }
        let env = try LMDBEnvironment(path: path)
        try env.write { txn throws in try txn.put("a", [UInt8](repeating: 3, count: 50_000)) }
        try FileManager.default.createSymbolicLink(atPath: linked + "/data.mdb", withDestinationPath: path + "/data.mdb")
        let opened = try LMDBEnvironment(path: linked, options: .init(readOnly: true, noLock: true))
        try opened.read { txn throws in #expect(try txn.value(forKey: "a")?.count == 50_000) }
    }

    @Test func aThrowingWriteLeavesNothingBehind() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        try env.write { txn throws in try txn.put("kept", [1]) }
        #expect(throws: Boom.self) {
            try env.write { txn throws in
                try txn.put([1, 2, 3], [1])
                #expect(try txn.value(forKey: [1, 2, 3]) == [1])   // visible inside its own transaction
                #expect(try txn.delete("kept"))
                throw Boom()
            }
        }
        try env.read { txn throws in
            #expect(try txn.count() == 1)
            #expect(try txn.value(forKey: "kept") == [1])
        }
        // The aborted write released the writer and the bookkeeping: resizing and writing still work.
        try env.setMapSize(env.mapSize * 2)
        try env.write { txn throws in try txn.put("after", [2]) }
    }

    @Test func cursorsWalkKeysInOrderFromAKeyAndScanPrefixes() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        let keys = ["b/2", "a/1", "b/1", "c/9", "b/10"]
        try env.write { txn throws in for k in keys { try txn.put(k, Array(k.utf8)) } }
        func strings(_ scan: (borrowing LMDBTransaction, (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool) throws -> Void) throws -> [String] {
            var seen: [String] = []
            try env.read { txn throws in
                try scan(txn) { key, value in
                    #expect(key.elementsEqual(value))
                    seen.append(String(decoding: key, as: UTF8.self))
                    return true
                }
            }
            return seen
        }
        #expect(try strings { try $0.forEach($1) } == keys.sorted())
        #expect(try strings { try $0.forEach(withPrefix: "b/", $1) } == ["b/1", "b/10", "b/2"])
        #expect(try strings { try $0.forEach(withPrefix: "", $1) } == keys.sorted())
        #expect(try strings { try $0.forEach(withPrefix: "d", $1) } == [])
        #expect(try strings { try $0.forEach(from: "b/15", $1) } == ["b/2", "c/9"])
        #expect(try strings { try $0.forEach(from: "zzz", $1) } == [])

        // Stopping early: `body` returning false ends the scan.
        var firstTwo: [String] = []
        try env.read { txn throws in
            try txn.forEach { key, _ in firstTwo.append(String(decoding: key, as: UTF8.self)); return firstTwo.count < 2 }
        }
        #expect(firstTwo == ["a/1", "b/1"])

        try env.read { txn throws in
            try txn.withCursor { cursor throws in
                let text = { (entry: LMDBCursor.Entry?) in entry.map { String(decoding: $0.key, as: UTF8.self) } }
                #expect(text(try cursor.last()) == "c/9")
                #expect(text(try cursor.previous()) == "b/2")
                #expect(text(try cursor.seek(atLeast: "b/")) == "b/1")
                #expect(text(try cursor.next()) == "b/10")
                #expect(text(try cursor.first()) == "a/1")
                #expect(text(try cursor.previous()) == nil)
                #expect(text(try cursor.seek(atLeast: "c/99")) == nil)
            }
        }
        let emptyFolder = temporaryFolder()
        defer { removeFolder(emptyFolder) }
        let empty = try LMDBEnvironment(path: emptyFolder)
        try empty.read { txn throws in
            try txn.withCursor { cursor throws in
                #expect(try cursor.first() == nil)
                #expect(try cursor.last() == nil)
            }
        }
    }

    /// (Named databases are keys of the main one, so data lives in named databases only.)
    @Test func appendRefusesOutOfOrderKeysAndNamedDatabasesAreSeparate() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        let meta = try env.openDatabase("meta", create: true)
        let records = try env.openDatabase("records", create: true)
        #expect(meta != records && meta != .main)
        #expect(try env.openDatabase("meta") == meta)
        try env.write { txn throws in
            for index in 0..<1_000 { try txn.put(key(index), key(index), in: records, flags: .append) }
            try txn.put([1], [9], in: meta)
        }
        do {
            try env.write { txn throws in try txn.put(key(5), [0], in: records, flags: .append) }
            Issue.record("an out-of-order append was accepted")
        } catch let error as LMDBError {
            #expect(error.isKeyExists && error.message.contains("MDB_KEYEXIST"))
        }
        do {
            try env.write { txn throws in try txn.put([1], [0], in: meta, flags: .noOverwrite) }
            Issue.record("noOverwrite replaced a value")
        } catch let error as LMDBError {
            #expect(error.isKeyExists && error.description.contains("0x01"))
        }
        try env.read { txn throws in
            #expect(try txn.value(forKey: [1], in: meta) == [9])
            #expect(try txn.value(forKey: key(999), in: records) == key(999))
            #expect(try txn.count(in: meta) == 1)
            #expect(try txn.count(in: records) == 1_000)
            #expect(try txn.count() == 2)   // the main database holds the two names
        }
        #expect(throws: LMDBError.self) { try env.openDatabase("absent") }
        let readOnly = try LMDBEnvironment(path: env.path, options: .init(readOnly: true))
        let recordsAgain = try readOnly.openDatabase("records", create: true)
        try readOnly.read { txn throws in #expect(try txn.count(in: recordsAgain) == 1_000) }
    }

    @Test func writingToAReadOnlyEnvironmentIsAClearError() throws {
        let path = temporaryFolder()
        defer { removeFolder(path) }
        _ = try LMDBEnvironment(path: path)
        let env = try LMDBEnvironment(path: path, options: .init(readOnly: true))
        do {
            try env.write { txn throws in try txn.put([1], [1]) }
            Issue.record("wrote to a read-only environment")
        } catch let error as LMDBError {
            #expect(error.description.contains(path) && error.description.contains("read-only"))
        }
        // Writing inside a read transaction of a writable environment: refused the same way.
        let writableFolder = temporaryFolder()
        defer { removeFolder(writableFolder) }
        let writable = try LMDBEnvironment(path: writableFolder)
        try writable.read { txn throws in
            #expect(throws: LMDBError.self) { try txn.put("k", [1]) }
            #expect(throws: LMDBError.self) { try txn.delete("k") }
        }
        let noLock = try LMDBEnvironment(path: path, options: .init(readOnly: true, noLock: true))
        try noLock.read { txn throws in #expect(try txn.count() == 0) }
    }

    @Test func openingAMissingFolderNamesIt() {
        do {
            _ = try LMDBEnvironment(path: "/nonexistent/cache")
            Issue.record("opened a missing folder")
        } catch {
            #expect("\(error)" == "opening /nonexistent/cache: No such file or directory")
        }
        // Read-only needs an existing environment, not just a folder.
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        #expect(throws: LMDBError.self) { try LMDBEnvironment(path: folder, options: .init(readOnly: true)) }
    }

    @Test func badKeysAreErrors() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        let tooLong = [UInt8](repeating: 1, count: env.maxKeySize + 1)
        try env.write { txn throws in
            #expect(throws: LMDBError.self) { try txn.put([UInt8](), [1]) }
            #expect(throws: LMDBError.self) { try txn.put(tooLong, [1]) }
            try txn.put([UInt8](repeating: 1, count: env.maxKeySize), [1])
        }
        try env.read { txn throws in
            #expect(throws: LMDBError.self) { try txn.value(forKey: [UInt8]()) }
            #expect(try txn.value(forKey: tooLong) == nil)   // LMDB does not check; no such key can exist
        }
    }

    @Test func aFullMapIsRecognisedAndGrown() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder, options: .init(mapSize: 64 << 10))
        let value = [UInt8](repeating: 3, count: 4000)
        do {
            try env.write { txn throws in for i in 0..<100 { try txn.put(key(i), value) } }
            Issue.record("100 × 4 KB fitted a 64 KB map")
        } catch let error as LMDBError {
            #expect(error.isMapFull)
        }
        var attempts = 0
        try env.writeGrowing { txn throws in
            attempts += 1
            for i in 0..<100 { try txn.put(key(i), value) }
        }
        #expect(attempts > 1 && env.mapSize >= (64 << 10) << (attempts - 1))
        try env.read { txn throws in
            #expect(try txn.count() == 100)
            for i in 0..<100 { #expect(try txn.value(forKey: key(i)) == value) }
        }
    }

    /// LMDB does not check that no transaction is open when the map is resized (the remap would
    /// leave its values dangling); the wrapper does, and says so.
    @Test func resizingUnderAnOpenTransactionIsRefused() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        try env.write { txn throws in try txn.put("k", [1]) }
        let before = env.mapSize
        try env.read { txn throws in
            do {
                try env.setMapSize(before * 2)
                Issue.record("resized under an open read transaction")
            } catch let error as LMDBError {
                #expect(error.description.contains("transactions open"))
            }
            #expect(try txn.value(forKey: "k") == [1])
        }
        #expect(env.mapSize == before)
        try env.setMapSize(before * 2)
        #expect(env.mapSize == before * 2)
    }

    @Test func concurrentReadersSeeTheirSnapshot() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        try env.write { txn throws in for i in 0..<256 { try txn.put(key(i), key(i)) } }
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 16) { worker in
            do {
                for round in 0..<20 {
                    try env.read { txn throws in
                        let i = (worker * 31 + round * 7) % 256
                        if try txn.value(forKey: key(i)) != key(i) { failures.add("worker \(worker): key \(i)") }
                    }
                }
            } catch {
                failures.add("\(error)")
            }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
    }

    @Test func reservedPutsWriteInPlace() throws {
        let folder = temporaryFolder()
        defer { removeFolder(folder) }
        let env = try LMDBEnvironment(path: folder)
        try env.write { txn throws in
            try txn.put([5], reserving: 4) { buffer in buffer.copyBytes(from: [9, 8, 7, 6]) }
        }
        try env.read { txn throws in #expect(try txn.value(forKey: [5]) == [9, 8, 7, 6]) }
        #expect(LMDBEnvironment.version.hasPrefix("LMDB 0.9"))
    }
}

/// Messages collected from several threads.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func add(_ message: String) { lock.lock(); stored.append(message); lock.unlock() }
    var messages: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}
