// LMDB trusts its pages: a branch or leaf page whose node table or node sizes are damaged sends
// its cursor outside the page, and one damaged byte killed the reader with SIGSEGV inside
// liblmdb (`inspect --verify` and `fit` alike). So every tree page of the snapshot a process
// opens is checked first, as LMDB 0.9 lays pages out on a 64-bit machine (its mdb.c): a 16-byte
// header (page number, flags, lower and upper bounds of the free space), a table of 2-byte node
// offsets, nodes of an 8-byte header (data size or child page in its first six bytes, flags, key
// size), the key, then the data, or the first page of an overflow run for data that did not fit.
// Only branch and leaf pages are read (and the free-page database's lists, which a writer
// trusts): a few hundred for a cache that keeps every token, whose records lie on overflow pages
// and are checked by their own checksums when decoded; for a pooled cache, whose records fit in
// the leaves, about the whole file, as much as one epoch reads.
import CLMDB
import Foundation

extension LMDBEnvironment {
    /// Throws LMDBFileDamaged naming the first damaged tree page of the snapshot a read
    /// transaction sees now: a page that is not the branch or leaf page its parent points to, a
    /// node outside its page, keys out of order, a child or overflow run past the data's end.
    /// Does nothing where the snapshot's meta page cannot be told apart (a writer committing twice
    /// while it looks) or data.mdb cannot be read.
    func checkTree() throws {
        var stat = MDB_stat()
        guard MemoryLayout<Int>.size == 8, mdb_env_stat(handle, &stat) == MDB_SUCCESS else { return }
        let pageSize = Int(stat.ms_psize)
        // Read with pread, page by page: LMDB does not tell where it mapped the file.
        let file = path + "/data.mdb"
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        try read { transaction in
            let txnid = UInt64(truncatingIfNeeded: mdb_txn_id(transaction.handle))
            // The meta page LMDB chose for this snapshot: the one of its transaction id. A writer
            // may rewrite the other one meanwhile, and this one two commits later: the id is read
            // again after the fields, as a sequence lock would.
            for page in 0..<2 {
                guard let meta = Pages.read(descriptor, page: page, size: pageSize) else { return }
                func field(_ offset: Int) -> UInt64 { meta.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) } }
                guard field(144) == txnid else { continue }
                let databases = meta.withUnsafeBytes { bytes in
                    [(name: "the free-page database", record: DatabaseRecord(bytes.baseAddress! + 40, holdsFreePages: true)),
                     (name: "the main database", record: DatabaseRecord(bytes.baseAddress! + 88))]
                }
                guard Pages.read(descriptor, page: page, size: pageSize).map({ $0 == meta }) == true else { return }
                var walk = TreeWalk(descriptor: descriptor, pageSize: pageSize, lastPage: Int(clamping: field(136)), file: file)
                for database in databases { try walk.check(database.record, name: database.name) }
                try walk.checkFreePagesAreUnused()
                return
            }
        }
    }
}

private enum Pages {
    /// Page `page` of the file, or nil where it cannot be read whole.
    static func read(_ descriptor: Int32, page: Int, size: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, size, off_t(page * size)) }
        return got == size ? bytes : nil
    }
}

/// An MDB_db as a meta page or a named database's node holds it (48 bytes): flags, depth and the
/// root page.
private struct DatabaseRecord {
    let flags: UInt16
    let depth: Int
    let root: UInt64
    /// LMDB's free-page database, whose values are lists of pages.
    var holdsFreePages = false

    init(_ bytes: UnsafeRawPointer, holdsFreePages: Bool = false) {
        self.holdsFreePages = holdsFreePages
        flags = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        depth = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        root = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 40, as: UInt64.self))
    }

    static let size = 48
    /// P_INVALID: an empty database has no root.
    static let noRoot = UInt64.max
}

private struct TreeWalk {
    let descriptor: Int32
    let pageSize: Int
    let lastPage: Int
    let file: String
    var visited = Set<Int>()
    /// The overflow runs of the values read (first page, pages), and the pages the free-page
    /// database lists with where it lists them: a free page must be in neither the tree nor a run.
    var overflowRuns: [(first: Int, pages: Int)] = []
    var freePages: [(page: Int, listedOn: Int, node: Int)] = []

    static let headerSize = 16, nodeHeaderSize = 8
    static let branch: UInt16 = 0x01, leaf: UInt16 = 0x02, overflow: UInt16 = 0x04, meta: UInt16 = 0x08, leaf2: UInt16 = 0x20, subpage: UInt16 = 0x40
    static let bigData: UInt16 = 0x01, subDatabase: UInt16 = 0x02
    static let integerKeys: UInt16 = 0x08
    /// MDB_REVERSEKEY through MDB_REVERSEDUP: what a database's flags may hold.
    static let databaseFlags: UInt16 = 0x7e

    init(descriptor: Int32, pageSize: Int, lastPage: Int, file: String) {
        (self.descriptor, self.pageSize, self.lastPage, self.file) = (descriptor, pageSize, lastPage, file)
    }

    func damaged(_ page: Int, of name: String, _ fault: String) -> LMDBFileDamaged {
        LMDBFileDamaged(description: "\(file): page \(page) of \(name) is damaged: \(fault); \(LMDBFileDamaged.remedy)")
    }

    mutating func check(_ database: DatabaseRecord, name: String) throws {
        guard database.root != DatabaseRecord.noRoot else { return }
        // Sidecar opens its databases with no flags, and LMDB its free-page database with integer
        // keys: any other (duplicate or reversed keys) would order or lay out pages otherwise.
        // Only the database bits count: the free-page database's field also holds the
        // environment's flags (MDB_NOSUBDIR in a copy made by mdb_copy -n, say).
        guard database.flags & Self.databaseFlags & ~Self.integerKeys == 0 else {
            throw LMDBFileDamaged(description: "\(file): \(name) has flags 0x\(String(database.flags, radix: 16)), which no cache uses; \(LMDBFileDamaged.remedy)")
        }
        // Each level of the walk is a call: a damaged depth is not to be followed thousands deep
        // (a tree of 2^64 keys is not 64 levels deep).
        guard (1...64).contains(database.depth) else {
            throw LMDBFileDamaged(description: "\(file): \(name) is \(database.depth) levels deep; \(LMDBFileDamaged.remedy)")
        }
        try page(Int(clamping: database.root), level: 1, of: database, name: name)
    }

    /// Checks page `number` at depth `level` (the root is 1) and the pages below it.
    mutating func page(_ number: Int, level: Int, of database: DatabaseRecord, name: String) throws {
        guard (2...max(2, lastPage)).contains(number) else {
            throw LMDBFileDamaged(description: "\(file): \(name) points to page \(number), outside the data's pages 2-\(lastPage); \(LMDBFileDamaged.remedy)")
        }
        guard visited.insert(number).inserted else { throw damaged(number, of: name, "it is reached twice in the tree") }
        guard let bytes = Pages.read(descriptor, page: number, size: pageSize) else {
            throw damaged(number, of: name, "it cannot be read whole")
        }
        try bytes.withUnsafeBytes { try check(page: number, $0.baseAddress!, level: level, of: database, name: name) }
    }

    mutating func check(page number: Int, _ base: UnsafeRawPointer, level: Int, of database: DatabaseRecord, name: String) throws {
        func u16(_ offset: Int) -> Int { Int(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))) }
        let recorded = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard recorded == UInt64(number) else { throw damaged(number, of: name, "its header gives page number \(recorded)") }
        let flags = UInt16(u16(10))
        let kind = flags & (Self.branch | Self.leaf | Self.overflow | Self.meta | Self.leaf2 | Self.subpage)
        let isLeaf = kind == Self.leaf
        guard kind == Self.branch || isLeaf else { throw damaged(number, of: name, "flags 0x\(String(flags, radix: 16)) are not a branch or leaf page's") }
        guard isLeaf == (level == database.depth) else {
            throw damaged(number, of: name, "a \(isLeaf ? "leaf" : "branch") page at depth \(level) of a tree \(database.depth) deep")
        }
        let (lower, upper) = (u16(12), u16(14))
        guard lower >= Self.headerSize, lower <= upper, upper <= pageSize, (lower - Self.headerSize) % 2 == 0 else {
            throw damaged(number, of: name, "its free space runs from \(lower) to \(upper)")
        }
        let count = (lower - Self.headerSize) / 2
        guard count > 0 else { throw damaged(number, of: name, "it holds no node") }
        var previousKey: UnsafeRawBufferPointer?
        var children: [Int] = []
        for index in 0..<count {
            let offset = u16(Self.headerSize + 2 * index)
            guard offset >= upper, offset % 2 == 0, offset + Self.nodeHeaderSize <= pageSize else {
                throw damaged(number, of: name, "node \(index) starts at \(offset), outside the page's nodes \(upper)-\(pageSize)")
            }
            let (low, high, nodeFlags, keySize) = (u16(offset), u16(offset + 2), u16(offset + 4), u16(offset + 6))
            let keyStart = offset + Self.nodeHeaderSize
            guard keyStart + keySize <= pageSize else { throw damaged(number, of: name, "node \(index)'s key of \(keySize) bytes runs past the page") }
            let key = UnsafeRawBufferPointer(start: base + keyStart, count: keySize)
            if isLeaf {
                let dataSize = low | high << 16
                let dataStart = keyStart + keySize
                switch UInt16(nodeFlags) {
                case Self.bigData:
                    guard dataStart + 8 <= pageSize else { throw damaged(number, of: name, "node \(index)'s overflow page number runs past the page") }
                    let first = Int(clamping: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: dataStart, as: UInt64.self)))
                    let pages = (Self.headerSize + dataSize + pageSize - 1) / pageSize
                    guard first >= 2, first <= lastPage, pages <= lastPage - first + 1 else {
                        throw damaged(number, of: name, "node \(index)'s \(dataSize) bytes on pages from \(first) reach past the data's last page \(lastPage)")
                    }
                    overflowRuns.append((first, pages))
                    if database.holdsFreePages {
                        var list = [UInt8](repeating: 0, count: dataSize)
                        let got = list.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, dataSize, off_t(first * pageSize + Self.headerSize)) }
                        guard got == dataSize else { throw damaged(number, of: name, "node \(index)'s list of free pages cannot be read whole") }
                        try list.withUnsafeBytes { try checkFreeList($0, node: index, page: number, name: name) }
                    }
                case Self.subDatabase:
                    guard dataSize == DatabaseRecord.size, dataStart + dataSize <= pageSize else {
                        throw damaged(number, of: name, "node \(index) holds \(dataSize) bytes where a database's record takes \(DatabaseRecord.size)")
                    }
                    let named = "database \"\(String(decoding: key, as: UTF8.self))\""
                    try check(DatabaseRecord(base + dataStart), name: named)
                case 0:
                    guard dataStart + dataSize <= pageSize else { throw damaged(number, of: name, "node \(index)'s \(dataSize) bytes of data run past the page") }
                    if database.holdsFreePages {
                        try checkFreeList(UnsafeRawBufferPointer(start: base + dataStart, count: dataSize), node: index, page: number, name: name)
                    }
                default:
                    throw damaged(number, of: name, "node \(index) has flags 0x\(String(nodeFlags, radix: 16))")
                }
            } else {
                children.append(low | high << 16 | nodeFlags << 32)
            }
            // LMDB orders keys by their bytes, shorter first on a tie (integer keys by value); a
            // branch page's first key is empty, standing for everything below the second.
            if !(index == 0 && !isLeaf) {
                if let previous = previousKey, !Self.ordered(previous, key, integers: database.flags & Self.integerKeys != 0) {
                    throw damaged(number, of: name, "its keys are out of order at node \(index)")
                }
                previousKey = key
            }
        }
        for child in children { try page(child, level: level + 1, of: database, name: name) }
    }

    /// A value of the free-page database: a count, then at least that many page numbers (LMDB
    /// reserves room it may leave unused), each a page of the data. A writer (extract resuming,
    /// merge) takes pages from these lists and trusts them: a count too large reads past the
    /// value, a page out of range is handed out as free.
    mutating func checkFreeList(_ value: UnsafeRawBufferPointer, node: Int, page: Int, name: String) throws {
        let count = value.count >= 8 ? Int(clamping: UInt64(littleEndian: value.loadUnaligned(as: UInt64.self))) : -1
        guard count >= 0, value.count % 8 == 0, count <= value.count / 8 - 1 else {
            throw damaged(page, of: name, "node \(node)'s list of free pages holds \(value.count) bytes, too few for its count \(count)")
        }
        for i in stride(from: 1, through: count, by: 1) {
            let free = UInt64(littleEndian: value.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
            guard free >= 2, free <= UInt64(lastPage) else {
                throw damaged(page, of: name, "node \(node)'s list of free pages names page \(free), outside the data's pages 2-\(lastPage)")
            }
            freePages.append((Int(free), page, node))
        }
    }

    /// After the walk: no page the free-page database lists is one the tree uses (a branch or
    /// leaf page, or a value's overflow run), or is listed twice. A writer would hand it out and
    /// write over it.
    func checkFreePagesAreUnused() throws {
        guard !freePages.isEmpty else { return }
        let runs = overflowRuns.sorted { $0.first < $1.first }
        var listed = Set<Int>()
        for free in freePages {
            // Listed twice, a page is handed out twice (LMDB stops on an assertion).
            guard listed.insert(free.page).inserted else {
                throw damaged(free.listedOn, of: "the free-page database", "node \(free.node)'s list of free pages names page \(free.page), listed free before")
            }
            // The last run starting at or before the page.
            var (low, high) = (0, runs.count)
            while low < high {
                let middle = (low + high) / 2
                if runs[middle].first <= free.page { low = middle + 1 } else { high = middle }
            }
            let inRun = low > 0 && free.page < runs[low - 1].first + runs[low - 1].pages
            if visited.contains(free.page) || inRun {
                throw damaged(free.listedOn, of: "the free-page database",
                              "node \(free.node)'s list of free pages names page \(free.page), which the tree still uses")
            }
        }
    }

    static func ordered(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, integers: Bool) -> Bool {
        if integers, a.count == 8, b.count == 8 {
            return a.loadUnaligned(as: UInt64.self) < b.loadUnaligned(as: UInt64.self)
        }
        let common = min(a.count, b.count)
        let order = common == 0 ? 0 : memcmp(a.baseAddress!, b.baseAddress!, common)
        return order != 0 ? order < 0 : a.count < b.count
    }
}
