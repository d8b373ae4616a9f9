// The manifest fields added after format 1's first caches, and blobs: caches written before those
// fields still open, and a blob comes back from a real cache exactly as it was stored.
import ActivationStore
import Foundation
import Testing
import TensorCore

func sampleSettings(blobs: [String]? = nil) -> ExtractionSettings {
    ExtractionSettings(
        backbone: BackboneIdentity(name: "tiny", architecture: "bert", hiddenSize: 4, layerCount: 2, configHash: "1", weightsHash: "2", weightsBytes: 3),
        preprocessing: ["max_length": "8"], datasetFiles: [], layers: [0, 1, 2], tokens: .all, storage: .f32, zstdLevel: 1,
        shuffle: true, labels: ["a", "b"], splits: ["train"], splitCounts: ["train": 0],
        streams: ["attn", "mlp"], maxTokens: 8, pooling: "mean", blobs: blobs)
}

@Suite struct ManifestAndBlobTests {
    /// A manifest as the first format-1 caches wrote it, without streams, maxTokens, pooling, blobs.
    @Test func anOldManifestWithoutTheNewFieldsDecodes() throws {
        let json = """
            {"format": 1, "settings": {"backbone": {"name": "all-MiniLM-L6-v2", "architecture": "bert", "hiddenSize": 384,
             "layerCount": 6, "configHash": "ab", "weightsHash": "cd", "weightsBytes": 90868376},
             "preprocessing": {"max_length": "128"}, "datasetFiles": [{"split": "train", "name": "train.jsonl", "bytes": 10, "hash": "ef"}],
             "layers": [0, 6], "tokens": "all", "storage": "bf16", "zstdLevel": 1, "shuffle": true, "labels": ["x"],
             "splitCounts": {"train": 40}, "splits": ["train"]}}
            """
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(json.utf8))
        #expect(manifest.settings.layers == [0, 6])
        #expect(manifest.settings.streams == nil && manifest.settings.maxTokens == nil)
        #expect(manifest.settings.pooling == nil && manifest.settings.blobs == nil)
        // Re-encoded, it still has none of them (optionals are left out, not written as null).
        let again = String(decoding: try JSONEncoder().encode(manifest), as: UTF8.self)
        #expect(!again.contains("streams") && !again.contains("blobs"))
        // Compared with a new-style request, the differences name the new fields.
        var newer = manifest.settings
        newer.streams = ["attn"]
        newer.blobs = ["lst.r8"]
        let differences = newer.differences(from: manifest.settings)
        #expect(differences.contains("streams: [\"attn\"] requested, [] in the cache"), "\(differences)")
        #expect(differences.contains("blobs: [\"lst.r8\"] requested, [] in the cache"), "\(differences)")
    }

    /// Preprocessing differs key by key, in a fixed order; a key only later versions record (the
    /// vocabulary's hash) is compared only when both sides have it.
    @Test func preprocessingDiffersKeyByKey() throws {
        var old = sampleSettings()
        old.preprocessing = ["max_length": "128", "lowercase": "true"]
        var new = old
        new.preprocessing = ["max_length": "64", "lowercase": "true", "text_column": "body", "vocabulary": "ab12"]
        #expect(new.differences(from: old) == ["preprocessing max_length: 64 requested, 128 in the cache",
                                               "preprocessing text_column: body requested, unset in the cache"])
        var other = new
        other.preprocessing["vocabulary"] = "cd34"
        #expect(other.differences(from: new) == ["preprocessing vocabulary: cd34 requested, ab12 in the cache"])
        // The image settings, a JSON object, differ field by field.
        var image = old, alpha = old
        image.preprocessing = ["image": #"{"mean":[0.5,0.5,0.5],"resample":2}"#]
        alpha.preprocessing = ["image": #"{"alphaOnWhite":true,"mean":[0.5,0.5,0.5],"resample":3}"#]
        #expect(alpha.differences(from: image) == ["preprocessing image.alphaOnWhite: true requested, unset in the cache",
                                                   "preprocessing image.resample: 3 requested, 2 in the cache"])
    }

    /// Every field a backbone's identity compares is named when it differs (a width that differed
    /// alone had been reported as two identical names and hashes).
    @Test func backboneDifferencesNameTheField() {
        let base = sampleSettings()
        var other = base
        other.backbone.hiddenSize = 8
        other.backbone.parameterCount = 99
        #expect(base.backbone != other.backbone)
        #expect(base.differences(from: other) == ["backbone width: 4 requested, 8 in the cache"])
        other.backbone.hiddenSize = 4
        #expect(base.backbone == other.backbone)
    }

    /// Labels differing only in Unicode normalization are different labels, as to the label map:
    /// a resume or merge across them would give one id two meanings.
    @Test func labelsDifferingInNormalizationDiffer() {
        var composed = sampleSettings(), decomposed = sampleSettings()
        composed.labels = ["caf\u{E9}", "tea"]
        decomposed.labels = ["cafe\u{301}", "tea"]
        #expect(composed.labels == decomposed.labels)
        #expect(composed.differences(from: decomposed)
            == ["labels: [\"café\", \"tea\"] requested, [\"café\", \"tea\"] in the cache (the same text in another Unicode normalization)"])
        #expect(composed.differences(from: composed).isEmpty)
    }

    /// Caches from before the compute path was recorded were all f32: they resume with f32 and
    /// refuse bf16, and a new f32 cache records "f32".
    @Test func aCacheWithoutAComputePathReadsAsF32() throws {
        var old = sampleSettings()
        old.compute = nil
        let decoded = try JSONDecoder().decode(ExtractionSettings.self, from: try JSONEncoder().encode(old))
        #expect(decoded.compute == nil)
        var f32 = old, bf16 = old
        f32.compute = "f32"
        bf16.compute = "bf16"
        #expect(f32.differences(from: decoded).isEmpty)
        #expect(bf16.differences(from: decoded) == ["compute: bf16 requested, f32 in the cache"])
        #expect(decoded.differences(from: bf16) == ["compute: f32 requested, bf16 in the cache"])
    }

    @Test func streamNames() {
        #expect(Stream.attention.rawValue == 1 && Stream.mlp.rawValue == 2)
        #expect(Stream(name: "attn") == .attention && Stream(name: "mlp") == .mlp && Stream(name: "x") == nil)
    }

    /// The manifest has no checksum; settings no extraction writes are refused when the cache is
    /// opened: a layer listed twice had trapped `inspect`, and fit had trained an unloadable head.
    @Test func aManifestNoExtractionWritesIsRefused() throws {
        for (edit, fault) in [({ (s: inout ExtractionSettings) in s.layers = [2, 2] }, "layers [2, 2] (a layer listed twice)"),
                              ({ $0.layers = [2, 0] }, "layers [2, 0] (not in ascending order)"),
                              ({ $0.maxTokens = 1_000_000_000 }, "maxTokens 1000000000 (expected 1 to 1048576)")] as [((inout ExtractionSettings) -> Void, String)] {
            let path = temporaryFolder("damaged-manifest")
            defer { removeFolder(path) }
            var settings = sampleSettings()
            edit(&settings)
            _ = try ActivationCache.openForWriting(path: path, settings: settings)
            #expect(throws: CacheError("\(path): the manifest records \(fault), which no extraction writes; the cache is damaged")) {
                try ActivationCache.open(path: path)
            }
        }
    }

    @Test func blobsRoundTripThroughACache() throws {
        let path = temporaryFolder("blob-cache")
        defer { removeFolder(path) }
        let weight = Tensor(shape: [2, 3], scalars: [1, -2, 3.5, 0, .leastNonzeroMagnitude, -7])
        let kept = Tensor(shape: [2], scalars: [0, 3])
        let created = BlobContent(name: "lst.r2", tensors: [("block.1.attention.query.weight", weight), ("embeddings.kept", kept)],
                                  metadata: ["reduction": "2", "layout": "post-ln"])
        do {
            let cache = try ActivationCache.openForWriting(path: path, settings: sampleSettings(blobs: ["lst.r2"]), blobs: [created])
            try cache.storeBlob("extra", tensors: [("w", kept)], metadata: [:])
        }
        let cache = try ActivationCache.open(path: path)
        #expect(cache.manifest.settings.blobs == ["lst.r2"])
        #expect(cache.manifest.settings.streams == ["attn", "mlp"] && cache.manifest.settings.maxTokens == 8)
        let blob = try #require(try cache.blob("lst.r2"))
        #expect(blob.tensors["block.1.attention.query.weight"] == weight)
        #expect(blob.tensors["embeddings.kept"] == kept)
        #expect(blob.metadata == ["reduction": "2", "layout": "post-ln"])
        #expect(try cache.blob("extra")?.tensors["w"] == kept)
        #expect(try cache.blob("absent") == nil)

        // Resuming with the same blob works; a blob that changed is refused.
        _ = try ActivationCache.openForWriting(path: path, settings: sampleSettings(blobs: ["lst.r2"]), blobs: [created])
        var changed = created
        changed.tensors[1].tensor = Tensor(shape: [2], scalars: [0, 2])
        #expect(throws: CacheError.self) {
            try ActivationCache.openForWriting(path: path, settings: sampleSettings(blobs: ["lst.r2"]), blobs: [changed])
        }
        // Other blob names are a settings difference, listed as such.
        do {
            _ = try ActivationCache.openForWriting(path: path, settings: sampleSettings(blobs: []), blobs: [])
            Issue.record("a cache with other blobs was reopened for writing")
        } catch {
            #expect("\(error)".contains("blobs: [] requested, [\"lst.r2\"] in the cache"), "\(error)")
        }

        // A flipped byte in a blob's tensor data (in every copy LMDB left in data.mdb) is caught
        // by the checksum stored with it: on reading, and by inspect --verify.
        let file = URL(fileURLWithPath: path + "/data.mdb")
        var data = try Data(contentsOf: file)
        let needle = weight.scalars.withUnsafeBytes { Data($0) }
        var flipped = 0, from = data.startIndex
        while let range = data.range(of: needle, in: from..<data.endIndex) {
            data[range.upperBound - 1] ^= 0x01
            from = range.upperBound
            flipped += 1
        }
        #expect(flipped >= 1)
        try data.write(to: file)
        let damaged = try ActivationCache.open(path: path)
        #expect(throws: CacheError("\(path): blob lst.r2 is damaged (its checksum does not match); remove the cache and extract it again (extract leaves a complete cache as it is)")) {
            try damaged.blob("lst.r2")
        }
        let report = try CacheReport.make(damaged, verify: true, digest: false)
        #expect(report.damaged == ["\(path): blob lst.r2 is damaged (its checksum does not match); remove the cache and extract it again (extract leaves a complete cache as it is)"])
    }

    /// A blob whose bytes match their checksum but are not safetensors (written so by a tool, or
    /// damaged before its checksum was taken) is named unreadable, with what its header lacks:
    /// it is parsed where it lies in the map, and a header that overruns the value is refused.
    @Test func aBlobThatIsNotSafetensorsIsNamedUnreadable() throws {
        let path = temporaryFolder("blob-unreadable")
        defer { removeFolder(path) }
        let created = BlobContent(name: "lst.r2", tensors: [("embeddings.kept", Tensor(shape: [2], scalars: [0, 3]))], metadata: [:])
        let cache = try ActivationCache.openForWriting(path: path, settings: sampleSettings(blobs: ["lst.r2"]), blobs: [created])
        // A header length of 1,000 bytes in a value of 12.
        let bytes: [UInt8] = [0xE8, 0x03, 0, 0, 0, 0, 0, 0] + Array("{}  ".utf8)
        let meta = try cache.environment.openDatabase("meta")
        try cache.environment.write { txn throws in
            try txn.put(Array("blob:lst.r2".utf8), bytes, in: meta)
            try txn.put(Array("blob-xxh64:lst.r2".utf8), Array(String(format: "%016llx", XXHash64.hash(bytes)).utf8), in: meta)
        }
        for read in [{ _ = try cache.blob("lst.r2") }, { _ = try cache.blobMetadata("lst.r2") }] {
            do {
                try read()
                Issue.record("an unreadable blob was read")
            } catch {
                #expect("\(error)".hasPrefix("\(path): blob lst.r2 is unreadable (") && "\(error)".contains("header"), "\(error)")
            }
        }
    }

    /// A blob without a checksum (caches from before blobs had one) is read, and a verification
    /// says it was not checked: it had said every blob's checksum matched.
    @Test func aVerificationNamesTheBlobsItCouldNotCheck() throws {
        let path = temporaryFolder("blob-unchecked")
        defer { removeFolder(path) }
        let created = BlobContent(name: "lst.r2", tensors: [("embeddings.kept", Tensor(shape: [2], scalars: [0, 3]))], metadata: [:])
        let cache = try ActivationCache.openForWriting(path: path, settings: sampleSettings(blobs: ["lst.r2"]), blobs: [created])
        #expect(try CacheReport.make(cache, verify: true, digest: false).uncheckedBlobs == [])
        let meta = try cache.environment.openDatabase("meta")
        try cache.environment.write { txn throws in #expect(try txn.delete(Array("blob-xxh64:lst.r2".utf8), in: meta)) }
        let report = try CacheReport.make(cache, verify: true, digest: false)
        #expect(report.damaged == [] && report.uncheckedBlobs == ["lst.r2"])
        #expect(try cache.blob("lst.r2")?.tensors["embeddings.kept"]?.scalars == [0, 3])
        // A NaN is damage whether or not a checksum covers it.
        try cache.storeBlob("lst.r2", tensors: [("embeddings.kept", Tensor(shape: [2], scalars: [.nan, 3]))], metadata: [:])
        #expect(try CacheReport.make(cache, verify: true, digest: false).damaged == ["\(path): blob lst.r2: embeddings.kept holds a NaN or an infinity"])
    }
}

