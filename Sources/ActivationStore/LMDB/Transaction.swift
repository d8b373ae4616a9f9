// Gets, puts, deletes and counts inside one LMDB transaction. The type is noncopyable and handed
// out only borrowed, inside LMDBEnvironment.read/write, so it cannot escape its closure or be used
// after its commit or abort. Values read are zero-copy views into the memory map: valid until the
// transaction ends (in a write, until the next change). It is not thread-safe: one thread per closure.
import CLMDB
import Foundation

/// Bytes usable as a key: `[UInt8]`, `ArraySlice<UInt8>`, `UnsafeRawBufferPointer`, or a `String`
/// (its UTF-8). LMDB keys are 1 to `maxKeySize` (511) bytes and sort bytewise (memcmp).
public protocol LMDBKey {
    func withKeyBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: LMDBKey where Element == UInt8 {
    public func withKeyBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try withUnsafeBytes(body) }
}

extension ArraySlice: LMDBKey where Element == UInt8 {
    public func withKeyBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try withUnsafeBytes(body) }
}

extension UnsafeRawBufferPointer: LMDBKey {
    public func withKeyBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}

extension String: LMDBKey {
    public func withKeyBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var utf8 = self
        return try utf8.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }
}

/// A live LMDB transaction, read-only or read-write.
public struct LMDBTransaction: ~Copyable {
    let handle: OpaquePointer
    let isReadOnly: Bool
    let path: String

    /// Flags for `put`.
    public struct PutFlags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// MDB_APPEND: the key sorts after every key in the database (fast bulk loading);
        /// MDB_KEYEXIST otherwise.
        public static let append = PutFlags(rawValue: UInt32(MDB_APPEND))
        /// MDB_NOOVERWRITE: MDB_KEYEXIST when the key is already present.
        public static let noOverwrite = PutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    }

    /// Calls `body` with the stored value of `key`, a view into the map valid only inside `body`;
    /// returns nil without calling it when the key is absent.
    ///
    /// Errors: MDB_BAD_VALSIZE for an empty key (an over-long one is simply absent); EINVAL for
    /// a handle of another environment.
    public func withValue<R>(forKey key: some LMDBKey, in database: LMDBDatabase = .main,
                             _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try key.withKeyBytes { keyBytes in
            var keyValue = MDB_val(keyBytes)
            var value = MDB_val()
            let code = mdb_get(handle, database.handle, &keyValue, &value)
            if code == MDB_NOTFOUND { return nil }
            try LMDBError.check(code, "reading key \(describe(keyBytes)) from", path: path)
            return try body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
        }
    }

    /// A copy of the stored value of `key`, or nil when absent. Errors: as `withValue`.
    public func value(forKey key: some LMDBKey, in database: LMDBDatabase = .main) throws -> [UInt8]? {
        try withValue(forKey: key, in: database) { [UInt8]($0) }
    }

    /// Stores `value` under `key`, replacing any value there unless `flags` say otherwise.
    ///
    /// Errors: EACCES in a read transaction; MDB_MAP_FULL when the map is full (the transaction
    /// is then unusable: let the error end the `write`, see `writeGrowing`); MDB_KEYEXIST with
    /// `.append` (key out of order) or `.noOverwrite` (key present); MDB_BAD_VALSIZE for an empty
    /// or over-long key; MDB_TXN_FULL when one transaction dirties too many pages.
    public func put(_ key: some LMDBKey, _ value: some ContiguousBytes, in database: LMDBDatabase = .main,
                    flags: PutFlags = []) throws {
        try value.withUnsafeBytes { valueBytes in
            try put(key, reserving: valueBytes.count, in: database, flags: flags) { destination in
                destination.copyMemory(from: valueBytes)
            }
        }
    }

    /// Reserves `count` bytes under `key` and lets `body` fill them in place (MDB_RESERVE), which
    /// saves a copy when the value is produced straight into the map (e.g. by a compressor).
    /// `body` must write all `count` bytes. Errors: as `put`.
    public func put(_ key: some LMDBKey, reserving count: Int, in database: LMDBDatabase = .main,
                    flags: PutFlags = [], _ body: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        try key.withKeyBytes { keyBytes in
            guard !isReadOnly else {
                throw LMDBError(code: EACCES, operation: "writing key \(describe(keyBytes)) in a read-only transaction of", path: path)
            }
            var keyValue = MDB_val(keyBytes)
            var value = MDB_val(mv_size: count, mv_data: nil)
            try LMDBError.check(mdb_put(handle, database.handle, &keyValue, &value, flags.rawValue | UInt32(MDB_RESERVE)),
                                "writing key \(describe(keyBytes)) to", path: path)
            try body(UnsafeMutableRawBufferPointer(start: value.mv_data, count: count))
        }
    }

    /// Deletes `key`; returns false when it was absent.
    /// Errors: EACCES in a read transaction; MDB_BAD_VALSIZE for an empty or over-long key.
    @discardableResult
    public func delete(_ key: some LMDBKey, in database: LMDBDatabase = .main) throws -> Bool {
        try key.withKeyBytes { keyBytes in
            guard !isReadOnly else {
                throw LMDBError(code: EACCES, operation: "deleting key \(describe(keyBytes)) in a read-only transaction of", path: path)
            }
            var keyValue = MDB_val(keyBytes)
            let code = mdb_del(handle, database.handle, &keyValue, nil)
            if code == MDB_NOTFOUND { return false }
            try LMDBError.check(code, "deleting key \(describe(keyBytes)) from", path: path)
            return true
        }
    }

    /// The number of entries in `database` (for the main one, including named databases' names).
    /// Errors: EINVAL for a handle of another environment.
    public func count(in database: LMDBDatabase = .main) throws -> Int {
        var stat = MDB_stat()
        try LMDBError.check(mdb_stat(handle, database.handle, &stat), "counting the entries of", path: path)
        return stat.ms_entries
    }

    /// Runs `body` with a cursor over `database`, closed afterwards. Errors: EINVAL for a handle
    /// of another environment; whatever `body` throws.
    public func withCursor<R>(in database: LMDBDatabase = .main, _ body: (borrowing LMDBCursor) throws -> R) throws -> R {
        var cursor: OpaquePointer?
        try LMDBError.check(mdb_cursor_open(handle, database.handle, &cursor), "opening a cursor in", path: path)
        defer { mdb_cursor_close(cursor) }
        // Bound first: passing the temporary straight to the borrowing parameter crashes Swift
        // 6.3.1's generic specializer in release builds ("Cannot initialize a nonCopyable type
        // with a guaranteed value").
        let wrapper = LMDBCursor(handle: cursor!, path: path)
        return try body(wrapper)
    }

    /// Calls `body` with each entry from the first key ≥ `start` onwards, in key order, until it
    /// returns false. The views are valid only inside `body`. Errors: as `withCursor`.
    public func forEach(from start: some LMDBKey, in database: LMDBDatabase = .main,
                        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        try withCursor(in: database) { cursor in
            var entry = try cursor.seek(atLeast: start)
            while let (key, value) = entry, try body(key, value) {
                entry = try cursor.next()
            }
        }
    }

    /// Calls `body` with each entry whose key starts with `prefix` (all, for an empty prefix), in
    /// key order, until it returns false. Errors: as `withCursor`.
    public func forEach(withPrefix prefix: some LMDBKey, in database: LMDBDatabase = .main,
                        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        try prefix.withKeyBytes { prefixBytes in
            try forEach(from: prefixBytes, in: database) { key, value in
                key.starts(with: prefixBytes) ? try body(key, value) : false
            }
        }
    }

    /// Calls `body` with every entry of `database` in key order, until it returns false.
    public func forEach(in database: LMDBDatabase = .main,
                        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        try forEach(withPrefix: [UInt8](), in: database, body)
    }
}

extension MDB_val {
    /// A view of `bytes` for passing a key in (LMDB does not write through it).
    init(_ bytes: UnsafeRawBufferPointer) {
        self.init(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
    }
}

/// A key for error messages: its text when printable ASCII, else hex; at most 64 bytes shown.
func describe(_ key: UnsafeRawBufferPointer) -> String {
    let shown = key.prefix(64)
    let suffix = key.count > 64 ? "… (\(key.count) bytes)" : ""
    if shown.allSatisfy({ (0x20..<0x7F).contains($0) }) {
        return "\"" + String(decoding: shown, as: UTF8.self) + "\"" + suffix
    }
    return "0x" + shown.map { String(format: "%02x", $0) }.joined() + suffix
}
