// Joining the caches of an extraction's shards (`sidecar extract --shard i/N`) into one whole cache,
// as an unsharded extraction would have written it. A copy, never a re-encode: records keep their
// global keys and their stored bytes, blobs and int8 scales are copied verbatim. Everything is
// checked before anything is written; the output is resumable like an extraction, and its splits
// are marked complete only in the very last transaction.
import Foundation
import TensorCore

public enum CacheMerge {
    /// Progress of the copy, after each committed batch.
    public struct Progress: Sendable {
        public var split: String
        public var done: Int
        public var total: Int
    }

    /// Records copied per transaction (and at most this many bytes), as extraction commits chunks.
    static let batchRecords = 1024
    static let batchBytes = 64 << 20

    /// Checks that `shards` (cache folders) are all the parts of one extraction, complete and made
    /// with identical settings, then copies them into the cache at `output` (created, or resumed
    /// after a killed merge). Returns the merged cache. Every refusal names the folders and what
    /// is wrong; nothing is written before the checks pass.
    @discardableResult
    public static func merge(shards paths: [String], into output: String, report: (Progress) -> Void = { _ in }) throws -> ActivationCache {
        let (shards, shared) = try check(paths, output: output)
        let first = shards[0]
        var settings = first.cache.manifest.settings
        settings.shard = nil
        let blobBytes = (settings.blobs ?? []).map { (name: $0, bytes: shared[ActivationCache.blobKey($0)]!) }
        let merged = try ActivationCache.openForWriting(path: output, settings: settings, blobBytes: blobBytes,
                                                        blobSource: "the one in the shard \(first.path)")
        if settings.storage == .int8 {
            // Every shard calibrated on the same first chunk, so they hold the same scales (checked).
            let scales = shared[ActivationCache.int8ScalesKey]!
            if let stored = try merged.int8ScaleBytes() {
                guard stored == scales else { throw CacheError("\(output): its int8 scales differ from the shards'; merge into a new folder") }
            } else {
                try merged.storeInt8ScaleBytes(scales)
            }
        }
        var finished: [(name: String, written: Int)] = []
        for split in settings.splits {
            let total = settings.splitCounts[split] ?? 0
            var state = try merged.progress(of: split)
            for shard in shards {
                let part = shard.info.range(of: split)
                guard state.written < part.upperBound else { continue }
                var batch: [(index: Int, bytes: [UInt8])] = [], bytes = 0
                func commit() throws {
                    guard let last = batch.last else { return }
                    // Complete stays false until every split is copied (below).
                    state = SplitProgress(written: last.index + 1, complete: false)
                    try merged.append(split: split, records: batch, progress: state)
                    report(Progress(split: split, done: state.written, total: total))
                    batch.removeAll(keepingCapacity: true)
                    bytes = 0
                }
                var expected = part.lowerBound
                try shard.cache.forEachRecord(split: split) { index, open, raw in
                    guard index == expected, part.contains(index) else {
                        throw CacheError("\(shard.path): holds record \(ActivationCache.keyName(split: split, index: index)) where "
                                         + (part.contains(index) ? "\(ActivationCache.keyName(split: split, index: expected)) was expected" : "its part of \(split) is \(IndexRange(part))"))
                    }
                    expected += 1
                    guard index >= state.written else { return true }
                    // The checksums travel with the bytes; check them so a damaged shard is
                    // reported here, by its folder, rather than in the merged cache.
                    do { try open().checkChecksums() } catch let damage as CorruptRecord {
                        throw CacheError("\(shard.path): \(damage); remove that shard's folder and extract it again (--shard "
                                         + "\(shard.info.index)/\(shard.info.count); extract leaves a complete shard as it is), then run the same merge, which resumes")
                    }
                    batch.append((index, Array(raw)))
                    bytes += raw.count
                    if batch.count >= batchRecords || bytes >= batchBytes { try commit() }
                    return true
                }
                try commit()
                guard expected == part.upperBound else {
                    throw CacheError("\(shard.path): its \(split) part \(IndexRange(part)) lacks records from \(ActivationCache.keyName(split: split, index: expected)) on, though it is marked complete")
                }
            }
            guard state.written == total else {
                throw CacheError("\(output): \(split) has \(state.written) of \(total) examples after copying every shard")
            }
            finished.append((split, total))
        }
        try merged.markComplete(finished)
        return merged
    }

    /// One opened shard and its part.
    struct OpenShard {
        let path: String
        let cache: ActivationCache
        let info: ShardInfo
    }

    /// Opens every shard and checks that together they are one complete extraction; returns them
    /// sorted by index, with the blobs and int8 scales they all hold (by meta key).
    static func check(_ paths: [String], output: String) throws -> (shards: [OpenShard], shared: [[UInt8]: [UInt8]]) {
        guard !paths.isEmpty else { throw CacheError("no shard caches given") }
        // Resolved by the file system where the path exists; standardizedFileURL, and
        // resolvingSymlinksInPath where it does not, drop "x/.." as text, another folder where x is a link.
        func canonical(_ path: String) -> String {
            let url = URL(userPath: path)
            return FileManager.default.fileExists(atPath: url.path) ? url.resolvingSymlinksInPath().path : url.path
        }
        var seen: [String: String] = [:]
        for path in paths {
            if let earlier = seen[canonical(path)] { throw CacheError("\(path): named twice (also as \(earlier))") }
            seen[canonical(path)] = path
        }
        if let same = paths.first(where: { canonical($0) == canonical(output) }) {
            throw CacheError("\(same): is a shard, and --out names it too; merge into a new folder")
        }
        var shards: [OpenShard] = []
        for path in paths {
            let cache = try ActivationCache.open(path: path)
            guard let info = cache.manifest.settings.shard else {
                throw CacheError("\(path): not a shard (its manifest records no shard); merge joins caches written by sidecar extract --shard i/N")
            }
            shards.append(OpenShard(path: path, cache: cache, info: info))
        }
        let first = shards[0]
        var reference = first.cache.manifest.settings
        reference.shard = nil
        for shard in shards.dropFirst() {
            var settings = shard.cache.manifest.settings
            settings.shard = nil
            var differences = settings.differences(from: reference, mine: "in \(shard.path)", theirs: "in \(first.path)")
            if shard.info.count != first.info.count {
                differences.append("shard count: \(shard.info.count) in \(shard.path), \(first.info.count) in \(first.path)")
            }
            if shard.info.chunkSize != first.info.chunkSize {
                differences.append("chunk size: \(shard.info.chunkSize) in \(shard.path), \(first.info.chunkSize) in \(first.path)")
            }
            guard differences.isEmpty else {
                throw CacheError("\(shard.path) and \(first.path) are not shards of one extraction:\n  " + differences.joined(separator: "\n  "))
            }
        }
        var byIndex: [Int: OpenShard] = [:]
        for shard in shards {
            if let other = byIndex[shard.info.index] {
                throw CacheError("\(other.path) and \(shard.path) are both shard \(shard.info.index)/\(shard.info.count); give each shard once")
            }
            byIndex[shard.info.index] = shard
        }
        let count = first.info.count
        let missing = (0..<count).filter { byIndex[$0] == nil }
        guard missing.isEmpty else {
            throw CacheError("shard\(missing.count > 1 ? "s" : "") \(missing.map { "\($0)/\(count)" }.joined(separator: ", ")) missing: "
                             + "got \(shards.map { "\($0.info.index)/\(count) (\($0.path))" }.joined(separator: ", ")); merge needs all \(count)")
        }
        let settings = reference
        for shard in shards {
            let planned = ShardInfo(try shard.info.shard, chunkSize: shard.info.chunkSize, splitCounts: settings.splitCounts)
            guard planned == shard.info else {
                throw CacheError("\(shard.path): its manifest's ranges \(shard.info.ranges) are not those of shard \(shard.info) (\(planned.ranges)); the manifest is damaged")
            }
            var incomplete: [String] = []
            for split in settings.splits {
                let progress = try shard.cache.progress(of: split)
                let part = shard.info.range(of: split)
                if !progress.complete || progress.written != part.count {
                    incomplete.append(progress.written == part.count ? "\(split) has all \(part.count) examples but was not marked finished"
                                                                     : "\(split) \(progress.written) of \(part.count) examples")
                }
            }
            guard incomplete.isEmpty else {
                throw CacheError("\(shard.path): shard \(shard.info.index)/\(count) is incomplete (\(incomplete.joined(separator: ", "))); "
                                 + "run its sidecar extract --shard \(shard.info.index)/\(count) again to finish it")
            }
        }
        // Equal settings mean equal blobs and scales; a difference means a damaged shard, and so
        // does a blob that fails its own checksum (blobs are read through it).
        var shared: [[UInt8]: [UInt8]] = [:]
        let blobs = Dictionary(uniqueKeysWithValues: (settings.blobs ?? []).map { (ActivationCache.blobKey($0), $0) })
        func value(_ cache: ActivationCache, _ key: [UInt8]) throws -> [UInt8]? {
            if let name = blobs[key] { return try cache.blobBytes(name) }
            precondition(key == ActivationCache.int8ScalesKey, "merge copies blobs and int8 scales only")
            return try cache.int8ScaleBytes()
        }
        for key in (settings.blobs ?? []).map(ActivationCache.blobKey) + (settings.storage == .int8 ? [ActivationCache.int8ScalesKey] : []) {
            let name = String(decoding: key, as: UTF8.self)
            guard let reference = try value(first.cache, key) else { throw CacheError("\(first.path): has no \(name), though its manifest needs it") }
            for shard in shards.dropFirst() where try value(shard.cache, key) != reference {
                throw CacheError("\(shard.path) and \(first.path) hold different \(name); re-extract the damaged shard")
            }
            shared[key] = reference
        }
        return ((0..<count).map { byIndex[$0]! }, shared)
    }
}
