// A damaged branch or leaf page of data.mdb is refused by name when the environment opens: LMDB
// trusts its pages, and one flipped byte of a leaf page had killed the reader with SIGSEGV inside
// liblmdb. Every byte of a leaf page and of a branch page is flipped in turn; each environment
// either opens and reads every record (its size and its two ends), or is refused as damaged, naming the file. A crash fails
// the run.
import ActivationStore
import Foundation
import Testing

@Suite struct TreeDamageTests {
    static let pageSize = 4096

    /// An environment whose "records" database is two levels deep: small values in the leaves,
    /// every fifth value on overflow pages.
    static func environment() throws -> (folder: String, pages: [UInt8]) {
        let folder = temporaryFolder("tree")
        let env = try LMDBEnvironment(path: folder)
        let records = try env.openDatabase("records", create: true)
        try env.write { txn throws in
            for index in 0..<3_000 {
                try txn.put(key(index), [UInt8](repeating: UInt8(index % 251), count: index % 5 == 0 ? 5_000 : 24), in: records)
            }
        }
        return (folder, [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/data.mdb"))))
    }

    /// `environment()` after three more transactions, which free pages, so that the free-page
    /// database has a tree of its own.
    static func environmentWithFreePages() throws -> String {
        let (folder, _) = try environment()
        let env = try LMDBEnvironment(path: folder)
        let records = try env.openDatabase("records")
        for round in 0..<3 {
            try env.write { txn throws in
                for index in stride(from: round, to: 3_000, by: 7) { try txn.put(key(index), [UInt8](repeating: 1, count: 40), in: records) }
            }
        }
        return folder
    }

    /// The first page of the "records" database with these flags (branch 1, leaf 2): one whose
    /// first key with bytes is a record's 4-byte key (pages of earlier transactions, free now,
    /// are not read and so not checked).
    static func firstPage(_ pages: [UInt8], flags: UInt16) -> Int? {
        (2..<(pages.count / pageSize)).first { page in
            pages.withUnsafeBytes { bytes in
                let base = page * pageSize
                guard bytes.loadUnaligned(fromByteOffset: base + 10, as: UInt16.self) == flags else { return false }
                // A branch page's first key is empty: its second node's.
                let node = base + Int(bytes.loadUnaligned(fromByteOffset: base + 16 + (flags == 1 ? 2 : 0), as: UInt16.self))
                return bytes.loadUnaligned(fromByteOffset: node + 6, as: UInt16.self) == 4
            }
        }
    }

    /// Writes `value` at `offset` of the file, in place.
    static func write(_ value: UInt8, at offset: Int, of file: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [value])
    }

    /// Opens the environment read-only and reads every record.
    static func readAll(_ folder: String) throws -> Int {
        let env = try LMDBEnvironment(path: folder, options: .init(readOnly: true, noLock: true))
        let records = try env.openDatabase("records")
        var total = 0
        try env.read { txn throws in
            // A value's two ends: what a read past the map would reach first.
            try txn.forEach(in: records) { _, value in
                total += value.count + Int(value.first ?? 0) + Int(value.last ?? 0)
                return true
            }
        }
        return total
    }

    @Test(arguments: [("leaf", UInt16(2)), ("branch", UInt16(1))])
    func everyByteOfATreePageFlippedIsReadOrRefused(kind: String, flags: UInt16) throws {
        let (folder, pristine) = try Self.environment()
        defer { removeFolder(folder) }
        let file = folder + "/data.mdb"
        let expected = try Self.readAll(folder)
        let page = try #require(Self.firstPage(pristine, flags: flags), "no \(kind) page")
        var refused = 0
        for offset in 0..<Self.pageSize {
            let at = page * Self.pageSize + offset
            try Self.write(pristine[at] ^ 0xFF, at: at, of: file)
            defer { try? Self.write(pristine[at], at: at, of: file) }
            do {
                // A flip LMDB cannot tell (a key still in order, a value's own bytes, free space)
                // reads; anything else must be refused, not crash.
                _ = try Self.readAll(folder)
            } catch let error as LMDBFileDamaged {
                #expect(error.description.hasPrefix(file + ": ") && error.description.contains("damaged"), "\(error)")
                refused += 1
            } catch let error as LMDBError {
                // LMDB's own checks, which it makes before reading (a page number past the end).
                #expect(error.isCorruption, "byte \(offset) of \(kind) page \(page): \(error)")
                refused += 1
            }
        }
        #expect(try Self.readAll(folder) == expected)
        // The header and the node table at least are checked.
        #expect(refused >= 64, "\(refused) of \(Self.pageSize) flips of the \(kind) page refused")
    }

    /// The free-page database's flags share their field with the environment's: a sound copy
    /// made by `mdb_copy -n` (MDB_NOSUBDIR, 0x4000) had been refused as damaged. Its lists of free
    /// pages are read too.
    @Test func environmentFlagsBesideTheFreePagesAreNotDamage() throws {
        let folder = try Self.environmentWithFreePages()
        defer { removeFolder(folder) }
        let expected = try Self.readAll(folder)
        let file = folder + "/data.mdb"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let freeRoots = (0..<2).map { page in bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: page * Self.pageSize + 80, as: UInt64.self) } }
        #expect(freeRoots.contains { $0 != UInt64.max }, "the free-page database has no pages")
        for page in 0..<2 { bytes[page * Self.pageSize + 45] |= 0x40 }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        #expect(try Self.readAll(folder) == expected)
    }

    /// A page the free-page database lists as free while the tree uses it is named: a writer
    /// (extract resuming) had handed it out and written over a live page, leaving a cache no
    /// command could open.
    @Test func aFreePageTheTreeUsesIsNamed() throws {
        let folder = try Self.environmentWithFreePages()
        defer { removeFolder(folder) }
        let file = folder + "/data.mdb"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        func word(_ offset: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) } }
        // The main database's root, from the newer meta page: a page the tree surely uses.
        let newer = word(144) > word(Self.pageSize + 144) ? 0 : 1
        let root = word(newer * Self.pageSize + 128)
        // Every leaf with 8-byte keys (transaction ids: the free-page database's, some stale)
        // lists that page first in its first node's list.
        var changed = 0
        for page in 2..<(bytes.count / Self.pageSize) {
            let base = page * Self.pageSize
            let (flags, first) = bytes.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: base + 10, as: UInt16.self), Int($0.loadUnaligned(fromByteOffset: base + 16, as: UInt16.self))) }
            guard flags == 2, first + 32 <= Self.pageSize else { continue }
            let node = base + first
            let (nodeFlags, keySize) = bytes.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: node + 4, as: UInt16.self), $0.loadUnaligned(fromByteOffset: node + 6, as: UInt16.self)) }
            guard nodeFlags == 0, keySize == 8, word(node + 16) >= 1 else { continue }
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: root, toByteOffset: node + 24, as: UInt64.self) }
            changed += 1
        }
        #expect(changed >= 1)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        #expect { _ = try Self.readAll(folder) } throws: {
            "\($0)".contains("list of free pages names page \(root), which the tree still uses")
        }
    }

    @Test func aNodeOutsideItsPageIsNamed() throws {
        let (folder, pristine) = try Self.environment()
        defer { removeFolder(folder) }
        let page = try #require(Self.firstPage(pristine, flags: 2))
        var bytes = pristine
        // The first node's offset, pointed past the page's end.
        let table = page * Self.pageSize + 16
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt16(Self.pageSize - 4).littleEndian, toByteOffset: table, as: UInt16.self) }
        try Data(bytes).write(to: URL(fileURLWithPath: folder + "/data.mdb"))
        let upper = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: page * Self.pageSize + 14, as: UInt16.self)) }
        let message = "\(folder)/data.mdb: page \(page) of database \"records\" is damaged: node 0 starts at \(Self.pageSize - 4), "
            + "outside the page's nodes \(upper)-\(Self.pageSize); the environment is damaged, restore it from a copy or create it again"
        #expect { _ = try Self.readAll(folder) } throws: { ($0 as? LMDBFileDamaged)?.description == message }
    }
}
