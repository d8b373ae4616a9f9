// A cursor over one database inside one transaction, handed out borrowed by
// LMDBTransaction.withCursor and closed when that closure returns. It only moves and reads;
// writes go through the transaction. The entries it returns are views into the map, valid until
// the transaction ends (in a write transaction, until the next change).
import CLMDB

/// A position in a database's key order.
public struct LMDBCursor: ~Copyable {
    let handle: OpaquePointer
    let path: String

    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    /// The first entry; nil when the database is empty.
    public func first() throws -> Entry? { try move(MDB_FIRST) }
    /// The last entry (the greatest key); nil when the database is empty.
    public func last() throws -> Entry? { try move(MDB_LAST) }
    /// The entry after the current one (the first, on a cursor not yet placed); nil past the end.
    public func next() throws -> Entry? { try move(MDB_NEXT) }
    /// The entry before the current one (the last, on a cursor not yet placed); nil before the start.
    public func previous() throws -> Entry? { try move(MDB_PREV) }

    /// The entry with the smallest key ≥ `key` (the first entry, for an empty key); nil when
    /// every key is smaller. Errors: MDB_BAD_VALSIZE for an over-long key.
    public func seek(atLeast key: some LMDBKey) throws -> Entry? {
        try key.withKeyBytes { bytes in
            // LMDB refuses empty keys, and every key is ≥ the empty one.
            bytes.isEmpty ? try move(MDB_FIRST) : try move(MDB_SET_RANGE, seeking: bytes)
        }
    }

    /// One mdb_cursor_get. Errors: EINVAL for an invalid move (LMDB's own checks).
    private func move(_ operation: MDB_cursor_op, seeking key: UnsafeRawBufferPointer? = nil) throws -> Entry? {
        var keyValue = key.map(MDB_val.init) ?? MDB_val()
        var value = MDB_val()
        let code = mdb_cursor_get(handle, &keyValue, &value, operation)
        if code == MDB_NOTFOUND { return nil }
        try LMDBError.check(code, "moving a cursor in", path: path)
        return (UnsafeRawBufferPointer(start: keyValue.mv_data, count: keyValue.mv_size),
                UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }
}
