// What `sidecar inspect` shows: counts per split, stored bytes per layer against raw fp32, a digest
// per split over the decoded values (so two caches can be compared whatever their codec), and with
// verification, every damaged record by key.
import Foundation

public struct CacheReport: Codable, Sendable {
    public struct SplitReport: Codable, Sendable {
        public var name: String
        /// Examples the split has (in a shard's cache: examples of its part).
        public var expected: Int
        public var written: Int
        public var complete: Bool
        public var records: Int
        /// XXH64 over the decoded Float32 values of every record in key order, hex (with `digest`).
        public var digest: String?
    }

    public struct LayerReport: Codable, Sendable {
        public var layer: Int
        public var storedBytes: Int
        public var rawFloat32Bytes: Int
        public var tokens: Int
        public var bytesPerToken: Double
    }

    public var path: String
    public var manifest: Manifest
    public var splits: [SplitReport]
    public var layers: [LayerReport]
    public var storedBytes: Int
    public var rawFloat32Bytes: Int
    /// Stored bytes / raw fp32 bytes of the activations.
    public var ratioVsF32: Double
    /// Damaged records ("train:12: checksum mismatch in layer 3"), when verified.
    public var damaged: [String]?
    /// Blobs without a checksum (caches from before blobs had one), read but not checked, when
    /// verified: a verification had said every blob's checksum matched.
    public var uncheckedBlobs: [String]?

    enum CodingKeys: String, CodingKey {
        case path, manifest, splits, layers, storedBytes = "stored_bytes", rawFloat32Bytes = "raw_f32_bytes"
        case ratioVsF32 = "ratio_vs_f32", damaged, uncheckedBlobs = "unchecked_blobs"
    }

    /// Scans every record of `cache`. With `verify`, every block is checksummed and decoded and
    /// failures are listed instead of thrown; `digest` decodes everything to hash the values.
    public static func make(_ cache: ActivationCache, verify: Bool, digest: Bool) throws -> CacheReport {
        let settings = cache.manifest.settings
        var layers = Dictionary(uniqueKeysWithValues: settings.layers.map { ($0, LayerReport(layer: $0, storedBytes: 0, rawFloat32Bytes: 0, tokens: 0, bytesPerToken: 0)) })
        var splits: [SplitReport] = []
        var damaged: [String] = []
        let decoder = try cache.makeDecoder()
        var values: [Float] = []
        for split in settings.splits {
            let progress = try cache.progress(of: split)
            // A shard expects its part of the split.
            let expected = settings.heldRange(of: split).count
            var report = SplitReport(name: split, expected: expected, written: progress.written,
                                     complete: progress.complete, records: 0, digest: nil)
            var recordHashes: [UInt64] = []
            // Records first..<first + written must all be there, and no others: LMDB has no
            // checksums of its own, and a damaged page can drop or re-key a record.
            let first = settings.heldRange(of: split).lowerBound
            var next = first
            func missing(upTo end: Int) {
                for index in next..<max(next, end) { damaged.append("record \(ActivationCache.keyName(split: split, index: index)) is missing") }
            }
            try cache.forEachRecord(split: split) { index, open, raw in
                report.records += 1
                if verify {
                    missing(upTo: min(index, first + progress.written))
                    next = max(next, index + 1)
                    if index >= first + progress.written {
                        damaged.append("record \(ActivationCache.keyName(split: split, index: index)) is beyond the \(progress.written) the split's progress counts")
                    }
                }
                let record: RecordView
                do { record = try open() } catch {
                    guard verify else { throw error }
                    damaged.append("\(error)")
                    return true
                }
                if verify, let mismatch = settings.shapeMismatch(of: record) {
                    damaged.append(mismatch)
                    return true
                }
                for block in record.blocks {
                    layers[block.layer]?.storedBytes += block.length
                    layers[block.layer]?.rawFloat32Bytes += record.rows * record.width * 4
                    layers[block.layer]?.tokens += record.rows
                }
                if verify || digest {
                    if values.count != record.rows * record.width { values = [Float](repeating: 0, count: record.rows * record.width) }
                    var hash: UInt64 = 0
                    for block in record.blocks {
                        do {
                            try values.withUnsafeMutableBufferPointer {
                                try decoder.decode(record, layer: block.layer, stream: block.stream, into: $0)
                            }
                        } catch {
                            guard verify else { throw error }
                            damaged.append("\(error)")
                            return true
                        }
                        hash = values.withUnsafeBytes { XXHash64.hash($0, seed: hash) }
                    }
                    if let label = record.label { hash = withUnsafeBytes(of: UInt64(label)) { XXHash64.hash($0, seed: hash) } }
                    recordHashes.append(hash)
                }
                return true
            }
            if verify { missing(upTo: first + progress.written) }
            if digest || verify {
                // Sixteen digits always, so digests line up and compare as text.
                report.digest = String(format: "%016llx", recordHashes.withUnsafeBytes { XXHash64.hash($0) })
            }
            splits.append(report)
        }
        var unchecked: [String] = []
        if verify {
            for name in settings.blobs ?? [] {
                do {
                    guard let blob = try cache.blob(name) else {
                        damaged.append(cache.missingBlobMessage(name))
                        continue
                    }
                    if let tensor = blob.firstNonFiniteTensor() {
                        damaged.append("\(blob.label): \(tensor) holds a NaN or an infinity")
                    } else if try !cache.hasBlobChecksum(name) {
                        unchecked.append(name)
                    }
                } catch {
                    damaged.append("\(error)")
                }
            }
        }
        var layerReports = settings.layers.compactMap { layers[$0] }
        for i in layerReports.indices where layerReports[i].tokens > 0 {
            layerReports[i].bytesPerToken = Double(layerReports[i].storedBytes) / Double(layerReports[i].tokens)
        }
        let stored = layerReports.reduce(0) { $0 + $1.storedBytes }, raw = layerReports.reduce(0) { $0 + $1.rawFloat32Bytes }
        return CacheReport(path: cache.path, manifest: cache.manifest, splits: splits, layers: layerReports, storedBytes: stored,
                           rawFloat32Bytes: raw, ratioVsF32: raw > 0 ? Double(stored) / Double(raw) : 0,
                           damaged: verify ? damaged : nil, uncheckedBlobs: verify ? unchecked : nil)
    }
}
