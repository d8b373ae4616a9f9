// What a head sees of the cache: a batch of examples, each one or more packed rows per feature
// (all real tokens, or the pooled rows of a `cls`/`mean` cache), with their labels.
import Foundation
import TensorCore

/// One cached tensor kind of one layer.
public enum Feature: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// z_l: the hidden state after block l (0: the embedding output).
    case hidden(Int)
    /// A_l: block l's attention branch output before the residual add.
    case attention(Int)
    /// M_l: block l's MLP branch output before the residual add.
    case mlp(Int)

    public var layer: Int {
        switch self {
        case .hidden(let l), .attention(let l), .mlp(let l): l
        }
    }

    public var description: String {
        switch self {
        case .hidden(let l): "z_\(l)"
        case .attention(let l): "attn_\(l)"
        case .mlp(let l): "mlp_\(l)"
        }
    }

    private var order: (Int, Int) {
        switch self {
        case .hidden(let l): (0, l)
        case .attention(let l): (1, l)
        case .mlp(let l): (2, l)
        }
    }

    public static func < (a: Feature, b: Feature) -> Bool { a.order < b.order }

    /// What several heads read together, each feature once, in order: a pass decodes only these.
    public static func union(_ lists: [[Feature]]) -> [Feature] {
        Array(Set(lists.joined())).sorted()
    }
}

/// Which rows a cache stores per example.
public enum RowLayout: String, Sendable, Codable {
    /// Every real token, packed: example b owns rows segments.range(b).
    case tokens = "all"
    /// One row: the first token.
    case cls
    /// One row: the mean over real tokens.
    case mean
    /// Two rows: the first token, then the mean.
    case clsAndMean = "cls+mean"
}

/// How a sequence becomes one vector for the classifier.
public enum PoolingMode: String, Sendable, Codable, CaseIterable {
    /// The first token ([CLS], ViT's class token).
    case cls
    /// The mean over real tokens (sentence-transformers' pooling).
    case mean
}

/// A batch of examples as stage two reads it.
public struct Batch: Sendable {
    /// Class ids, one per example.
    public var labels: [Int]
    /// The packed rows of each example (the same for every feature).
    public var segments: Segments { didSet { pooledMemo = PooledMemo() } }
    /// [rows, width] per decoded feature.
    public var features: [Feature: Tensor] { didSet { pooledMemo = PooledMemo() } }
    public var layout: RowLayout { didSet { pooledMemo = PooledMemo() } }
    /// Pooled features computed once per batch and shared by the heads that step on it (a
    /// changed batch starts a new one).
    private(set) var pooledMemo = PooledMemo()

    public init(labels: [Int], segments: Segments, features: [Feature: Tensor], layout: RowLayout) {
        self.labels = labels
        self.segments = segments
        self.features = features
        self.layout = layout
    }

    public var count: Int { labels.count }

    /// The rows of a feature; a head asks only for features it declared, so absence is a bug.
    public func tensor(_ feature: Feature) -> Tensor {
        guard let t = features[feature] else { preconditionFailure("batch has no \(feature); decoded: \(features.keys.sorted())") }
        return t
    }

    /// The examples in `examples` as a batch of their own: their labels, their rows of every
    /// feature, segments counted from 0.
    public func slice(_ examples: Range<Int>) -> Batch {
        precondition(examples.lowerBound >= 0 && examples.upperBound <= count, "slice \(examples) of a batch of \(count)")
        let first = segments.offsets[examples.lowerBound], end = segments.offsets[examples.upperBound]
        let offsets = segments.offsets[examples.lowerBound...examples.upperBound].map { $0 - first }
        let total = segments.totalRows
        return Batch(labels: Array(labels[examples]), segments: Segments(offsets: offsets),
                     features: features.mapValues { t in
                         let width = t.count / max(total, 1)
                         return Tensor(shape: [end - first] + t.shape.dropFirst(), scalars: Array(t.scalars[(first * width)..<(end * width)]))
                     },
                     layout: layout)
    }

    /// The parts' examples in order as one batch (the inverse of `slice`). Every part must carry
    /// the same features and layout.
    public init(concatenating parts: [Batch]) {
        precondition(!parts.isEmpty, "no batches to concatenate")
        let first = parts[0]
        precondition(parts.allSatisfy { $0.layout == first.layout && Set($0.features.keys) == Set(first.features.keys) },
                     "concatenated batches differ in layout or features")
        var features: [Feature: Tensor] = [:]
        for (feature, t) in first.features {
            var scalars: [Float] = []
            scalars.reserveCapacity(parts.reduce(0) { $0 + $1.features[feature]!.count })
            for part in parts { scalars.append(contentsOf: part.features[feature]!.scalars) }
            let rows = parts.reduce(0) { $0 + $1.segments.totalRows }
            features[feature] = Tensor(shape: [rows] + t.shape.dropFirst(), scalars: scalars)
        }
        self.init(labels: parts.flatMap(\.labels), segments: Segments(lengths: parts.flatMap(\.segments.lengths)),
                  features: features, layout: first.layout)
    }

    /// Example ranges of `shards` fixed parts of a batch whose examples have `lengths` rows:
    /// consecutive examples, split where the rows run closest to an equal share, since a part's
    /// work is about proportional to its rows (halves by example count could give one part far
    /// more tokens while the other core waited). The parts depend on nothing but the batch. The
    /// last part holds at least one example when there is one; a tie goes to the earlier boundary.
    public static func shardRanges(lengths: [Int], shards: Int) -> [Range<Int>] {
        var prefix = [0]
        for length in lengths { prefix.append(prefix.last! + length) }
        let count = lengths.count, total = prefix.last!
        var bounds = [0]
        for k in 1..<max(shards, 1) {
            // The first boundary at or past k/shards of the rows, or the one before it if closer.
            let target = k * total
            var i = bounds.last!
            while i < count && prefix[i] * shards < target { i += 1 }
            if i > bounds.last!, abs(prefix[i - 1] * shards - target) <= abs(prefix[i] * shards - target) { i -= 1 }
            bounds.append(min(i, max(count - 1, 0)))
        }
        bounds.append(count)
        return (0..<max(shards, 1)).map { bounds[$0]..<max(bounds[$0], bounds[$0 + 1]) }
    }
}

/// One batch's pooled features by (feature, pooling), filled on first use. Heads of a pass run on
/// separate threads and ask for the same features at the same moment: the first computes, the
/// others wait for its result.
final class PooledMemo: @unchecked Sendable {
    private let lock = NSLock()
    private var cells: [PooledKey: OnceCell<Tensor>] = [:]

    struct PooledKey: Hashable {
        let feature: Feature
        let mode: PoolingMode
    }

    func value(_ feature: Feature, _ mode: PoolingMode, compute: () -> Tensor) -> Tensor {
        let key = PooledKey(feature: feature, mode: mode)
        lock.lock()
        let cell = cells[key] ?? OnceCell()
        cells[key] = cell
        lock.unlock()
        return cell.get(compute)
    }
}

/// A value built once, by the first thread that asks; the others wait for it. Each cell has its
/// own lock, so different cells are built at once.
final class OnceCell<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value?

    init(_ value: Value? = nil) { self.value = value }

    func get(_ make: () -> Value) -> Value {
        lock.lock()
        defer { lock.unlock() }
        if let value { return value }
        let made = make()
        value = made
        return made
    }
}
