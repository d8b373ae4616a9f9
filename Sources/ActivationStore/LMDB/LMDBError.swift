// LMDB's return codes as Swift errors that carry LMDB's own message, the operation and the path.
import CLMDB

/// A failed LMDB call.
public struct LMDBError: Error, CustomStringConvertible, Equatable {
    /// LMDB's return code (an errno value or one of the MDB_* codes).
    public let code: Int32
    /// What was being done, e.g. "opening", "writing key …".
    public let operation: String
    /// The environment's path.
    public let path: String

    /// LMDB's text for the code (`mdb_strerror`).
    public var message: String { String(cString: mdb_strerror(code)) }

    /// The map is full: grow it with `LMDBEnvironment.setMapSize` and redo the transaction.
    public var isMapFull: Bool { code == MDB_MAP_FULL }

    public var description: String { "\(operation) \(path): \(message)" }

    /// Throws unless `code` is MDB_SUCCESS.
    static func check(_ code: Int32, _ operation: @autoclosure () -> String, path: String) throws {
        if code != MDB_SUCCESS { throw LMDBError(code: code, operation: operation(), path: path) }
    }
}
