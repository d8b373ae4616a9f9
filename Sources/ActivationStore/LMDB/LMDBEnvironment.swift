// A thin wrapper over an LMDB environment. Transactions exist only inside closures and are
// noncopyable, so none can leak, outlive its environment, or be used after commit; a write commits
// when its closure returns and aborts when it throws. Caveats from lmdb.h that shape this API:
// a read transaction's pointers are valid only while it lives; MDB_NOTLS lets readers move across
// threads; one writer at a time per environment (a second one blocks); never use an environment
// across fork(); MDB_NOLOCK is safe only when no writer can exist (read-only shared filesystems).
import CLMDB
import Foundation

/// An open LMDB environment (a directory holding data.mdb and lock.mdb).
public final class LMDBEnvironment: @unchecked Sendable {
    public struct Options: Sendable {
        /// Open with MDB_RDONLY: no write transactions.
        public var readOnly = false
        /// MDB_NOLOCK: no lock file. Only when no process can write (e.g. a read-only shared cache).
        public var noLock = false
        /// Initial map size in bytes (grows with `setMapSize`); LMDB's default is 10 MiB.
        public var mapSize = 64 << 20
        /// Concurrent read transactions allowed (LMDB's default of 126 is low for many workers).
        public var maxReaders: Int32 = 512
        /// Named databases allowed besides the unnamed one.
        public var maxDatabases: Int32 = 8

        public init(readOnly: Bool = false, noLock: Bool = false, mapSize: Int = 64 << 20, maxReaders: Int32 = 512, maxDatabases: Int32 = 8) {
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

    /// Opens (and for writers creates the files in) the existing directory `path`.
    ///
    /// Errors: ENOENT when the directory does not exist; EACCES without permission; MDB_VERSION_MISMATCH
    /// or MDB_INVALID when the files are not an LMDB environment of this version.
    public init(path: String, options: Options = Options()) throws {
        var env: OpaquePointer?
        try LMDBError.check(mdb_env_create(&env), "creating an environment for", path: path)
        do {
            try LMDBError.check(mdb_env_set_maxreaders(env, UInt32(options.maxReaders)), "setting max readers of", path: path)
            try LMDBError.check(mdb_env_set_maxdbs(env, UInt32(options.maxDatabases)), "setting max databases of", path: path)
            try LMDBError.check(mdb_env_set_mapsize(env, options.mapSize), "setting the map size of", path: path)
            var flags = UInt32(MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            if options.noLock { flags |= UInt32(MDB_NOLOCK) }
            try LMDBError.check(mdb_env_open(env, path, flags, 0o644), "opening", path: path)
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
        precondition(main == .main, "LMDB's main database handle is \(main), expected 1")
    }

    deinit {
        mdb_env_close(handle)
    }

    /// LMDB's version string, e.g. "LMDB 0.9.24: (July 24, 2019)".
    public static var version: String { String(cString: mdb_version(nil, nil, nil)) }

    /// The current map size in bytes.
    public var mapSize: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_mapsize
    }

    /// Bytes of the data file in use (last page number + 1, times the page size).
    public var usedBytes: Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(handle, &info)
        mdb_env_stat(handle, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// Sets the map size. Only while this process has no transaction open; 0 adopts the size
    /// another process grew the map to. Errors: EINVAL when a transaction is active.
    public func setMapSize(_ bytes: Int) throws {
        try LMDBError.check(mdb_env_set_mapsize(handle, bytes), "resizing the map of", path: path)
    }

    /// Flushes buffers to disk (needed only with MDB_NOSYNC-style flags; commits already sync).
    public func sync() throws {
        try LMDBError.check(mdb_env_sync(handle, 1), "syncing", path: path)
    }

    // MARK: Transactions

    /// Runs `body` in a read-only transaction, which is aborted afterwards.
    public func read<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        let txn = try begin(readOnly: true)
        defer { mdb_txn_abort(txn.handle) }
        return try body(txn)
    }

    /// Runs `body` in a write transaction: committed when `body` returns, aborted when it throws.
    ///
    /// Errors: EACCES in a read-only environment; MDB_MAP_FULL from a put or the commit when the map
    /// is full (see `writeGrowing`).
    public func write<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        guard !options.readOnly else {
            throw LMDBError(code: EACCES, operation: "writing to read-only environment", path: path)
        }
        let txn = try begin(readOnly: false)
        let result: R
        do {
            result = try body(txn)
        } catch {
            mdb_txn_abort(txn.handle)
            throw error
        }
        try LMDBError.check(mdb_txn_commit(txn.handle), "committing a write to", path: path)
        return result
    }

    /// `write`, but when the map fills it doubles the map size and runs `body` again from the
    /// start (the failed attempt was aborted, so `body` must only depend on its inputs).
    public func writeGrowing<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        while true {
            do {
                return try write(body)
            } catch let error as LMDBError where error.isMapFull {
                try setMapSize(mapSize * 2)
            }
        }
    }

    private func begin(readOnly: Bool) throws -> LMDBTransaction {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        if rc == MDB_MAP_RESIZED {
            // Another process grew the map: adopt its size and try again.
            try setMapSize(0)
            rc = mdb_txn_begin(handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        }
        try LMDBError.check(rc, "beginning a transaction in", path: path)
        return LMDBTransaction(handle: txn!, path: path)
    }

    /// Opens (or with `create`, creates) a named database; nil names the unnamed main database.
    /// Handles stay valid for the environment's life. Errors: MDB_NOTFOUND when absent and not
    /// created; MDB_DBS_FULL past `maxDatabases`.
    public func openDatabase(_ name: String? = nil, create: Bool = false) throws -> LMDBDatabase {
        // The handle becomes shared only when its transaction commits (also for read-only ones).
        let txn = try begin(readOnly: !create || options.readOnly)
        var dbi = MDB_dbi()
        let rc = mdb_dbi_open(txn.handle, name, create && !options.readOnly ? UInt32(MDB_CREATE) : 0, &dbi)
        guard rc == MDB_SUCCESS else {
            mdb_txn_abort(txn.handle)
            throw LMDBError(code: rc, operation: "opening database \"\(name ?? "(main)")\" in", path: path)
        }
        try LMDBError.check(mdb_txn_commit(txn.handle), "opening database \"\(name ?? "(main)")\" in", path: path)
        return LMDBDatabase(handle: dbi)
    }
}

/// A database handle within an environment.
public struct LMDBDatabase: Sendable, Equatable {
    let handle: MDB_dbi
}
