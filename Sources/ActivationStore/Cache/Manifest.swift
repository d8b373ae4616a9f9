// The cache manifest: everything needed to read the cache, and to tell whether a new extraction
// into the same folder would produce the same records (the settings), kept apart from the
// per-split progress, which changes as extraction runs.
import Foundation

/// Which token rows are stored per example.
public enum TokenPolicy: String, Codable, Sendable, CaseIterable {
    /// Every real token (never padding).
    case all
    /// The first token ([CLS] / the class token).
    case cls
    /// The mean over real tokens.
    case mean
    /// Two rows: [CLS], then the mean.
    case clsAndMean = "cls+mean"
}

/// What identifies a backbone: its architecture and hashes of its files.
public struct BackboneIdentity: Codable, Sendable, Equatable {
    public var name: String
    public var architecture: String
    public var hiddenSize: Int
    public var layerCount: Int
    /// XXH64 of config.json and of the weights file, hex.
    public var configHash: String
    public var weightsHash: String
    public var weightsBytes: Int
    /// Elements of every tensor in the weights file that the encoder can run (a full CLIPModel's
    /// vision tower alone), whatever their type; nil in caches made before it was recorded (a
    /// fraction of the backbone then assumes 4-byte weights).
    public var parameterCount: Int?

    public init(name: String, architecture: String, hiddenSize: Int, layerCount: Int, configHash: String, weightsHash: String, weightsBytes: Int,
                parameterCount: Int? = nil) {
        self.name = name
        self.architecture = architecture
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.configHash = configHash
        self.weightsHash = weightsHash
        self.weightsBytes = weightsBytes
        self.parameterCount = parameterCount
    }

    /// The backbone's parameters: counted, or for older caches the weights' bytes over 4.
    public var parameters: Int { parameterCount ?? weightsBytes / 4 }

    /// The same backbone: the count is derived from the weights, whose hash is compared, and older
    /// caches and heads lack it. The name is only the folder's: the built-in MiniLM given by its
    /// folder's path is "model", and had been refused as another backbone than "all-MiniLM-L6-v2".
    public static func == (a: Self, b: Self) -> Bool { a.differences(from: b).isEmpty }

    /// The fields `==` compares that differ, as (name, mine, theirs).
    public func differences(from other: Self) -> [(name: String, mine: String, theirs: String)] {
        [("backbone architecture", architecture, other.architecture),
         ("backbone width", "\(hiddenSize)", "\(other.hiddenSize)"), ("backbone layers", "\(layerCount)", "\(other.layerCount)"),
         ("backbone config hash", configHash, other.configHash), ("backbone weights hash", weightsHash, other.weightsHash),
         ("backbone weights bytes", "\(weightsBytes)", "\(other.weightsBytes)")].filter { $0.1 != $0.2 }
    }
}

/// One input file of the dataset, identified by size and content hash.
public struct DatasetFile: Codable, Sendable, Equatable {
    public var split: String
    public var name: String
    public var bytes: Int
    public var hash: String

    public init(split: String, name: String, bytes: Int, hash: String) {
        self.split = split
        self.name = name
        self.bytes = bytes
        self.hash = hash
    }
}

/// Everything that determines the records. Two extractions with equal settings write identical
/// caches, so a resumed extraction must have exactly these.
public struct ExtractionSettings: Codable, Sendable, Equatable {
    public var backbone: BackboneIdentity
    /// Input preprocessing, e.g. ["tokenizer": "wordpiece", "max_length": "128", "lowercase": "true"].
    public var preprocessing: [String: String]
    public var datasetFiles: [DatasetFile]
    public var layers: [Int]
    public var tokens: TokenPolicy
    public var storage: StorageType
    public var zstdLevel: Int
    public var shuffle: Bool
    /// Label names; record label ids index this list.
    public var labels: [String]
    /// Examples per split, in extraction order (e.g. ["train": 27461, "val": 3432]).
    public var splitCounts: [String: Int]
    /// Split names in extraction order.
    public var splits: [String]
    // The fields below came after format 1's first caches; they are optional so those still
    // decode (nil there means: not recorded, i.e. no extra streams and no blobs).
    /// Extra per-block streams stored for every kept layer ≥ 1, by name ("attn", "mlp").
    public var streams: [String]?
    /// N_max: the most tokens an example can have (text: max_length; images: 1 + patches).
    public var maxTokens: Int?
    /// How the backbone pools a sequence: "mean" (BERT-family sentence encoders) or "cls" (ViT).
    public var pooling: String?
    /// Names of the blobs stored in the meta database (key "blob:NAME").
    public var blobs: [String]?
    /// Set only in a shard's cache (`sidecar extract --shard`): which part of each split it holds.
    /// Absent, as in every cache before it, for a whole extraction, whose manifest is unchanged.
    public var shard: ShardInfo?
    /// The arithmetic of the encoder's dense products: "f32" or "bf16" (`sidecar extract
    /// --compute`). Absent in caches from before it was recorded, which were all f32.
    public var compute: String?
    /// For int8 storage: the scales were calibrated on this many first examples of the first split
    /// (the extraction's chunk size), so that two int8 caches with equal settings hold equal
    /// records, and a resume with another chunk size is refused. Absent otherwise.
    public var int8Calibration: Int?

    public init(backbone: BackboneIdentity, preprocessing: [String: String], datasetFiles: [DatasetFile], layers: [Int],
                tokens: TokenPolicy, storage: StorageType, zstdLevel: Int, shuffle: Bool, labels: [String],
                splits: [String], splitCounts: [String: Int], streams: [String]? = nil, maxTokens: Int? = nil,
                pooling: String? = nil, blobs: [String]? = nil, shard: ShardInfo? = nil, compute: String? = nil,
                int8Calibration: Int? = nil) {
        self.backbone = backbone
        self.preprocessing = preprocessing
        self.datasetFiles = datasetFiles
        self.layers = layers
        self.tokens = tokens
        self.storage = storage
        self.zstdLevel = zstdLevel
        self.shuffle = shuffle
        self.labels = labels
        self.splits = splits
        self.splitCounts = splitCounts
        self.streams = streams
        self.maxTokens = maxTokens
        self.pooling = pooling
        self.blobs = blobs
        self.shard = shard
        self.compute = compute
        self.int8Calibration = int8Calibration
    }

    /// What no extraction could have recorded, named by its key, or nil. A hand-edited or damaged
    /// head config had trapped deep in a head or the tokenizer instead (a layer listed twice, a
    /// negative N_max, a max_length of 1).
    public var fault: String? {
        let b = backbone
        guard (1...(1 << 16)).contains(b.hiddenSize) else { return "backbone.hiddenSize \(b.hiddenSize) (expected 1 to 65536)" }
        guard (1...4096).contains(b.layerCount) else { return "backbone.layerCount \(b.layerCount) (expected 1 to 4096)" }
        guard !layers.isEmpty, layers.allSatisfy({ (0...b.layerCount).contains($0) }) else {
            return "layers \(layers) (expected layers from 0 to the backbone's \(b.layerCount))"
        }
        guard Set(layers).count == layers.count else { return "layers \(layers) (a layer listed twice)" }
        // extract sorts them, and the order is the order of the features a head reads.
        guard layers == layers.sorted() else { return "layers \(layers) (not in ascending order)" }
        if let maxTokens, !(1...(1 << 20)).contains(maxTokens) { return "maxTokens \(maxTokens) (expected 1 to 1048576)" }
        if let text = preprocessing["max_length"] {
            // extract refuses fewer than 3: [CLS] and two [SEP].
            guard let length = Int(text), length >= 3 else { return "preprocessing.max_length \"\(text)\" (expected a whole number of at least 3)" }
            if let maxTokens, length > maxTokens { return "preprocessing.max_length \(length), more than maxTokens \(maxTokens)" }
        }
        return nil
    }

    /// Preprocessing keys that caches made before they were recorded lack: compared only when both
    /// sides record them, so that such a cache still resumes and its heads still evaluate.
    public static let laterPreprocessingKeys: Set<String> = ["vocabulary"]

    /// The top-level fields in which two JSON objects differ, each as JSON text ("unset" where one
    /// lacks it), sorted by name; nil unless both are JSON objects.
    public static func fieldDifferences(_ a: String, _ b: String) -> [(field: String, a: String, b: String)]? {
        func object(_ text: String) -> [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] }
        guard let left = object(a), let right = object(b) else { return nil }
        func text(_ value: Any?) -> String {
            guard let value else { return "unset" }
            guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) else { return "\(value)" }
            return String(decoding: data, as: UTF8.self)
        }
        return Set(left.keys).union(right.keys).sorted().compactMap { field in
            let (x, y) = (text(left[field]), text(right[field]))
            return x == y ? nil : (field, x, y)
        }
    }

    /// The preprocessing entries (of the keys `included` accepts) that differ from `other`'s, as
    /// ("preprocessing KEY", this side's value, other's), "unset" where a side lacks the key. Key by
    /// key, sorted (whole dictionaries, printed in no fixed order, hid which one differed); a value
    /// that is itself a JSON object (the image settings) field by field, as "preprocessing
    /// KEY.FIELD"; a later key only when both sides record it.
    public func preprocessingDifferences(from other: ExtractionSettings, included: (String) -> Bool = { _ in true })
        -> [(name: String, mine: String, theirs: String)] {
        var out: [(name: String, mine: String, theirs: String)] = []
        for key in Set(preprocessing.keys).union(other.preprocessing.keys).sorted() where included(key) {
            let (a, b) = (preprocessing[key], other.preprocessing[key])
            if a == b || Self.laterPreprocessingKeys.contains(key) && (a == nil || b == nil) { continue }
            if let a, let b, let fields = Self.fieldDifferences(a, b) {
                out += fields.map { ("preprocessing \(key).\($0.field)", $0.a, $0.b) }
            } else {
                out.append(("preprocessing \(key)", a ?? "unset", b ?? "unset"))
            }
        }
        return out
    }

    /// Human-readable differences from `other` ("layers: [0, 6] requested, [0, 1, 2] in the cache");
    /// `mine` and `theirs` say where each side comes from.
    public func differences(from other: ExtractionSettings, mine: String = "requested", theirs: String = "in the cache") -> [String] {
        var out: [String] = []
        func compare<T: Equatable>(_ name: String, _ a: T, _ b: T) {
            if a != b { out.append("\(name): \(a) \(mine), \(b) \(theirs)") }
        }
        for (name, a, b) in backbone.differences(from: other.backbone) { compare(name, a, b) }
        for (name, a, b) in preprocessingDifferences(from: other) { compare(name, a, b) }
        compare("dataset files", datasetFiles.map { "\($0.name) (\($0.bytes) bytes, \($0.hash))" },
                other.datasetFiles.map { "\($0.name) (\($0.bytes) bytes, \($0.hash))" })
        compare("layers", layers, other.layers)
        compare("tokens", tokens.rawValue, other.tokens.rawValue)
        compare("dtype", storage.rawValue, other.storage.rawValue)
        compare("zstd level", zstdLevel, other.zstdLevel)
        compare("byte shuffle", shuffle, other.shuffle)
        if !Self.sameLabels(labels, other.labels) {
            let how = labels == other.labels ? " (the same text in another Unicode normalization)" : ""
            out.append("labels: \(labels) \(mine), \(other.labels) \(theirs)\(how)")
        }
        compare("streams", streams ?? [], other.streams ?? [])
        compare("max tokens", maxTokens.map(String.init) ?? "unrecorded", other.maxTokens.map(String.init) ?? "unrecorded")
        compare("pooling", pooling ?? "unrecorded", other.pooling ?? "unrecorded")
        compare("blobs", blobs ?? [], other.blobs ?? [])
        compare("compute", compute ?? "f32", other.compute ?? "f32")
        compare("int8 calibration examples (--chunk-size)", int8Calibration.map(String.init) ?? "unrecorded",
                other.int8Calibration.map(String.init) ?? "unrecorded")
        compare("shard", shard.map { "\($0)" } ?? "none (whole dataset)", other.shard.map { "\($0)" } ?? "none (whole dataset)")
        return out
    }
}

extension ExtractionSettings {
    /// Label lists compared by their bytes, as the label map tells labels apart (String's
    /// equality would take "café" composed and decomposed for one label).
    public static func sameLabels(_ a: [String], _ b: [String]) -> Bool {
        a.map { Array($0.utf8) } == b.map { Array($0.utf8) }
    }

    /// How a record's shape disagrees with these settings, or nil: its width, and its rows
    /// against the token policy (N_max for every token). The record's header has a checksum and
    /// the manifest has none, so either may be the damaged one; a head given a wider or longer
    /// record than the manifest allows would trap on its shapes.
    public func shapeFault(of record: RecordView) -> String? {
        if record.width != backbone.hiddenSize { return "width \(record.width), the manifest says \(backbone.hiddenSize)" }
        switch tokens {
        case .all:
            if let maxTokens, record.rows > maxTokens { return "\(record.rows) tokens, more than the manifest's N_max \(maxTokens)" }
        case .cls, .mean:
            if record.rows != 1 { return "\(record.rows) rows, the manifest's token policy stores 1" }
        case .clsAndMean:
            if record.rows != 2 { return "\(record.rows) rows, the manifest's token policy stores 2" }
        }
        return nil
    }

    /// `shapeFault` as a reader reports it, naming the record.
    public func shapeMismatch(of record: RecordView) -> String? {
        shapeFault(of: record).map { "record \(record.key) does not match the manifest: \($0); one of them is damaged" }
    }
}

/// The manifest record: format version plus the settings.
public struct Manifest: Codable, Sendable, Equatable {
    public static let currentFormat = 1
    public var format: Int
    public var settings: ExtractionSettings

    public init(settings: ExtractionSettings) {
        self.format = Self.currentFormat
        self.settings = settings
    }
}

/// How far extraction of one split has come. Stored in the same transaction as the records it
/// covers, so it never claims a record that is not there.
public struct SplitProgress: Codable, Sendable, Equatable {
    /// Examples 0..<written are stored; in a shard's cache, the first `written` of its range.
    public var written: Int
    public var complete: Bool

    public init(written: Int = 0, complete: Bool = false) {
        self.written = written
        self.complete = complete
    }

    /// What finishes an incomplete split: a merged cache records no sign that a merge made it.
    public static let toFinish = "run the same sidecar extract (or sidecar merge, for a merged cache) again to finish it"
}
