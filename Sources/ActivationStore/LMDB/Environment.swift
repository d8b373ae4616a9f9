// A thin wrapper over an LMDB environment (a directory holding data.mdb and lock.mdb). It is not a
// key-value abstraction: it exposes LMDB's own model (byte keys in sorted order, named databases,
// one writer at a time) and only adds what makes misuse impossible or loud.
// Caveats from lmdb.h that shape it: transactions exist only inside closures (see Transaction.swift);
// MDB_NOTLS is always on, so read transactions may be used from any thread; never use an environment
// across fork(); MDB_NOLOCK is safe only when no process can write (read-only shared filesystems);
// the map may be resized only while no transaction of this process is open, which this type enforces.
import CLMDB
import Foundation

/// An open LMDB environment. Closed when the last reference goes away.
public final class LMDBEnvironment: @unchecked Sendable {
    public struct Options: Sendable {
        /// MDB_RDONLY: no write transactions; the files must already exist.
        public var readOnly: Bool
        /// MDB_NOLOCK: no lock file, so no reader bookkeeping. Only when no process can write
        /// (e.g. a finished cache on a read-only shared filesystem).
        public var noLock: Bool
        /// Initial map size in bytes, the most the data file can grow to before `setMapSize`.
        /// An existing environment's larger size wins.
        public var mapSize: Int
        /// Concurrent read transactions allowed (LMDB's default of 126 is low for many workers).
        public var maxReaders: Int
        /// Named databases allowed besides the unnamed one.
        public var maxDatabases: Int

        public init(readOnly: Bool = false, noLock: Bool = false, mapSize: Int = 64 << 20,
                    maxReaders: Int = 512, maxDatabases: Int = 8) {
            self.readOnly = readOnly
            self.noLock = noLock
            self.mapSize = mapSize
            self.maxReaders = maxReaders
            self.maxDatabases = maxDatabases
        }
    }

    public let path: String
    public let options: Options
    let handle: OpaquePointer

    /// Transactions open in this process, and the thread holding the write one. LMDB does not
    /// check either: resizing under an open transaction unmaps its pointers, and a nested write
    /// on one thread waits for itself forever.
    private let state = NSLock()
    private var openTransactions = 0
    private var writerThread: pthread_t?
    /// mdb_dbi_open must not run concurrently with itself.
    private let databaseOpening = NSLock()

    /// Opens (and unless read-only, creates the files in) the existing directory `path`.
    ///
    /// Errors: ENOENT when the directory (or, read-only, data.mdb) does not exist; EACCES without
    /// permission; MDB_VERSION_MISMATCH or MDB_INVALID when the files are not an LMDB environment
    /// of this version; EAGAIN when another process holds it with MDB_NOLOCK-incompatible locking;
    /// LMDBFileDamaged when data.mdb is shorter than its meta page says (reading it would SIGBUS), or a meta
    /// page or a branch or leaf page is damaged (reading it could crash in LMDB).
    public init(path: String, options: Options = Options()) throws {
        // Opening a FIFO in data.mdb's place waits for a writer forever, and a folder was called
        // a truncated file.
        if let kind = Self.nonRegularKind(path + "/data.mdb") {
            throw LMDBFileDamaged(description: "\(path)/data.mdb is \(kind), not a file; an environment's data.mdb is a regular file "
                                    + "(remove or rename what is there)")
        }
        var env: OpaquePointer?
        try LMDBError.check(mdb_env_create(&env), "creating an environment for", path: path)
        do {
            try LMDBError.check(mdb_env_set_maxreaders(env, UInt32(options.maxReaders)), "setting max readers of", path: path)
            try LMDBError.check(mdb_env_set_maxdbs(env, UInt32(options.maxDatabases)), "setting max databases of", path: path)
            try LMDBError.check(mdb_env_set_mapsize(env, options.mapSize), "setting the map size of", path: path)
            var flags = UInt32(MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            if options.noLock { flags |= UInt32(MDB_NOLOCK) } else { try Self.backLockFile(path, readers: options.maxReaders) }
            // LMDB trusts the meta pages too: a damaged page size or page count had crashed the
            // opening process (SIGBUS, an overflow). Read before LMDB reads them, and once more
            // before calling them damaged, as a writer committing meanwhile rewrites one.
            // (A file shorter than its meta page says is named as truncated once LMDB has opened it.)
            if (Self.fileSize(path + "/data.mdb") ?? 0) > 0, Self.damagedMetaPage(path, reach: false) != nil {
                usleep(100_000)
                if let fault = Self.damagedMetaPage(path, reach: false) { throw LMDBFileDamaged(description: fault) }
            }
            let code = mdb_env_open(env, path, flags, 0o644)
            // A full disk while a new environment writes its meta pages leaves a short data.mdb
            // too; that is the disk, not damage (the caller says so).
            if code != MDB_SUCCESS, code != ENOSPC, code != EIO, let fault = Self.tooShortForMetaPages(path) {
                throw LMDBFileDamaged(description: fault)
            }
            // Only where damage could be the cause: a permission or lock error is what it says.
            if [ENOMEM, EINVAL, MDB_INVALID, MDB_VERSION_MISMATCH, MDB_CORRUPTED, MDB_PAGE_NOTFOUND].contains(code),
               let fault = Self.damagedMetaPage(path, largestMap: code == ENOMEM ? 1 << 44 : 1 << 48) {
                throw LMDBFileDamaged(description: fault)
            }
            try LMDBError.check(code, "opening", path: path)
            try Self.checkLength(env!, path: path)
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.handle = env!
        self.path = path
        self.options = options
        // LMDB sets the main database's key comparator only when it is opened: until then a get
        // or put on it calls a null function pointer.
        let main = try openDatabase(nil)
        precondition(main == .main, "LMDB's main database handle is \(main), expected \(LMDBDatabase.main)")
        try checkTree()
    }

    deinit {
        mdb_env_close(handle)
    }

    /// LMDB sizes lock.mdb with ftruncate and writes its reader table through a shared map: on a
    /// full file system those pages have nothing behind them, and the first write killed the
    /// process with SIGBUS. Their blocks are allocated first, so that a full disk is an error here.
    /// A new file gets LMDB's size rounded up to whole pages ((readers − 1) slots of 64 bytes after
    /// a header of 192 bytes on x86-64, more elsewhere: LMDB takes a larger file as it is and counts
    /// its reader slots from the size, and nothing resizes it later under another process's map).
    /// An existing file (sparse when an older version or LMDB itself made it) gets its first page
    /// backed, the header and the first readers' slots, as much as a reader touches: a read
    /// that had worked on a full disk still works.
    private static func backLockFile(_ path: String, readers: Int) throws {
        let file = path + "/lock.mdb"
        var created = true
        var fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 && errno == EEXIST {
            created = false
            fd = open(file, O_RDWR | O_CLOEXEC)
        }
        // A read-only folder and the like: LMDB's own open says what is wrong.
        guard fd >= 0 else { return }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = created ? ((readers - 1) * 64 + 192 + page - 1) / page * page : min(Int(status.st_size), page)
        guard bytes > 0 else { return }
        let code = posix_fallocate(fd, 0, off_t(bytes))
        if code == ENOSPC || code == EDQUOT {
            if created { unlink(file) }
            throw LMDBError(code: code, operation: "allocating the lock file (\(bytes) bytes) of", path: path)
        }
    }

    /// LMDB maps data.mdb and trusts its meta page: a file cut shorter than the pages the meta page
    /// counts (a truncated copy, a full disk during a copy) is read past its end, which kills the
    /// process with SIGBUS at the first access. Compared up front, so that is an error instead.
    private static func checkLength(_ env: OpaquePointer, path: String) throws {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        try LMDBError.check(mdb_env_info(env, &info), "reading the meta page of", path: path)
        try LMDBError.check(mdb_env_stat(env, &stat), "reading the meta page of", path: path)
        // Damaged numbers are not to overflow here: a page count past Int is past any file too.
        let (needed, overflow) = info.me_last_pgno.addingReportingOverflow(1).partialValue.multipliedReportingOverflow(by: Int(stat.ms_psize))
        let file = path + "/data.mdb"
        guard let size = fileSize(file) else { return }
        if overflow || info.me_last_pgno < 0 {
            throw LMDBFileDamaged(description: "\(file): its meta page gives page \(UInt(bitPattern: info.me_last_pgno)) as the last, past any file; "
                                    + LMDBFileDamaged.remedy)
        }
        if size < needed {
            throw LMDBFileDamaged(description: "\(file) is truncated: it holds \(size) bytes, but its meta page says the data "
                                    + "reaches \(needed) bytes (\(info.me_last_pgno + 1) pages of \(stat.ms_psize)); "
                                    + LMDBFileDamaged.remedy)
        }
    }

    /// What `file` is when it exists but is not a regular file (links followed), e.g. "a FIFO".
    private static func nonRegularKind(_ file: String) -> String? {
        var status = stat()
        guard stat(file, &status) == 0 else { return nil }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR, S_IFBLK: return "a device"
        default: return "a special file"
        }
    }

    /// Bytes of the data file (data.mdb) of the environment at `path`, or nil when unreadable.
    public static func dataFileSize(_ path: String) -> Int? { fileSize(path + "/data.mdb") }

    /// Links followed, as LMDB opens the file: a data.mdb linked to elsewhere had been measured
    /// as the link itself, and a sound environment called truncated.
    private static func fileSize(_ file: String) -> Int? {
        var status = stat()
        return stat(file, &status) == 0 ? Int(status.st_size) : nil
    }

    /// When opening failed: a data.mdb shorter than LMDB's two meta pages, described (else nil).
    private static func tooShortForMetaPages(_ path: String) -> String? {
        let file = path + "/data.mdb"
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let size = fileSize(file), size < 2 * pageSize else { return nil }
        return "\(file) is truncated: it holds \(size) bytes, less than LMDB's two meta pages (\(2 * pageSize) bytes); "
            + "\(LMDBFileDamaged.remedy)"
    }

    /// When opening failed: a meta page that is not LMDB's, or a newest meta page (the one LMDB
    /// trusts) whose data reaches past the file's end or whose map could not fit any address
    /// space, described (else nil). Such damage had been reported as whatever mmap made of the
    /// numbers, e.g. "Cannot allocate memory". Read as LMDB 0.9 lays a meta page out on a 64-bit
    /// machine: a 16-byte page header, then magic, version, address, map size, two 48-byte
    /// database records, the last page number and the transaction id.
    /// A map of `largestMap` bytes or more is damage: no address space holds 2^48 bytes, and
    /// where mapping failed for want of memory, 2^44 (16 TiB) is past any cache this tool writes.
    /// Without `reach`, the data's reach past the file's end is left to `checkLength`.
    private static func damagedMetaPage(_ path: String, largestMap: UInt64 = 1 << 48, reach: Bool = true) -> String? {
        let file = path + "/data.mdb"
        // Two pages of the largest size LMDB uses, read once (this runs only when opening failed).
        guard MemoryLayout<Int>.size == 8, let handle = FileHandle(forReadingAtPath: file) else { return nil }
        defer { try? handle.close() }
        guard let bytes = try? handle.read(upToCount: 2 * 65536), bytes.count >= 48 else { return nil }
        func integer<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T {
            bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        // The file's page size, which the first meta page records (the free database's md_pad),
        // unless that is damaged too: then this machine's, as LMDB would have made the file.
        let recorded = Int(integer(40, as: UInt32.self))
        let pageSize = (512...65536).contains(recorded) && recorded.nonzeroBitCount == 1 ? recorded : Int(sysconf(Int32(_SC_PAGESIZE)))
        guard bytes.count >= 2 * pageSize, let size = fileSize(file) else { return nil }
        let damaged = LMDBFileDamaged.remedy
        var newest: (page: Int, txnid: UInt64, lastPage: UInt64, mapSize: UInt64)?
        var transactions: [UInt64] = []
        for page in 0..<2 {
            let base = page * pageSize
            guard integer(base + 16, as: UInt32.self) == 0xBEEF_C0DE else {
                return "\(file): meta page \(page) does not hold LMDB's magic number; \(damaged)"
            }
            // LMDB 0.9's data format is version 1; its page size is the same in both meta pages,
            // and LMDB finds the second by the first's.
            let version = integer(base + 20, as: UInt32.self)
            guard version == 1 else { return "\(file): meta page \(page) gives data format version \(version), where LMDB 0.9 writes 1; \(damaged)" }
            let pageBytes = Int(integer(base + 40, as: UInt32.self))
            guard pageBytes == recorded, (512...65536).contains(pageBytes), pageBytes.nonzeroBitCount == 1 else {
                return "\(file): meta page \(page) gives a page size of \(pageBytes) bytes" + (page == 1 ? " (meta page 0: \(recorded))" : "") + "; \(damaged)"
            }
            let txnid = integer(base + 144, as: UInt64.self)
            transactions.append(txnid)
            if newest == nil || txnid > newest!.txnid {
                newest = (page, txnid, integer(base + 136, as: UInt64.self), integer(base + 32, as: UInt64.self))
            }
        }
        guard let meta = newest else { return nil }
        // Commits write the two meta pages in turn: their transaction ids are at most one apart
        // (a damaged one would have LMDB read an old tree, or none).
        if transactions[0] &- transactions[1] > 1 && transactions[1] &- transactions[0] > 1 {
            return "\(file): the meta pages give transactions \(transactions[0]) and \(transactions[1]), which are not consecutive; \(damaged)"
        }
        let (reachedBytes, overflow) = (meta.lastPage &+ 1).multipliedReportingOverflow(by: UInt64(pageSize))
        if reach, overflow || reachedBytes > UInt64(size) {
            return "\(file): meta page \(meta.page) (the newer) says the data reaches page \(meta.lastPage), past the file's "
                + "\(size) bytes; \(damaged)"
        }
        // x86-64 and AArch64 give a process at most 2^48 bytes of addresses.
        if meta.mapSize >= largestMap {
            return "\(file): meta page \(meta.page) (the newer) gives a map of \(meta.mapSize) bytes, "
                + (meta.mapSize >= 1 << 48 ? "beyond any address space" : "which could not be mapped and no cache needs") + "; \(damaged)"
        }
        return nil
    }

    /// LMDB's version string, e.g. "LMDB 0.9.24: (July 24, 2019)".
    public static var version: String { String(cString: mdb_version(nil, nil, nil)) }

    /// The current map size in bytes.
    public var mapSize: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_mapsize
    }

    /// Bytes of the data file in use: (last page number + 1) × page size.
    public var usedBytes: Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(handle, &info)
        mdb_env_stat(handle, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// The longest key LMDB accepts (511 bytes in default builds).
    public var maxKeySize: Int { Int(mdb_env_get_maxkeysize(handle)) }

    /// Sets the map size; 0 adopts the size another process grew the map to. Sizes below the
    /// space in use are raised to it. The new size persists with the next committed write.
    ///
    /// Errors: EBUSY when any transaction of this process is open (resizing would unmap the
    /// memory its values point into): call it outside `read`/`write` closures.
    public func setMapSize(_ bytes: Int) throws {
        state.lock()
        defer { state.unlock() }
        guard openTransactions == 0 else {
            throw LMDBError(code: EBUSY, operation: "resizing the map (\(openTransactions) transactions open) of", path: path)
        }
        try LMDBError.check(mdb_env_set_mapsize(handle, bytes), "resizing the map of", path: path)
    }

    /// Flushes the data file to disk. Commits already do this; needed only after writes from an
    /// environment opened with MDB_NOSYNC-style flags. Errors: EACCES when read-only; EIO.
    public func sync() throws {
        try LMDBError.check(mdb_env_sync(handle, 1), "syncing", path: path)
    }

    // MARK: Transactions

    /// Runs `body` in a read-only transaction (a snapshot), which is aborted afterwards.
    ///
    /// Errors: MDB_READERS_FULL when `maxReaders` transactions are open; MDB_MAP_RESIZED is
    /// handled by adopting the new size (EBUSY if other transactions of this process prevent it).
    public func read<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        let transaction = try begin(readOnly: true)
        defer { end(transaction) }
        return try body(transaction)
    }

    /// Runs `body` in the write transaction: committed when `body` returns, aborted when it throws.
    /// A second writer (another thread or process) waits until this one ends. Calling `write`
    /// inside `write` on the same thread is a programmer error (it would wait for itself).
    ///
    /// Errors: EACCES in a read-only environment; MDB_MAP_FULL from a put or the commit when the
    /// map is full (see `writeGrowing`); ENOSPC or EIO from the commit; whatever `body` throws.
    public func write<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        guard !options.readOnly else {
            throw LMDBError(code: EACCES, operation: "writing to read-only environment", path: path)
        }
        let transaction = try begin(readOnly: false)
        let result: R
        do {
            result = try body(transaction)
        } catch {
            end(transaction)
            throw error
        }
        // mdb_txn_commit frees the transaction even when it fails.
        let code = mdb_txn_commit(transaction.handle)
        forget(transaction)
        try LMDBError.check(code, "committing a write to", path: path)
        return result
    }

    /// `write`, but when the map fills it aborts, doubles the map size and runs `body` again from
    /// the start, so `body` must depend only on its inputs. A map-full error that `body` wraps in
    /// another error type is not recognised.
    ///
    /// Errors: as `write`; EBUSY when the map must grow while another transaction of this process
    /// is open.
    public func writeGrowing<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        while true {
            do {
                return try write(body)
            } catch let error as LMDBError where error.isMapFull {
                try setMapSize(mapSize * 2)
            }
        }
    }

    /// Opens (or with `create`, creates) a named database; nil names the unnamed main database,
    /// whose keys are then the names of the named ones. Handles stay valid for the environment's
    /// life and belong to it alone. Open them up front: creating one runs its own write
    /// transaction, so it cannot be done inside a `write` closure.
    ///
    /// Errors: MDB_NOTFOUND when absent and not created (or the environment is read-only);
    /// MDB_DBS_FULL past `maxDatabases`; MDB_INCOMPATIBLE when the name is a key of the main
    /// database that is not a database.
    public func openDatabase(_ name: String? = nil, create: Bool = false) throws -> LMDBDatabase {
        databaseOpening.lock()
        defer { databaseOpening.unlock() }
        let operation = "opening database \"\(name ?? "(main)")\" in"
        // The handle becomes visible to other transactions only when its transaction commits
        // (also for read-only ones).
        let creating = create && !options.readOnly
        let transaction = try begin(readOnly: !creating)
        var database = MDB_dbi()
        let code = mdb_dbi_open(transaction.handle, name, creating ? UInt32(MDB_CREATE) : 0, &database)
        guard code == MDB_SUCCESS else {
            end(transaction)
            throw LMDBError(code: code, operation: operation, path: path)
        }
        let commitCode = mdb_txn_commit(transaction.handle)
        forget(transaction)
        try LMDBError.check(commitCode, operation, path: path)
        return LMDBDatabase(handle: database)
    }

    private func begin(readOnly: Bool) throws -> LMDBTransaction {
        // Counted before mdb_txn_begin, so a resize cannot slip in while a begin is under way.
        state.lock()
        if !readOnly, let writer = writerThread {
            precondition(pthread_equal(writer, pthread_self()) == 0,
                         "a write transaction on \(path) was begun inside another on the same thread")
        }
        openTransactions += 1
        state.unlock()
        var transaction: OpaquePointer?
        var code = mdb_txn_begin(handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &transaction)
        if code == MDB_MAP_RESIZED {
            // Another process grew the map past ours: adopt its size and try again.
            uncount(writer: false)
            try setMapSize(0)
            state.lock(); openTransactions += 1; state.unlock()
            code = mdb_txn_begin(handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &transaction)
        }
        guard code == MDB_SUCCESS, let transaction else {
            uncount(writer: false)
            throw LMDBError(code: code, operation: "beginning a transaction in", path: path)
        }
        if !readOnly {
            state.lock(); writerThread = pthread_self(); state.unlock()
        }
        return LMDBTransaction(handle: transaction, isReadOnly: readOnly, path: path)
    }

    /// Aborts `transaction` (the end of every read, and of writes that threw).
    private func end(_ transaction: borrowing LMDBTransaction) {
        mdb_txn_abort(transaction.handle)
        forget(transaction)
    }

    /// Drops the bookkeeping for a transaction LMDB has already freed.
    private func forget(_ transaction: borrowing LMDBTransaction) {
        uncount(writer: !transaction.isReadOnly)
    }

    private func uncount(writer: Bool) {
        state.lock()
        openTransactions -= 1
        if writer { writerThread = nil }
        state.unlock()
    }
}

/// An environment whose data file is shorter than its own meta page says (see `checkLength`),
/// whose meta pages are damaged (see `damagedMetaPage`), or one of whose tree pages is (see
/// `checkTree`).
public struct LMDBFileDamaged: Error, CustomStringConvertible, Equatable {
    public let description: String

    /// What every such message ends with.
    static let remedy = "the environment is damaged, restore it from a copy or create it again"
}

/// A database handle within one environment (from `LMDBEnvironment.openDatabase`).
public struct LMDBDatabase: Sendable, Equatable {
    let handle: MDB_dbi

    /// The unnamed main database (handle 1 in every LMDB environment).
    public static let main = LMDBDatabase(handle: 1)
}
