// The activation cache: one LMDB environment holding a manifest, per-split progress and one record
// per example. Writers append records in key order, a batch per transaction, with the progress
// that covers them; readers open read-only (optionally without the lock file) and read records
// straight from the memory map. Keys: split index (1 byte) then example index (4 bytes, big-endian),
// so reading a split in order is a sequential scan of the B-tree.
import Foundation
import SafeTensors
import TensorCore

/// A named collection of small tensors computed from the backbone's weights at extraction time
/// (e.g. LST's pruned side-block initialisation), so stage two never opens the weights file.
public struct Blob: Sendable {
    public let tensors: [String: Tensor]
    public let metadata: [String: String]
    /// What the blob is and where it came from, for errors ("CACHE: blob top_blocks").
    public let label: String

    public init(tensors: [String: Tensor], metadata: [String: String], label: String) {
        self.tensors = tensors
        self.metadata = metadata
        self.label = label
    }

    /// The first tensor holding a NaN or an infinity, by name, or nil.
    public func firstNonFiniteTensor() -> String? {
        tensors.keys.sorted().first { name in tensors[name]!.scalars.contains { !$0.isFinite } }
    }
}

/// A blob to write when a cache is created: its name, tensors in order, and metadata.
public struct BlobContent: Sendable {
    public var name: String
    public var tensors: [(name: String, tensor: Tensor)]
    public var metadata: [String: String]

    public init(name: String, tensors: [(name: String, tensor: Tensor)], metadata: [String: String]) {
        self.name = name
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The stored value: safetensors bytes, F32.
    func bytes(cache path: String) throws -> [UInt8] {
        try SafeTensorsWriter.serialize(tensors, metadata: metadata, storage: .f32, source: "\(path)/blob:\(name)")
    }
}

/// An error about a cache as a whole (missing, mismatched, incomplete), naming its path.
public struct CacheError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public final class ActivationCache: @unchecked Sendable {
    public let path: String
    public let manifest: Manifest
    public let environment: LMDBEnvironment
    let meta: LMDBDatabase
    let records: LMDBDatabase
    /// Held by the one process allowed to write (flock on writer.lock); -1 for readers.
    private let writerLock: Int32

    static let manifestKey = Array("manifest".utf8)
    static let int8ScalesKey = Array("int8-scales".utf8)
    /// The XXH64 of the int8 scales' stored bytes (caches from before it have none).
    static let int8ScalesChecksumKey = Array("int8-scales-xxh64".utf8)
    static func progressKey(_ split: String) -> [UInt8] { Array("progress/\(split)".utf8) }
    static func blobKey(_ name: String) -> [UInt8] { Array("blob:\(name)".utf8) }
    /// The XXH64 of a blob's stored bytes, as 16 hex digits, written with the blob (caches from
    /// before it have none, and their blobs are read unchecked).
    static func blobChecksumKey(_ name: String) -> [UInt8] { Array("blob-xxh64:\(name)".utf8) }
    static func checksum(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { checksum($0) } }
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> [UInt8] { Array(String(format: "%016llx", XXHash64.hash(bytes)).utf8) }

    private init(path: String, manifest: Manifest, environment: LMDBEnvironment, meta: LMDBDatabase, records: LMDBDatabase,
                 writerLock: Int32 = -1) {
        self.writerLock = writerLock
        self.path = path
        self.manifest = manifest
        self.environment = environment
        self.meta = meta
        self.records = records
    }

    /// Opens an existing cache to read it. With `noLock`, no lock file is used: only for caches
    /// no process writes (e.g. on a read-only shared filesystem).
    public static func open(path: String, noLock: Bool = false) throws -> ActivationCache {
        guard FileManager.default.fileExists(atPath: path + "/data.mdb") else {
            var isFolder: ObjCBool = false
            let what = !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) ? "does not exist"
                : isFolder.boolValue ? "not an activation cache (no data.mdb)" : "a file, not an activation cache (a cache is a folder holding data.mdb)"
            throw CacheError("\(path): \(what); create one with `sidecar extract`")
        }
        let environment: LMDBEnvironment
        do {
            environment = try LMDBEnvironment(path: path, options: .init(readOnly: true, noLock: noLock, mapSize: 0))
        } catch let error as LMDBError where [EACCES, EROFS].contains(error.code) && !noLock && access(path + "/data.mdb", R_OK) == 0 {
            // Readers too write LMDB's lock file (their slots in its reader table); a read-only
            // file system is a folder no one can write.
            throw CacheError("\(path): cannot open or create its lock file lock.mdb (\(error.message)); a cache in a folder "
                             + "this user cannot write is read with --no-lock, safe while no process writes to it")
        }
        let meta: LMDBDatabase, records: LMDBDatabase
        do {
            meta = try environment.openDatabase("meta")
            records = try environment.openDatabase("records")
        } catch let error as LMDBError where error.isCorruption {
            throw CacheError("\(path): data.mdb is damaged (\(error.message)); restore it from a copy, or remove the cache and extract it again")
        } catch {
            throw CacheError("\(path): not an activation cache (\(error))")
        }
        let manifest = try readManifest(environment, meta, path: path)
        return ActivationCache(path: path, manifest: manifest, environment: environment, meta: meta, records: records)
    }

    /// Opens the cache at `path` for writing with `settings`, creating it when absent. An existing
    /// cache must have been made with the same settings (the error lists what differs). `blobs`
    /// (named as `settings.blobs` names them) are written with the manifest in one transaction,
    /// so a manifest never lists a missing blob; on resume each must equal the stored one.
    public static func openForWriting(path: String, settings: ExtractionSettings, blobs: [BlobContent] = []) throws -> ActivationCache {
        let names = blobs.map(\.name)
        guard names == (settings.blobs ?? []) else {
            throw CacheError("\(path): blobs \(names) given, but the settings list \(settings.blobs ?? [])")
        }
        return try openForWriting(path: path, settings: settings, blobBytes: try blobs.map { ($0.name, try $0.bytes(cache: path)) },
                                  blobSource: "the one computed from the backbone now")
    }

    /// `openForWriting` with the blobs' stored bytes, named as `settings.blobs` names them (`merge`
    /// copies them verbatim); `blobSource` names where they came from in the message when a
    /// resumed cache holds others.
    static func openForWriting(path: String, settings: ExtractionSettings, blobBytes: [(name: String, bytes: [UInt8])],
                               blobSource: String) throws -> ActivationCache {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        // LMDB serialises write transactions, but two extractions interleaving theirs would each
        // believe their own progress: one writer per cache, enforced with an advisory lock.
        let lock = Glibc.open(path + "/writer.lock", O_CREAT | O_RDWR, 0o644)
        guard lock >= 0 else { throw CacheError("\(path): cannot create writer.lock (\(String(cString: strerror(errno))))") }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            let holder = WriterLock.holder(lock)
            close(lock)
            throw CacheError("another \(holder.command ?? "process") is writing \(path)\(holder.pid.map { " (pid \($0))" } ?? ""); "
                             + "wait for it to end or use another --out folder")
        }
        WriterLock.record(lock)
        do {
            return try openLocked(path: path, settings: settings, blobBytes: blobBytes, blobSource: blobSource, lock: lock)
        } catch {
            close(lock)
            throw error
        }
    }

    private static func openLocked(path: String, settings: ExtractionSettings, blobBytes: [(name: String, bytes: [UInt8])],
                                   blobSource: String, lock: Int32) throws -> ActivationCache {
        let (environment, meta, records): (LMDBEnvironment, LMDBDatabase, LMDBDatabase)
        do {
            environment = try LMDBEnvironment(path: path, options: .init(mapSize: initialMapSize))
            (meta, records) = (try environment.openDatabase("meta", create: true), try environment.openDatabase("records", create: true))
        } catch let error as LMDBError where isOutOfSpace(error, path: path) {
            throw fullDisk(error, path: path, while: "creating the cache", holds: "nothing yet")
        }
        let existing = try environment.read { txn in try txn.value(forKey: manifestKey, in: meta) }
        if existing != nil {
            let stored = try readManifest(environment, meta, path: path)
            let differences = settings.differences(from: stored.settings)
            guard differences.isEmpty else {
                throw CacheError("\(path) holds a cache made with other settings; use another --out folder or the same settings:\n  "
                                 + differences.joined(separator: "\n  "))
            }
            // Equal settings mean the same weights file, so equal blobs; a difference means damage.
            for blob in blobBytes {
                let stored = try environment.read { txn in try txn.value(forKey: blobKey(blob.name), in: meta) }
                guard let stored else { throw CacheError(missingBlobMessage(blob.name, path: path)) }
                guard stored == blob.bytes else {
                    throw CacheError("\(path): blob \(blob.name) in the cache differs from \(blobSource) (made with another "
                                     + "--top-blocks or --lst-reductions?); give the cache's own, or another --out folder")
                }
            }
            return ActivationCache(path: path, manifest: stored, environment: environment, meta: meta, records: records, writerLock: lock)
        }
        let manifest = Manifest(settings: settings)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(manifest)
        try writeReportingFullDisk(environment, path: path, "the manifest and blobs") { txn in
            for (name, bytes) in blobBytes {
                try txn.put(blobKey(name), bytes, in: meta)
                try txn.put(blobChecksumKey(name), checksum(bytes), in: meta)
            }
            try txn.put(manifestKey, data, in: meta)
        }
        return ActivationCache(path: path, manifest: manifest, environment: environment, meta: meta, records: records, writerLock: lock)
    }

    deinit {
        if writerLock >= 0 { close(writerLock) }
    }

    /// A writer's first map size; the map doubles whenever it fills (`writeGrowing`).
    /// SIDECAR_LMDB_INITIAL_MAP_BYTES overrides it, so tests can make the map fill early.
    static var initialMapSize: Int {
        ProcessInfo.processInfo.environment["SIDECAR_LMDB_INITIAL_MAP_BYTES"].flatMap { Int($0) }.map { max($0, 32 << 10) } ?? 256 << 20
    }

    private static func readManifest(_ environment: LMDBEnvironment, _ meta: LMDBDatabase, path: String) throws -> Manifest {
        guard let bytes = try environment.read({ txn in try txn.value(forKey: manifestKey, in: meta) }) else {
            throw CacheError("\(path): the cache has no manifest")
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(bytes))
        } catch {
            throw CacheError("\(path): the manifest is unreadable (\(error))")
        }
        guard manifest.format == Manifest.currentFormat else {
            throw CacheError("\(path): cache format \(manifest.format); this sidecar reads format \(Manifest.currentFormat)")
        }
        // The manifest has no checksum: a layer listed twice had trapped inspect, and fit had
        // trained on it a head that nothing could load.
        if let fault = manifest.settings.fault {
            throw CacheError("\(path): the manifest records \(fault), which no extraction writes; the cache is damaged")
        }
        return manifest
    }

    // MARK: Keys

    func splitIndex(_ split: String) -> Int {
        guard let index = manifest.settings.splits.firstIndex(of: split) else {
            preconditionFailure("split \(split) is not in the cache's manifest")
        }
        return index
    }

    /// The LMDB key of an example's record.
    public func key(split: String, index: Int) -> [UInt8] {
        var key: [UInt8] = [UInt8(splitIndex(split))]
        withUnsafeBytes(of: UInt32(index).bigEndian) { key += $0 }
        return key
    }

    /// The readable name of a record, used in error messages ("train:1234").
    public static func keyName(split: String, index: Int) -> String { "\(split):\(index)" }

    // MARK: Progress and writing

    public func progress(of split: String) throws -> SplitProgress {
        guard let bytes = try environment.read({ txn in try txn.value(forKey: Self.progressKey(split), in: meta) }) else {
            return SplitProgress()
        }
        let progress: SplitProgress
        do { progress = try JSONDecoder().decode(SplitProgress.self, from: Data(bytes)) } catch {
            throw CacheError("\(path): the \(split) split's progress record is unreadable; the cache is damaged (\(error))")
        }
        // No checksum covers this record, and readers take their example count from it: a
        // damaged count had trained on part of a split marked complete.
        let held = manifest.settings.heldRange(of: split).count
        guard (0...held).contains(progress.written), !progress.complete || progress.written == held else {
            throw CacheError("\(path): the \(split) split's progress record says \(progress.written) of \(held) examples"
                             + (progress.complete ? ", complete" : "") + "; the cache is damaged")
        }
        return progress
    }

    /// Throws what keeps training off the cache: it is one shard of an extraction, or one of
    /// `splits` (all of them by default) is not finished. Returns each split's progress.
    @discardableResult
    public func requireComplete(splits: [String]? = nil) throws -> [String: SplitProgress] {
        let s = manifest.settings
        if let shard = s.shard {
            throw CacheError("\(path): is shard \(shard.index)/\(shard.count) of an extraction; join all shards with sidecar merge and fit on the merged cache")
        }
        var all: [String: SplitProgress] = [:]
        for split in splits ?? s.splits {
            let progress = try self.progress(of: split)
            guard progress.complete else {
                let count = s.splitCounts[split] ?? 0
                // A run stopped after its last record but before it marked the split finished has
                // every example: "3000 of 3000" read as a contradiction.
                let state = progress.written == count ? "has all \(count) examples but was not marked finished" : "is incomplete (\(progress.written) of \(count) examples)"
                throw CacheError("\(path): the \(split) split \(state); \(SplitProgress.toFinish)")
            }
            all[split] = progress
        }
        return all
    }

    /// Appends records `written..<written + count` of a split and the new progress in one
    /// transaction, growing the map when full.
    public func append(split: String, records batch: [(index: Int, bytes: [UInt8])], progress: SplitProgress) throws {
        let progressData = try JSONEncoder().encode(progress)
        let keys = batch.map { key(split: split, index: $0.index) }
        let what = batch.isEmpty ? "the \(split) progress" : "\(split) records \(batch.first!.index)...\(batch.last!.index)"
        try Self.writeReportingFullDisk(environment, path: path, what) { txn in
            for (key, record) in zip(keys, batch) {
                try txn.put(key, record.bytes, in: records, flags: .append)
            }
            try txn.put(Self.progressKey(split), progressData, in: meta)
        }
    }

    /// `writeGrowing`, with a full disk reported as such: the transaction was aborted, so the
    /// cache still holds exactly what its progress says and the same command resumes it.
    static func writeReportingFullDisk<R>(_ environment: LMDBEnvironment, path: String, _ what: String, _ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        do {
            return try environment.writeGrowing(body)
        } catch let error as LMDBError where isOutOfSpace(error, path: path) {
            throw fullDisk(error, path: path, while: "writing \(what)")
        }
    }

    static func fullDisk(_ error: LMDBError, path: String, while doing: String, holds: String = "everything written before") -> CacheError {
        let cause = error.code != EIO ? error.message : "LMDB's write came up short: \(error.message), with under 1 MB free"
        return CacheError("\(path): no space left on device while \(doing) (\(cause)); the cache holds \(holds): "
                          + "free space (or move the folder to a larger disk) and run the same command again to resume")
    }

    /// ENOSPC, or the EIO LMDB reports for a short write, which on a file system with (nearly) no
    /// free space is the disk filling up.
    static func isOutOfSpace(_ error: LMDBError, path: String) -> Bool {
        // A quota is the usual full disk of a cluster's home and project space.
        if error.code == ENOSPC || error.code == EDQUOT { return true }
        guard error.code == EIO else { return false }
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return false }
        return Int(info.f_bavail) * Int(info.f_frsize) < 1 << 20
    }

    /// The per-layer, per-channel int8 scales, once calibrated (nil before, and for other storage).
    public func int8Scales() throws -> [Int: [Float]]? {
        guard let bytes = try int8ScaleBytes() else { return nil }
        let byLayer: [Int: [Float]]
        do {
            let byName = try JSONDecoder().decode([String: [Float]].self, from: Data(bytes))
            byLayer = Dictionary(uniqueKeysWithValues: byName.compactMap { name, scales in Int(name).map { ($0, scales) } })
        } catch {
            throw CacheError("\(path): the int8 scales are unreadable (\(error))")
        }
        // One scale per channel of every stored layer: scales of another count, or none, had been
        // blamed on every record.
        let width = manifest.settings.backbone.hiddenSize
        if let (layer, scales) = byLayer.sorted(by: { $0.key < $1.key }).first(where: { $0.value.count != width }) {
            throw CacheError("\(path): the int8 scales of layer \(layer) hold \(scales.count) values, not one per channel of the width \(width); "
                             + "the cache is damaged: remove it and extract it again")
        }
        if manifest.settings.storage == .int8, let layer = manifest.settings.layers.first(where: { byLayer[$0] == nil }) {
            throw CacheError("\(path): the int8 scales hold none for layer \(layer); the cache is damaged: remove it and extract it again")
        }
        return byLayer
    }

    /// Stores the int8 scales (before the first record that uses them).
    public func storeInt8Scales(_ scales: [Int: [Float]]) throws {
        // Keys as sorted strings, so the same scales always write the same bytes.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(Dictionary(uniqueKeysWithValues: scales.map { (String($0.key), $0.value) }))
        try storeInt8ScaleBytes(Array(data))
    }

    /// The int8 scales' stored bytes, checked against their checksum (a damaged scale had scaled a
    /// channel 1600× while --verify passed); nil before calibration.
    func int8ScaleBytes() throws -> [UInt8]? {
        try checkedMetaValue(Self.int8ScalesKey, checksum: Self.int8ScalesChecksumKey, damaged: "the int8 scales are damaged (their checksum does not match)")
    }

    /// Stores the int8 scales' bytes and their checksum in one transaction.
    func storeInt8ScaleBytes(_ bytes: [UInt8]) throws {
        try Self.writeReportingFullDisk(environment, path: path, "the int8 scales") { txn in
            try txn.put(Self.int8ScalesKey, bytes, in: meta)
            try txn.put(Self.int8ScalesChecksumKey, Self.checksum(bytes), in: meta)
        }
    }

    /// The bytes under `key`, checked against the checksum under `checksumKey` when there is one
    /// (`damaged` says what a mismatch means).
    private func checkedMetaValue(_ key: [UInt8], checksum checksumKey: [UInt8], damaged: String) throws -> [UInt8]? {
        try withCheckedMetaValue(key, checksum: checksumKey, damaged: damaged) { [UInt8]($0) }
    }

    /// Calls `body` with the bytes under `key` where they lie in the map, once they match the
    /// checksum under `checksumKey` when there is one; nil when the key is absent.
    private func withCheckedMetaValue<R>(_ key: [UInt8], checksum checksumKey: [UInt8], damaged: String,
                                         _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try environment.read { txn in
            let sum = try txn.value(forKey: checksumKey, in: meta)
            return try txn.withValue(forKey: key, in: meta) { bytes in
                if let sum, sum != Self.checksum(bytes) {
                    throw CacheError("\(path): \(damaged); remove the cache and extract it again (extract leaves a complete cache as it is)")
                }
                return try body(bytes)
            }
        }
    }

    /// Marks every listed split complete in one transaction (a merge does this last, so a killed
    /// merge never leaves a split that claims to be whole).
    func markComplete(_ splits: [(name: String, written: Int)]) throws {
        let data = try splits.map { (Self.progressKey($0.name), try JSONEncoder().encode(SplitProgress(written: $0.written, complete: true))) }
        try Self.writeReportingFullDisk(environment, path: path, "the progress") { txn in
            for (key, value) in data { try txn.put(key, value, in: meta) }
        }
    }

    // MARK: Blobs

    /// Stores (or replaces) the blob `name` as safetensors bytes (F32) under "blob:NAME" in the
    /// meta database. Extraction writes its blobs with the manifest instead (openForWriting), so
    /// the manifest's `blobs` list stays true; this is for tools that add one later.
    public func storeBlob(_ name: String, tensors: [(String, Tensor)], metadata: [String: String]) throws {
        let bytes = try BlobContent(name: name, tensors: tensors.map { (name: $0.0, tensor: $0.1) }, metadata: metadata).bytes(cache: path)
        try Self.writeReportingFullDisk(environment, path: path, "blob \(name)") { txn in
            try txn.put(Self.blobKey(name), bytes, in: meta)
            try txn.put(Self.blobChecksumKey(name), Self.checksum(bytes), in: meta)
        }
    }

    /// The blob `name`, or nil when the cache has none of that name.
    public func blob(_ name: String) throws -> Blob? {
        try withBlobFile(name) { file in
            var tensors: [String: Tensor] = [:]
            for tensorName in file.names { tensors[tensorName] = try file.tensor(tensorName) }
            return Blob(tensors: tensors, metadata: file.metadata, label: "\(path): blob \(name)")
        }
    }

    /// A blob's metadata alone (its header is parsed, its tensors are not decoded), or nil.
    public func blobMetadata(_ name: String) throws -> [String: String]? {
        try withBlobFile(name) { $0.metadata }
    }

    /// The blob's stored bytes, checked against the checksum stored with them; nil when the cache
    /// has no blob of that name.
    func blobBytes(_ name: String) throws -> [UInt8]? {
        try checkedMetaValue(Self.blobKey(name), checksum: Self.blobChecksumKey(name), damaged: Self.damagedBlobMessage(name))
    }

    /// Whether the blob's checksum is stored (caches from before blobs had one read unchecked).
    func hasBlobChecksum(_ name: String) throws -> Bool {
        try environment.read { txn in try txn.withValue(forKey: Self.blobChecksumKey(name), in: meta) { _ in true } } ?? false
    }

    static func damagedBlobMessage(_ name: String) -> String { "blob \(name) is damaged (its checksum does not match)" }

    /// What a blob the manifest lists but the cache lacks is called: by a resumed extraction, by
    /// verify and by fit.
    public func missingBlobMessage(_ name: String) -> String { Self.missingBlobMessage(name, path: path) }

    static func missingBlobMessage(_ name: String, path: String) -> String {
        "\(path): the manifest lists blob \(name), but the cache does not hold it (it is damaged)"
    }

    /// Calls `body` with the blob parsed where it lies in the map, once it matches its checksum; nil
    /// when the cache has no blob of that name. (Copied out first, the top blocks' 14 MB blob had
    /// been held twice over while its metadata was read, and the heap kept both copies.)
    private func withBlobFile<R>(_ name: String, _ body: (SafeTensorsFile) throws -> R) throws -> R? {
        try withCheckedMetaValue(Self.blobKey(name), checksum: Self.blobChecksumKey(name),
                                 damaged: Self.damagedBlobMessage(name)) { bytes in
            do {
                return try SafeTensorsFile.withBorrowed(bytes, source: "\(path)/blob:\(name)", body)
            } catch {
                throw CacheError("\(path): blob \(name) is unreadable (\(error))")
            }
        }
    }

    /// A decoder for this cache's records (with its int8 scales); one per thread. See
    /// `RecordDecoder` for `checkingContent`.
    public func makeDecoder(checkingContent: Bool = true) throws -> RecordDecoder {
        RecordDecoder(int8Scales: try int8Scales() ?? [:], checkingContent: checkingContent)
    }

    // MARK: Reading

    /// Calls `body` with the parsed record of one example (a view into the map).
    public func withRecord<R>(split: String, index: Int, _ body: (RecordView) throws -> R) throws -> R {
        let name = Self.keyName(split: split, index: index)
        let result = try environment.read { txn in
            try txn.withValue(forKey: key(split: split, index: index), in: records) { bytes in
                try body(try RecordView(bytes, key: name))
            }
        }
        guard let result else { throw missing(name, split: split, index: index) }
        return result
    }

    /// A record is not there: not written yet, where its split's progress does not count it yet
    /// (the first `written` of the split's range are stored); else its key, or the index's page
    /// leading to it, is damaged (LMDB's own pages carry no checksum).
    private func missing(_ name: String, split: String, index: Int) -> CacheError {
        if let progress = try? progress(of: split), !progress.complete,
           index >= manifest.settings.heldRange(of: split).lowerBound + progress.written {
            return CacheError("\(path): record \(name) is not written yet (the \(split) split is incomplete); \(SplitProgress.toFinish)")
        }
        return CacheError("\(path): record \(name) is missing; the cache is damaged (`sidecar inspect \(path) --verify` lists every "
                          + "damaged or missing record), restore it from a copy or extract it again")
    }

    /// The mean number of rows (tokens) per example of the train split, from at most 256 records
    /// spread over it: what plans and memory estimates scale a batch by. Nil without train
    /// records, or where they cannot be read (the trainer then says why).
    public func meanRows() -> Double? {
        let count = manifest.settings.splitCounts["train"] ?? 0
        guard count > 0 else { return nil }
        let sample = Array(stride(from: 0, to: count, by: (count + 255) / 256))
        guard let rows = try? withRecords(split: "train", indices: sample, { $0.map(\.rows) }) else { return nil }
        return Double(rows.reduce(0, +)) / Double(rows.count)
    }

    /// Calls `body` with the parsed records of several examples, all views into the map of one read
    /// transaction (valid only during the call): stage two reads a batch this way.
    public func withRecords<R>(split: String, indices: [Int], _ body: ([RecordView]) throws -> R) throws -> R {
        try environment.read { txn in
            var views: [RecordView] = []
            views.reserveCapacity(indices.count)
            for index in indices {
                let name = Self.keyName(split: split, index: index)
                let view = try txn.withValue(forKey: key(split: split, index: index), in: records) { bytes in
                    try RecordView(bytes, key: name)
                }
                guard let view else { throw missing(name, split: split, index: index) }
                views.append(view)
            }
            return try body(views)
        }
    }

    /// Calls `body` for every stored record of a split in index order, until it returns false.
    /// A record whose header is damaged is reported through `body` as a thrown CorruptRecord.
    public func forEachRecord(split: String, _ body: (_ index: Int, _ record: () throws -> RecordView, _ rawBytes: UnsafeRawBufferPointer) throws -> Bool) throws {
        let prefix: [UInt8] = [UInt8(splitIndex(split))]
        try environment.read { txn in
            try txn.forEach(withPrefix: prefix, in: records) { key, value in
                guard key.count == 5 else { return true }
                let index = Int(UInt32(bigEndian: key.loadUnaligned(fromByteOffset: 1, as: UInt32.self)))
                let name = Self.keyName(split: split, index: index)
                return try body(index, { try RecordView(value, key: name) }, value)
            }
        }
    }

    /// Stored bytes of every record and the count per split (for `inspect`).
    public func storedBytes() throws -> (records: Int, bytes: Int) {
        var count = 0, bytes = 0
        try environment.read { txn in
            try txn.forEach(in: records) { _, value in
                count += 1
                bytes += value.count
                return true
            }
        }
        return (count, bytes)
    }
}

/// Who holds a cache's writer.lock: the writer records its pid and command in the file, so the
/// process refused can name it.
enum WriterLock {
    static func record(_ descriptor: Int32) {
        let arguments = ProcessInfo.processInfo.arguments
        let command = ([URL(fileURLWithPath: arguments.first ?? "sidecar").lastPathComponent] + arguments.dropFirst().prefix(1)).joined(separator: " ")
        let line = Array("\(getpid()) \(command)\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = line.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
    }

    static func holder(_ descriptor: Int32) -> (pid: Int?, command: String?) {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return (nil, nil) }
        let text = String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let space = text.firstIndex(of: " "), let pid = Int(text[..<space]) else { return (Int(text), nil) }
        return (pid, String(text[text.index(after: space)...]))
    }
}
