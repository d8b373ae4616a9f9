// Gets, puts, deletes and cursors inside one transaction. The type is noncopyable and handed out
// only borrowed, inside LMDBEnvironment.read/write, so it cannot escape its closure. Values read
// are zero-copy views into the memory map, valid only inside the closure that receives them.
import CLMDB
import Foundation

/// A live LMDB transaction (read-only or read-write).
public struct LMDBTransaction: ~Copyable {
    let handle: OpaquePointer
    let path: String

    /// Flags for `put`.
    public struct PutFlags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// MDB_APPEND: the key sorts after every existing key (fast bulk load); MDB_KEYEXIST otherwise.
        public static let append = PutFlags(rawValue: UInt32(MDB_APPEND))
        /// MDB_NOOVERWRITE: fail with MDB_KEYEXIST when the key exists.
        public static let noOverwrite = PutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    }

    /// Calls `body` with the stored value of `key` (a view into the map), or returns nil when absent.
    public func withValue<R>(forKey key: some ContiguousBytes, in db: LMDBDatabase = .main,
                             _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(handle, db.handle, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try LMDBError.check(rc, "reading a key from", path: path)
            return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
        }
    }

    /// A copy of the stored value of `key`, or nil when absent.
    public func value(forKey key: some ContiguousBytes, in db: LMDBDatabase = .main) throws -> [UInt8]? {
        try withValue(forKey: key, in: db) { [UInt8]($0) }
    }

    /// Stores `value` under `key`. Errors: MDB_MAP_FULL, MDB_KEYEXIST (with .append/.noOverwrite),
    /// EACCES in a read-only transaction, EINVAL for an empty or over-long key (511 bytes).
    public func put(_ value: some ContiguousBytes, forKey key: some ContiguousBytes, in db: LMDBDatabase = .main,
                    flags: PutFlags = []) throws {
        try key.withUnsafeBytes { keyBytes in
            try value.withUnsafeBytes { valueBytes in
                var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                var v = MDB_val(mv_size: valueBytes.count, mv_data: UnsafeMutableRawPointer(mutating: valueBytes.baseAddress))
                try LMDBError.check(mdb_put(handle, db.handle, &k, &v, flags.rawValue), "writing a key to", path: path)
            }
        }
    }

    /// Reserves `count` bytes under `key` and lets `body` write them in place (no extra copy).
    public func put(reserving count: Int, forKey key: some ContiguousBytes, in db: LMDBDatabase = .main,
                    flags: PutFlags = [], _ body: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val(mv_size: count, mv_data: nil)
            try LMDBError.check(mdb_put(handle, db.handle, &k, &v, flags.rawValue | UInt32(MDB_RESERVE)), "writing a key to", path: path)
            try body(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
        }
    }

    /// Deletes `key`; returns false when it was absent.
    @discardableResult
    public func delete(_ key: some ContiguousBytes, in db: LMDBDatabase = .main) throws -> Bool {
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            let rc = mdb_del(handle, db.handle, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try LMDBError.check(rc, "deleting a key from", path: path)
            return true
        }
    }

    /// Number of entries in `db`.
    public func count(in db: LMDBDatabase = .main) throws -> Int {
        var stat = MDB_stat()
        try LMDBError.check(mdb_stat(handle, db.handle, &stat), "counting entries of", path: path)
        return stat.ms_entries
    }

    /// Runs `body` with a cursor over `db`, closed afterwards.
    public func withCursor<R>(in db: LMDBDatabase = .main, _ body: (inout LMDBCursor) throws -> R) throws -> R {
        var cursor: OpaquePointer?
        try LMDBError.check(mdb_cursor_open(handle, db.handle, &cursor), "opening a cursor in", path: path)
        defer { mdb_cursor_close(cursor) }
        var wrapper = LMDBCursor(handle: cursor!, path: path)
        return try body(&wrapper)
    }

    /// Calls `body` for each entry whose key starts with `prefix`, in key order, until it returns false.
    public func forEach(withPrefix prefix: [UInt8] = [], in db: LMDBDatabase = .main,
                        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        try withCursor(in: db) { cursor in
            var entry = prefix.isEmpty ? try cursor.first() : try cursor.seek(atLeast: prefix)
            while let (key, value) = entry, key.starts(with: prefix) {
                guard try body(key, value) else { return }
                entry = try cursor.next()
            }
        }
    }
}

extension LMDBDatabase {
    /// The unnamed main database (handle 1 in every LMDB environment).
    public static let main = LMDBDatabase(handle: 1)
}

/// A cursor positioned on one entry at a time. Keys and values are views valid until the next move.
public struct LMDBCursor: ~Copyable {
    let handle: OpaquePointer
    let path: String

    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    private mutating func move(_ op: MDB_cursor_op, key seek: [UInt8]? = nil) throws -> Entry? {
        var k = MDB_val(), v = MDB_val()
        let rc: Int32
        if let seek {
            rc = seek.withUnsafeBytes { bytes in
                k = MDB_val(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                return mdb_cursor_get(handle, &k, &v, op)
            }
        } else {
            rc = mdb_cursor_get(handle, &k, &v, op)
        }
        if rc == MDB_NOTFOUND { return nil }
        try LMDBError.check(rc, "moving a cursor in", path: path)
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    public mutating func first() throws -> Entry? { try move(MDB_FIRST) }
    public mutating func last() throws -> Entry? { try move(MDB_LAST) }
    public mutating func next() throws -> Entry? { try move(MDB_NEXT) }
    /// Positions on the first key ≥ `key`.
    public mutating func seek(atLeast key: [UInt8]) throws -> Entry? { try move(MDB_SET_RANGE, key: key) }
}
