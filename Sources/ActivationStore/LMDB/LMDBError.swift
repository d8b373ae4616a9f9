// LMDB's return codes as Swift errors carrying LMDB's own message, what was being done and the
// environment's path, e.g. "opening /x/cache: No such file or directory". Codes are not mapped to
// a Swift enum: the few callers branch on (map full, key exists) get predicates.
import CLMDB
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

/// A failed LMDB call.
public struct LMDBError: Error, CustomStringConvertible, Equatable {
    /// LMDB's return code: an errno value or one of the MDB_* codes.
    public let code: Int32
    /// What was being done, e.g. "opening", "writing key \"a\" to".
    public let operation: String
    /// The environment's directory.
    public let path: String

    /// LMDB's text for the code (`mdb_strerror`).
    public var message: String { String(cString: mdb_strerror(code)) }

    /// MDB_MAP_FULL: grow the map with `LMDBEnvironment.setMapSize` and redo the transaction
    /// (`LMDBEnvironment.writeGrowing` does both).
    public var isMapFull: Bool { code == MDB_MAP_FULL }

    /// MDB_KEYEXIST: a put with `.noOverwrite` found the key, or one with `.append` was out of order.
    public var isKeyExists: Bool { code == MDB_KEYEXIST }

    /// MDB_CORRUPTED or MDB_PAGE_NOTFOUND: a page of the file is damaged.
    public var isCorruption: Bool { code == MDB_CORRUPTED || code == MDB_PAGE_NOTFOUND }

    public var description: String { "\(operation) \(path): \(message)" + (code == ENOMEM ? Self.addressSpaceHint : "") }

    /// Why mapping may fail for lack of memory where a limit on the address space is set (`ulimit
    /// -v`, a scheduler's h_vmem): LMDB maps the whole environment, at the size it was written
    /// with, whatever little a command reads.
    private static var addressSpaceHint: String {
        guard let limit = addressSpaceLimit() else { return "" }
        return " (an address-space limit of \(limit >> 20) MiB is set, ulimit -v, and LMDB maps the whole environment at the "
            + "size it was written with; raise the limit or lift it, ulimit -v unlimited)"
    }

    /// Throws unless `code` is MDB_SUCCESS.
    static func check(_ code: Int32, _ operation: @autoclosure () -> String, path: String) throws {
        if code != MDB_SUCCESS { throw LMDBError(code: code, operation: operation(), path: path) }
    }
}
