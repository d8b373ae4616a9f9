// Damages a cache on disk the way a bad sector or a stray write would (shared with SidecarCLITests
// through a link).
import ActivationStore
import Foundation
import Testing

/// Flips one byte (`offset` into the record) of a stored record inside data.mdb, in every copy of
/// the record's bytes the file holds (LMDB's copy-on-write leaves stale ones).
func damageStoredRecord(_ path: String, split: String, index: Int, offset: (Int) -> Int) throws {
    var record: [UInt8]?
    try ActivationCache.open(path: path).forEachRecord(split: split) { i, _, raw in
        if i == index { record = Array(raw) }
        return i < index
    }
    let bytes = try #require(record)
    let file = URL(fileURLWithPath: path + "/data.mdb")
    var data = try Data(contentsOf: file)
    var from = data.startIndex, changed = 0
    while let range = data.range(of: Data(bytes), in: from..<data.endIndex) {
        data[range.lowerBound + offset(bytes.count)] ^= 0x5A
        from = range.upperBound
        changed += 1
    }
    #expect(changed >= 1)
    try data.write(to: file)
}
