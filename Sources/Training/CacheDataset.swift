// Batches of one split of a cache, decoded straight from LMDB's memory map: only the features the
// heads read are decompressed, each into its place in the packed batch tensor, so a batch costs one
// copy per value and memory is bounded by the batch, whatever the dataset's size. With `inMemory`
// the needed features are decoded once and kept.
import ActivationStore
import Foundation
import SideNetworks
import TensorCore

/// What stage two reads of one cache, and how the heads should see it.
public struct CacheDescription: Sendable {
    public let context: HeadContext
    public let manifestHash: String
    public let labels: [String]
}

extension ActivationCache {
    /// The head context for this cache: width, layers, streams, layout, pooling, classes, blobs.
    public func describe() throws -> CacheDescription {
        let cache = self
        let context = try manifest.settings.headContext(path: path, loadBlob: { name in try cache.blob(name) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let hash = XXHash64.hash(Array(try encoder.encode(manifest)))
        return CacheDescription(context: context, manifestHash: String(format: "%016llx", hash), labels: manifest.settings.labels)
    }
}

extension ActivationCache {
    /// Throws when the cache's labels give a classifier nothing to learn: with one class, fit had
    /// trained to a loss of 0 and reported success, and so had every trial of a sweep.
    public func requireClasses() throws {
        let labels = manifest.settings.labels
        guard labels.count >= 2 else {
            throw CacheError("\(path): the dataset has \(labels.count) label\(labels.count == 1 ? " (\(labels[0]))" : "s"); a classifier needs at least 2")
        }
    }
}

/// One split of a cache as batches of the requested features.
public final class CacheDataset: @unchecked Sendable {
    public let cache: ActivationCache
    public let split: String
    public private(set) var count: Int
    public let features: [Feature]
    let layout: RowLayout
    let width: Int
    /// The manifest's settings, held once: every record read is checked against them.
    private let settings: ExtractionSettings
    /// Decoded examples when held in memory: rows, label, and per feature rows × width values.
    private var memory: [(rows: Int, label: Int, values: [[Float]])]?
    /// With `skipCorrupt`, the stored index of each example this dataset serves (the intact ones).
    private var intact: [Int]?
    /// The records left out because they failed a check (only with `skipCorrupt`), in key order.
    public private(set) var skipped: [CorruptRecord] = []

    /// Throws when the split is missing or incomplete, or a feature is not stored. Without
    /// `skipCorrupt`, a damaged record is an error when a batch reaches it; with it, every record's
    /// header and block checksums are checked first and the damaged ones are left out (`skipped`).
    public init(cache: ActivationCache, split: String, features: [Feature], inMemory: Bool = false, skipCorrupt: Bool = false) throws {
        let s = cache.manifest.settings
        guard s.splits.contains(split) else {
            throw CacheError("\(cache.path): the cache has no \(split) split (it has \(s.splits.joined(separator: ", ")))")
        }
        let progress = try cache.requireComplete(splits: [split])[split]!
        for feature in features {
            switch feature {
            case .hidden(let l):
                guard s.layers.contains(l) else { throw CacheError("\(cache.path): layer \(l) is not stored (layers \(s.layers))") }
            case .attention, .mlp:
                let stream = if case .attention = feature { "attn" } else { "mlp" }
                guard (s.streams ?? []).contains(stream), s.layers.contains(feature.layer) else {
                    throw CacheError("\(cache.path): the \(stream) stream of layer \(feature.layer) is not stored; extract with --streams attn,mlp")
                }
            }
        }
        self.cache = cache
        self.split = split
        count = progress.written
        self.features = features
        settings = s
        layout = RowLayout(rawValue: s.tokens.rawValue) ?? .tokens
        width = s.backbone.hiddenSize
        if skipCorrupt {
            let (good, bad) = try scan(written: progress.written)
            intact = good
            skipped = bad
            count = good.count
        }
        if inMemory { try holdInMemory() }
    }

    /// Decodes the features once and serves every batch from memory from then on.
    public func holdInMemory() throws {
        if memory == nil { memory = try decodeAll() }
    }

    /// What `holdInMemory` would hold: each example's rows of every feature in f32, from the
    /// record headers (nothing is decompressed).
    public func decodedBytes() throws -> Int {
        if let memory { return memory.reduce(0) { $0 + $1.rows * width * 4 * features.count } }
        return try rowCounts(Array(0..<count)).reduce(0, +) * width * 4 * features.count
    }

    /// Checks every stored record of the split without decompressing it: header, block checksums,
    /// width and label. Returns the intact indices and a fault for each other one (missing included).
    private func scan(written: Int) throws -> (intact: [Int], damaged: [CorruptRecord]) {
        var seen = [Bool](repeating: false, count: written)
        var damaged: [(Int, CorruptRecord)] = []
        try cache.forEachRecord(split: split) { index, record, _ in
            guard index < written else { return false }
            seen[index] = true
            do {
                let view = try record()
                try view.checkChecksums()
                if let fault = settings.shapeFault(of: view) { throw CorruptRecord(key: view.key, fault: fault) }
                guard view.label != nil else { throw CorruptRecord(key: view.key, fault: "the record has no label") }
            } catch let error as CorruptRecord {
                damaged.append((index, error))
            }
            return true
        }
        for index in 0..<written where !seen[index] {
            damaged.append((index, CorruptRecord(key: ActivationCache.keyName(split: split, index: index), fault: "the record is missing")))
        }
        damaged.sort { $0.0 < $1.0 }
        let bad = Set(damaged.map(\.0))
        return ((0..<written).filter { !bad.contains($0) }, damaged.map(\.1))
    }

    /// The record's shape checked against the manifest (the error names the cache and record).
    private func checkShape(_ view: RecordView) throws {
        if let mismatch = settings.shapeMismatch(of: view) { throw CacheError("\(cache.path): \(mismatch)") }
    }

    /// The stored index of example `i`.
    @inline(__always) private func stored(_ i: Int) -> Int { intact?[i] ?? i }

    static func stream(of feature: Feature) -> ActivationStore.Stream {
        switch feature {
        case .hidden: .hidden
        case .attention: .attention
        case .mlp: .mlp
        }
    }

    /// The labels of every example, in index order (for metrics and class counts).
    public func labels() throws -> [Int] {
        if let memory { return memory.map(\.label) }
        if let intact {
            return try cache.withRecords(split: split, indices: intact) { try $0.map(Self.label) }
        }
        var labels = [Int](repeating: 0, count: count)
        try cache.forEachRecord(split: split) { index, record, _ in
            guard index < count else { return false }
            labels[index] = try Self.label(of: try record())
            return true
        }
        return labels
    }

    static func label(of record: RecordView) throws -> Int {
        guard let label = record.label else { throw CacheError("\(record.key): the record has no label") }
        return label
    }

    private func decodeAll() throws -> [(rows: Int, label: Int, values: [[Float]])] {
        let decoder = try cache.makeDecoder(checkingContent: false)
        var out: [(rows: Int, label: Int, values: [[Float]])] = []
        out.reserveCapacity(count)
        let keep = intact.map(Set.init)
        let written = intact == nil ? count : (intact!.last ?? -1) + 1
        try cache.forEachRecord(split: split) { index, record, _ in
            guard index < written else { return false }
            if let keep, !keep.contains(index) { return true }
            let view = try record()
            try checkShape(view)
            let values = try features.map { feature in
                var v = [Float](repeating: 0, count: view.rows * view.width)
                try v.withUnsafeMutableBufferPointer { try decoder.decode(view, layer: feature.layer, stream: Self.stream(of: feature), into: $0) }
                return v
            }
            out.append((view.rows, try Self.label(of: view), values))
            return true
        }
        guard out.count == count else { throw CacheError("\(cache.path): the \(split) split holds \(out.count) records, the manifest says \(count)") }
        return out
    }

    /// The rows of each example `indices`, from the record headers.
    public func rowCounts(_ indices: [Int]) throws -> [Int] {
        if let memory { return indices.map { memory[$0].rows } }
        return try cache.withRecords(split: split, indices: intact == nil ? indices : indices.map(stored)) { $0.map(\.rows) }
    }

    /// The examples `indices` as one packed batch. Each block decompresses straight into its place
    /// in the batch's tensor, sized from the record headers first.
    public func batch(_ indices: [Int], decoder: RecordDecoder) throws -> Batch {
        if let memory {
            let examples = indices.map { memory[$0] }
            let buffers = features.indices.map { f in examples.flatMap { $0.values[f] } }
            return packed(labels: examples.map(\.label), lengths: examples.map(\.rows), buffers: buffers)
        }
        return try cache.withRecords(split: split, indices: intact == nil ? indices : indices.map(stored)) { views in
            var labels: [Int] = []
            labels.reserveCapacity(views.count)
            for view in views {
                try checkShape(view)
                labels.append(try Self.label(of: view))
            }
            let lengths = views.map(\.rows)
            let total = lengths.reduce(0, +) * width
            // An empty part gets plain empty buffers (see Tensor(uninitialized:)).
            let buffers = try features.map { feature in
                total == 0 ? [] : try [Float](unsafeUninitializedCapacity: total) { all, count in
                    var offset = 0
                    for view in views {
                        let n = view.rows * view.width
                        try decoder.decode(view, layer: feature.layer, stream: Self.stream(of: feature),
                                           into: UnsafeMutableBufferPointer(rebasing: all[offset..<(offset + n)]))
                        offset += n
                    }
                    count = total
                }
            }
            return packed(labels: labels, lengths: lengths, buffers: buffers)
        }
    }

    /// A batch from its examples' labels, row counts and, per feature, their rows back to back.
    private func packed(labels: [Int], lengths: [Int], buffers: [[Float]]) -> Batch {
        let segments = Segments(lengths: lengths)
        var tensors: [Feature: Tensor] = [:]
        for (f, feature) in features.enumerated() {
            tensors[feature] = Tensor(shape: [segments.totalRows, width], scalars: buffers[f])
        }
        return Batch(labels: labels, segments: segments, features: tensors, layout: layout)
    }
}

/// The next batch of a pass, decoded in parts (`Batch.shardRanges`) by the training threads
/// themselves: each part is one work item, queued behind the items of the step in progress, so
/// the cores decode in the step's gaps. (A decoding thread of its own either took a core from the
/// step, or, below the step's priority, lagged behind it and made the next step wait.) One
/// decoder per part, reused from batch to batch.
public final class NextBatch: @unchecked Sendable {
    public let dataset: CacheDataset
    private let decoders: [RecordDecoder]
    private var indices: [Int] = []
    private var ranges: [Range<Int>] = []
    /// One slot per part, each written by the one thread that decodes that part.
    private let decoded: [Slot]

    private final class Slot: @unchecked Sendable {
        var result: Result<Batch, Error>?
    }

    /// Decodes batches as `parts` parts.
    public init(dataset: CacheDataset, parts: Int) throws {
        self.dataset = dataset
        decoders = try (0..<max(parts, 1)).map { _ in try dataset.cache.makeDecoder(checkingContent: false) }
        decoded = decoders.map { _ in Slot() }
    }

    /// Parts of a batch.
    public var parts: Int { decoders.count }

    /// Starts batch `indices`: splits it from its record headers; `decode(part:)` then decodes each
    /// part, on any thread, one thread per part. (Each part's decoding reads its headers again:
    /// one lookup per record, next to decompressing all of its blocks.)
    public func start(_ indices: [Int]) throws {
        self.indices = indices
        ranges = Batch.shardRanges(lengths: try dataset.rowCounts(indices), shards: parts)
    }

    public func decode(part: Int) {
        decoded[part].result = Result { try dataset.batch(Array(indices[ranges[part]]), decoder: decoders[part]) }
    }

    /// The started batch's parts once every one is decoded; the first part's error otherwise.
    public func take() throws -> [Batch] {
        try decoded.map { slot in
            defer { slot.result = nil }
            guard let result = slot.result else { preconditionFailure("a part of the next batch was never decoded") }
            return try result.get()
        }
    }
}
