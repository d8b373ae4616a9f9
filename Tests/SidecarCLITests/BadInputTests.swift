// The bad-input table, from the command line: for each input kind (backbone safetensors,
// config.json and vocab; dataset JSONL/CSV lines and labels; images; caches; head folders; sweep
// files and results; flags) malformed, truncated, empty, huge and wrong-type input. Each must exit
// non-zero with an error naming the file (and line or key) and the fault, and leave no output that
// looks complete: no cache with every split complete, no result.json, no results line, no report.
// The library tests check each parser's errors in detail; this checks what the user sees.
import Encoders
import Foundation
import Testing

@Suite(.serialized) struct BadInputTests {
    /// What a failed command must not leave behind.
    enum Leftover {
        /// No cache at the path, or one that is not complete (and so resumes, and fit refuses it):
        /// images are decoded as they are extracted, so a bad one is found mid-run.
        case noCompleteCache(String)
        /// No file at the path.
        case noFile(String)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var kind: String
        var fault: String
        /// Given a fresh scratch folder, writes the bad input and returns the arguments and what
        /// must not be left behind.
        var setup: @Sendable (URL) throws -> (arguments: [String], leftover: Leftover)
        /// Fragments the error must contain; "$" stands for the scratch folder's path.
        var expected: [String]
        var testDescription: String { "\(kind): \(fault)" }
    }

    static let minilm: Result<URL, Error> = Result { try BackboneFolder.resolve("minilm") }
    static let tinyViT = repository.appendingPathComponent("Tests/EncodersTests/Fixtures/tiny_vit")
    static let noBlobs = ["--lst-reductions", "none", "--top-blocks", "0"]

    /// A backbone folder of links to MiniLM's files, with `file` replaced by `bytes`.
    static func backbone(in scratch: URL, replacing file: String, with bytes: Data) throws -> String {
        let folder = scratch.appendingPathComponent("backbone")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: try minilm.get().path) where name != file {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name), withDestinationURL: try minilm.get().appendingPathComponent(name))
        }
        try bytes.write(to: folder.appendingPathComponent(file))
        return folder.path
    }

    static func extractWithBackbone(_ file: String, _ bytes: @escaping @Sendable () throws -> Data) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let backbone = try backbone(in: scratch, replacing: file, with: try bytes())
            let out = scratch.appendingPathComponent("cache").path
            return (["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--backbone", backbone, "--out", out] + noBlobs,
                    .noFile(out))
        }
    }

    /// A safetensors file: the 8-byte little-endian header length, the header, the data.
    static func safetensors(headerLength: UInt64? = nil, header: String, data: Int = 0) -> Data {
        var bytes = Data()
        withUnsafeBytes(of: (headerLength ?? UInt64(header.utf8.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(Data(header.utf8))
        bytes.append(Data(count: data))
        return bytes
    }

    /// The tiny text dataset with `file` replaced by `text` (or left out when nil).
    static func extractWithDataset(_ file: String, _ text: @escaping @Sendable () throws -> Data) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let data = scratch.appendingPathComponent("data")
            try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            for split in ["train", "val", "test"] {
                try FileManager.default.copyItem(at: repository.appendingPathComponent("datasets/tiny/\(split).jsonl"),
                                                 to: data.appendingPathComponent("\(split).jsonl"))
            }
            // A CSV dataset has no JSONL splits beside it (a split in another format is refused).
            if file.hasSuffix(".csv") {
                for split in ["train", "val", "test"] { try FileManager.default.removeItem(at: data.appendingPathComponent("\(split).jsonl")) }
            }
            try text().write(to: data.appendingPathComponent(file))
            let out = scratch.appendingPathComponent("cache").path
            // Every line of every split is read (and every label checked) before a cache is made.
            return (["extract", "--dataset", data.path, "--out", out, "--layers", "6"] + noBlobs, .noFile(out))
        }
    }

    static func tinyLines() throws -> [String] {
        try String(contentsOf: repository.appendingPathComponent("datasets/tiny/train.jsonl"), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// An image folder of valid PNGs with one file replaced; extracted with the tiny ViT.
    static func extractImages(_ file: String, _ bytes: @escaping @Sendable () -> Data) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let data = scratch.appendingPathComponent("images")
            for split in ["train", "val"] {
                for (c, name) in ["dark", "light"].enumerated() {
                    let folder = data.appendingPathComponent("\(split)/\(name)")
                    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                    for i in 0..<3 {
                        let pixels = (0..<(18 * 20 * 3)).map { UInt8((c * 120 + $0 * 7 + i) % 256) }
                        try Data(encodePNG(pixels, height: 18, width: 20)).write(to: folder.appendingPathComponent("\(i).png"))
                    }
                }
            }
            try bytes().write(to: data.appendingPathComponent(file))
            let out = scratch.appendingPathComponent("cache").path
            return (["extract", "--dataset", data.path, "--backbone", tinyViT.path, "--out", out, "--dtype", "f32"] + noBlobs, .noCompleteCache(out))
        }
    }

    static let validPNG = Data(encodePNG([UInt8](repeating: 90, count: 18 * 20 * 3), height: 18, width: 20))

    /// IDX files (MNIST layout) with the images file replaced.
    static func extractIDX(_ bytes: @escaping @Sendable () -> Data) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let data = scratch.appendingPathComponent("idx")
            try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            try bytes().write(to: data.appendingPathComponent("train-images-idx3-ubyte"))
            try Data([0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 0, 1]).write(to: data.appendingPathComponent("train-labels-idx1-ubyte"))
            let out = scratch.appendingPathComponent("cache").path
            return (["extract", "--dataset", data.path, "--backbone", tinyViT.path, "--out", out, "--dtype", "f32"] + noBlobs, .noFile(out))
        }
    }

    static func idxImages(count: UInt32, rows: UInt32, columns: UInt32, pixels: Int) -> Data {
        var bytes = Data([0, 0, 8, 3])
        for v in [count, rows, columns] { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
        return bytes + Data(repeating: 128, count: pixels)
    }

    /// A copy of the tiny cache with data.mdb changed, then fitted.
    static func fitOnDamagedCache(_ damage: @escaping @Sendable (inout Data) -> Void) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let cache = scratch.appendingPathComponent("cache")
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
            var data = try Data(contentsOf: URL(fileURLWithPath: try ReliabilityTests.tinyCache.get() + "/data.mdb"))
            damage(&data)
            try data.write(to: cache.appendingPathComponent("data.mdb"))
            let out = scratch.appendingPathComponent("head").path
            return (["fit", "--cache", cache.path, "--head", "linear", "--epochs", "1", "--out", out], .noFile(out + "/result.json"))
        }
    }

    /// A head folder fitted on the tiny cache with one file replaced, then evaluated.
    static func evalDamagedHead(_ file: String, remove: Bool = false, _ bytes: @escaping @Sendable (Data) -> Data) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let head = scratch.appendingPathComponent("head").path
            let cache = try ReliabilityTests.tinyCache.get()
            let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", head])
            guard fit.status == 0 else { throw CacheErrorForTest(fit.err) }
            let url = URL(fileURLWithPath: head + "/" + file)
            if remove {
                try FileManager.default.removeItem(at: url)
            } else {
                try bytes(try Data(contentsOf: url)).write(to: url)
            }
            let out = scratch.appendingPathComponent("eval.json").path
            return (["eval", "--cache", cache, "--head", head, "--json"], .noFile(out))
        }
    }

    static func sweep(_ spec: String) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let path = scratch.appendingPathComponent("sweep.toml")
            try Data(spec.utf8).write(to: path)
            let results = scratch.appendingPathComponent("results").path
            return (["sweep", "--spec", path.path, "--cache", try ReliabilityTests.tinyCache.get(), "--results", results],
                    .noFile(results + "/trials-0-of-1.jsonl"))
        }
    }

    static func report(_ text: String) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let results = scratch.appendingPathComponent("results")
            try FileManager.default.createDirectory(at: results, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: results.appendingPathComponent("trials-0-of-1.jsonl"))
            return (["report", "--results", results.path], .noFile(results.path + "/report.html"))
        }
    }

    static func resultsLine(_ id: String) -> String {
        """
        {"trial":"\(id)","status":"ok","head":"linear","hyperparameters":{},"training":{"epochs":1,"lr":0.001,"batch_size":8,"seed":0},\
        "metrics":{"val_accuracy":0.5},"trainable_parameters":10,"fraction_of_backbone":null,"fit_seconds":1,"peak_rss_bytes":1,\
        "host":"h","shard":"0/1","group":"g0","finished":"2026-11-29T10:00:00Z","history":[]}
        """
    }

    static func flags(_ arguments: [String]) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let out = scratch.appendingPathComponent("out").path
            let filled = arguments.map { $0 == "CACHE" ? (try? ReliabilityTests.tinyCache.get()) ?? "" : ($0 == "OUT" ? out : $0) }
            return (filled, .noFile(out))
        }
    }

    /// `tokenize` on a file whose second line is `line`.
    static func tokenizeLine(_ line: String) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let file = scratch.appendingPathComponent("in.jsonl")
            try Data(("{\"text\": \"fine\"}\n" + line + "\n").utf8).write(to: file)
            return (["tokenize", "--input", file.path], .noFile(scratch.appendingPathComponent("out").path))
        }
    }

    static let cases: [Case] = [
        // Backbone weights (safetensors).
        Case(kind: "safetensors", fault: "malformed", setup: extractWithBackbone("model.safetensors") { Data("garbage!garbage".utf8) },
             expected: ["$/backbone/model.safetensors: header length", "over the 100000000-byte limit"]),
        Case(kind: "safetensors", fault: "truncated", setup: extractWithBackbone("model.safetensors") {
                 try Data(contentsOf: try minilm.get().appendingPathComponent("model.safetensors")).prefix(1_000_000) },
             expected: ["$/backbone/model.safetensors: tensor \"", "run past the", "data buffer"]),
        Case(kind: "safetensors", fault: "empty", setup: extractWithBackbone("model.safetensors") { Data() },
             expected: ["$/backbone/model.safetensors: file is 0 bytes, shorter than the 8-byte header length"]),
        Case(kind: "safetensors", fault: "huge header length", setup: extractWithBackbone("model.safetensors") { safetensors(headerLength: 1 << 60, header: "{}") },
             expected: ["$/backbone/model.safetensors: header length 1152921504606846976 is over the 100000000-byte limit"]),
        Case(kind: "safetensors", fault: "wrong type", setup: extractWithBackbone("model.safetensors") {
                 safetensors(header: #"{"embeddings.word_embeddings.weight":{"dtype":"Q7","shape":[2,2],"data_offsets":[0,16]}}"#, data: 16) },
             expected: ["$/backbone/model.safetensors: tensor \"embeddings.word_embeddings.weight\": unknown dtype \"Q7\""]),
        // Backbone config.json.
        Case(kind: "config.json", fault: "truncated", setup: extractWithBackbone("config.json") { Data(#"{"hidden_size": "#.utf8) },
             expected: ["$/backbone/config.json: not valid JSON"]),
        Case(kind: "config.json", fault: "empty", setup: extractWithBackbone("config.json") { Data() },
             expected: ["$/backbone/config.json: not valid JSON"]),
        Case(kind: "config.json", fault: "wrong type", setup: extractWithBackbone("config.json") {
                 let text = try String(contentsOf: try minilm.get().appendingPathComponent("config.json"), encoding: .utf8)
                 return Data(text.replacingOccurrences(of: #""hidden_size": 384"#, with: #""hidden_size": "384""#).utf8) },
             expected: ["$/backbone/config.json: \"hidden_size\" has the wrong type"]),
        // Backbone vocabulary.
        Case(kind: "vocab", fault: "empty", setup: extractWithBackbone("vocab.txt") { Data() },
             expected: ["$/backbone/vocab.txt: the vocabulary is empty; expected one token per line"]),
        Case(kind: "vocab", fault: "malformed (not UTF-8)", setup: extractWithBackbone("vocab.txt") { Data([0x61, 0x0A, 0xFF, 0xFE, 0x0A]) },
             expected: ["$/backbone/vocab.txt:2: not valid UTF-8"]),
        // Dataset lines.
        Case(kind: "JSONL", fault: "malformed line", setup: extractWithDataset("train.jsonl") {
                 var lines = try tinyLines(); lines[1] = #"{"text": "a", "label": "#
                 return Data((lines.joined(separator: "\n") + "\n").utf8) },
             expected: ["$/data/train.jsonl:2: invalid JSON"]),
        Case(kind: "JSONL", fault: "truncated last line", setup: extractWithDataset("train.jsonl") {
                 let text = try tinyLines().joined(separator: "\n"); return Data(text.utf8.dropLast(20)) },
             expected: ["$/data/train.jsonl:40: invalid JSON"]),
        Case(kind: "JSONL", fault: "empty", setup: extractWithDataset("train.jsonl") { Data() },
             expected: ["$/data/train.jsonl: the split holds no examples"]),
        Case(kind: "JSONL", fault: "wrong type", setup: extractWithDataset("train.jsonl") {
                 var lines = try tinyLines(); lines[2] = #"{"text": "a dog", "label": true}"#
                 return Data((lines.joined(separator: "\n") + "\n").utf8) },
             expected: ["$/data/train.jsonl:3: \"label\" must be a non-empty string or an integer, found true"]),
        Case(kind: "JSONL", fault: "missing key", setup: extractWithDataset("train.jsonl") {
                 var lines = try tinyLines(); lines[3] = #"{"body": "a dog", "label": "animals"}"#
                 return Data((lines.joined(separator: "\n") + "\n").utf8) },
             expected: ["$/data/train.jsonl:4", "\"text\""]),
        Case(kind: "CSV", fault: "malformed (unclosed quote)", setup: extractWithDataset("train.csv") { Data("text,label\n\"unclosed,a\nfine,b\n".utf8) },
             expected: ["$/data/train.csv:2: malformed CSV: a quoted field opened here is never closed"]),
        Case(kind: "CSV", fault: "truncated row", setup: extractWithDataset("train.csv") { Data("text,label\nhello,animals\nworld\n".utf8) },
             expected: ["$/data/train.csv:3: 1 fields, but the header has 2"]),
        Case(kind: "labels", fault: "val label unknown to train", setup: extractWithDataset("val.jsonl") { Data(#"{"text": "a", "label": "martian"}"#.utf8 + [10]) },
             expected: ["$/data/val.jsonl:1: label \"martian\" does not occur in the train split"]),
        Case(kind: "labels", fault: "one label in train", setup: extractWithDataset("train.jsonl") {
                 Data((0..<12).map { #"{"text": "line \#($0)", "label": "animals"}"# + "\n" }.joined().utf8) },
             expected: ["$/data/train.jsonl: every example has the label \"animals\"; a classifier needs at least 2 labels"]),
        // Images.
        Case(kind: "PNG", fault: "truncated", setup: extractImages("val/light/1.png") { validPNG.prefix(60) },
             expected: ["$/images/val/light/1.png: cannot decode image: PNG"]),
        Case(kind: "JPEG", fault: "empty", setup: extractImages("train/dark/9.jpg") { Data() },
             expected: ["$/images/train/dark/9.jpg: cannot decode image: the file is empty"]),
        Case(kind: "JPEG", fault: "malformed", setup: extractImages("val/dark/9.jpg") { Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5]) },
             expected: ["$/images/val/dark/9.jpg: cannot decode image"]),
        Case(kind: "IDX", fault: "truncated", setup: extractIDX { idxImages(count: 4, rows: 8, columns: 8, pixels: 100) },
             expected: ["$/idx/train-images-idx3-ubyte: invalid IDX file"]),
        Case(kind: "IDX", fault: "huge dimensions", setup: extractIDX { idxImages(count: 1 << 30, rows: 1 << 20, columns: 255, pixels: 16) },
             expected: ["$/idx/train-images-idx3-ubyte: invalid IDX file", "describe more than"]),
        Case(kind: "IDX", fault: "a labels file missing", setup: { scratch in
                 let data = scratch.appendingPathComponent("idx")
                 try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
                 try idxImages(count: 4, rows: 8, columns: 8, pixels: 256).write(to: data.appendingPathComponent("train-images-idx3-ubyte"))
                 let out = scratch.appendingPathComponent("cache").path
                 return (["extract", "--dataset", data.path, "--backbone", tinyViT.path, "--out", out, "--dtype", "f32"] + noBlobs, .noFile(out)) },
             expected: ["$/idx/train-labels-idx1-ubyte[.gz]: cannot open: no such file, and the images file train-images-idx3-ubyte needs it"]),
        Case(kind: "images", fault: "no train folder", setup: { scratch in
                 let data = scratch.appendingPathComponent("images")
                 try FileManager.default.createDirectory(at: data.appendingPathComponent("val/dark"), withIntermediateDirectories: true)
                 try validPNG.write(to: data.appendingPathComponent("val/dark/0.png"))
                 let out = scratch.appendingPathComponent("cache").path
                 return (["extract", "--dataset", data.path, "--backbone", tinyViT.path, "--out", out, "--dtype", "f32"] + noBlobs, .noFile(out)) },
             expected: ["$/images: no train split (looked for train/ (a folder of class folders), train-images-idx3-ubyte[.gz]"]),
        // Caches.
        Case(kind: "cache", fault: "empty data file", setup: fitOnDamagedCache { $0 = Data() },
             expected: ["$/cache/data.mdb is truncated: it holds 0 bytes"]),
        Case(kind: "cache", fault: "malformed (meta pages overwritten)", setup: fitOnDamagedCache { $0.replaceSubrange(0..<8192, with: Data(repeating: 0xA5, count: 8192)) },
             expected: ["$/cache/data.mdb: meta page 0 does not hold LMDB's magic number; the environment is damaged"]),
        // The first meta page's last page number and transaction id flipped: LMDB trusts it as the
        // newer, and mapping what it counts had failed as "Cannot allocate memory".
        Case(kind: "cache", fault: "malformed (a meta page's counts flipped)", setup: fitOnDamagedCache { data in
                 for i in 100..<164 { data[i] ^= 0xFF } },
             expected: ["$/cache/data.mdb: the meta pages give transactions ", "which are not consecutive", "the environment is damaged"]),
        // A meta page's page size, transaction id or format version damaged: LMDB had read the
        // file by the wrong page size (SIGBUS), the checks had overflowed, or the message was LMDB's.
        Case(kind: "cache", fault: "malformed (a meta page's page size)", setup: fitOnDamagedCache { data in data[4096 + 42] ^= 0x01 },
             expected: ["$/cache/data.mdb: meta page 1 gives a page size of 69632 bytes (meta page 0: 4096)", "the environment is damaged"]),
        Case(kind: "cache", fault: "malformed (a meta page's transaction)", setup: fitOnDamagedCache { data in data[151] ^= 0x80 },
             expected: ["$/cache/data.mdb: the meta pages give transactions ", "which are not consecutive", "the environment is damaged"]),
        Case(kind: "cache", fault: "malformed (a meta page's format version)", setup: fitOnDamagedCache { data in data[20] ^= 0x01 },
             expected: ["$/cache/data.mdb: meta page 0 gives data format version 0, where LMDB 0.9 writes 1"]),
        // The flags of the main tree's root page (which the newer meta page names) flipped: LMDB
        // finds no database in it, which had read as "not an activation cache"; the tree's check
        // names the page when the cache opens.
        Case(kind: "cache", fault: "malformed (the main tree's root page)", setup: fitOnDamagedCache { data in
                 func word(_ offset: Int) -> Int { Int(data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }) }
                 let meta = word(144) >= word(4096 + 144) ? 0 : 4096
                 data[word(meta + 128) * 4096 + 10] ^= 0xFF },
             expected: ["$/cache/data.mdb: page ", " of the main database is damaged: flags 0x", "the environment is damaged, restore it from a copy"]),
        // A byte of a record's leaf node flipped (its flags): LMDB had followed it out of the page
        // and the process died with SIGSEGV.
        Case(kind: "cache", fault: "malformed (a node of a leaf page)", setup: fitOnDamagedCache { data in
                 data.withUnsafeMutableBytes { bytes in
                     // Every leaf page of records (5-byte keys: split, index), its first node's
                     // flags: pages of earlier transactions, free now, hold such keys too.
                     for page in 2..<(bytes.count / 4096) where bytes.loadUnaligned(fromByteOffset: page * 4096 + 10, as: UInt16.self) == 2 {
                         let node = page * 4096 + Int(bytes.loadUnaligned(fromByteOffset: page * 4096 + 16, as: UInt16.self))
                         if node + 8 <= bytes.count && bytes.loadUnaligned(fromByteOffset: node + 6, as: UInt16.self) == 5 { bytes[node + 4] ^= 0xFF }
                     }
                 } },
             expected: ["$/cache/data.mdb: page ", " of database \"records\" is damaged: node 0 has flags 0x", "the environment is damaged"]),
        Case(kind: "cache", fault: "not a cache", setup: { scratch in
                 let out = scratch.appendingPathComponent("head").path
                 return (["fit", "--cache", scratch.path, "--head", "linear", "--out", out], .noFile(out + "/result.json")) },
             expected: ["$: not an activation cache (no data.mdb)"]),
        // Opening a FIFO waits for a writer: fit, eval and inspect had hung there forever.
        Case(kind: "cache", fault: "data.mdb is a FIFO", setup: { scratch in
                 let cache = scratch.appendingPathComponent("cache")
                 try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
                 let fifo = cache.appendingPathComponent("data.mdb").path
                 guard mkfifo(fifo, 0o644) == 0 else { throw CacheErrorForTest("mkfifo \(fifo) failed") }
                 unblockReadersAfterAWhile(fifo)
                 let out = scratch.appendingPathComponent("head").path
                 return (["fit", "--cache", cache.path, "--head", "linear", "--out", out], .noFile(out + "/result.json")) },
             expected: ["$/cache/data.mdb is a FIFO, not a file"]),
        Case(kind: "cache", fault: "data.mdb is a folder", setup: { scratch in
                 let cache = scratch.appendingPathComponent("cache")
                 try FileManager.default.createDirectory(at: cache.appendingPathComponent("data.mdb"), withIntermediateDirectories: true)
                 return (["inspect", cache.path], .noFile(cache.appendingPathComponent("lock.mdb").path)) },
             expected: ["$/cache/data.mdb is a folder, not a file"]),
        Case(kind: "cache", fault: "a path that does not exist", setup: { scratch in
                 let out = scratch.appendingPathComponent("head").path
                 return (["fit", "--cache", scratch.appendingPathComponent("nothing").path, "--head", "linear", "--out", out], .noFile(out)) },
             expected: ["$/nothing: does not exist"]),
        // Head folders.
        Case(kind: "head", fault: "truncated head.safetensors", setup: evalDamagedHead("head.safetensors") { $0.prefix(100) },
             expected: ["$/head/head.safetensors: header length", "runs past the end of the 100-byte file"]),
        Case(kind: "head", fault: "truncated config.json", setup: evalDamagedHead("config.json") { $0.prefix(9) },
             expected: ["$/head/config.json: not a head config"]),
        // Foundation's decoder names no key for a number its field cannot hold.
        Case(kind: "head", fault: "config.json with a negative seed", setup: evalDamagedHead("config.json") { data in
                 Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: #""seed" : 0"#, with: #""seed" : -1"#).utf8) },
             expected: ["$/head/config.json: not a head config (the JSON is valid, but training.seed holds -1, out of range for that field"]),
        // fit writes result.json last: without it, the weights and config.json may be two fits'.
        Case(kind: "head", fault: "no result.json (a fit killed while writing)", setup: evalDamagedHead("result.json", remove: true) { $0 },
             expected: ["$/head: no result.json; the fit that wrote this folder did not finish"]),
        Case(kind: "head", fault: "config.json with a layer the backbone lacks", setup: evalDamagedHead("config.json") { data in
                 Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: #""layers" : "last""#, with: #""layers" : "99""#).utf8) },
             expected: ["$/head: --set layers=99 for head linear"]),
        // Without the cache's recorded settings nothing could be compared with the cache given.
        Case(kind: "head", fault: "config.json without the extraction settings", setup: evalDamagedHead("config.json") { data in
                 var config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
                 config["extraction"] = nil
                 return (try? JSONSerialization.data(withJSONObject: config)) ?? data },
             expected: ["$/head: the head records no extraction settings"]),
        // Sweep files.
        Case(kind: "sweep file", fault: "malformed TOML", setup: sweep("[base.training\nepochs = 2\n"),
             expected: ["$/sweep.toml:1:", "expected ']'"]),
        Case(kind: "sweep file", fault: "empty", setup: sweep(""),
             expected: ["$/sweep.toml: [base] head: no head"]),
        Case(kind: "sweep file", fault: "wrong type", setup: sweep("[base.training]\nepochs = \"two\"\n[[grid]]\nhead = \"linear\"\n"),
             expected: ["$/sweep.toml: [base.training] epochs: expected an integer in 1...1000000, got \"two\""]),
        Case(kind: "sweep file", fault: "unknown key", setup: sweep("[base.training]\nepoch = 3\n[[grid]]\nhead = \"linear\"\n"),
             expected: ["$/sweep.toml: [base.training] epoch: unknown training option"]),
        Case(kind: "sweep file", fault: "huge (10^8 random draws)", setup: sweep("[base]\nhead = \"linear\"\n[[random]]\ntrials = 100000000\n[random.training]\nlr = {log_uniform = [1e-4, 1e-2]}\n"),
             expected: ["$/sweep.toml: [[random]] 1 trials: 100000000 draws are more than the 100000 trials"]),
        Case(kind: "sweep file", fault: "huge (grid of 10^6)", setup: sweep("[[grid]]\nhead = \"linear\"\n[grid.training]\n" + ["lr", "seed", "batch_size", "epochs", "patience", "warmup"].enumerated().map { i, key in
                 "\(key) = [\((1...10).map { key == "lr" || key == "warmup" ? "0.0\($0)" : "\($0)" }.joined(separator: ", "))]" }.joined(separator: "\n") + "\n"),
             expected: ["$/sweep.toml: [[grid]] 1", "the grid expands to more than 100000 trials"]),
        // Sweep results.
        Case(kind: "results file", fault: "malformed line inside", setup: report(resultsLine("t0") + "\n" + resultsLine("t1").prefix(40) + "\n" + resultsLine("t2") + "\n"),
             expected: ["$/results/trials-0-of-1.jsonl:2: not a JSON object on one line", "only a torn last line is skipped"]),
        Case(kind: "results file", fault: "empty", setup: report(""),
             expected: ["$/results: 1 results file but no trials in them"]),
        Case(kind: "results file", fault: "wrong type", setup: report(resultsLine("t0").replacingOccurrences(of: #""status":"ok""#, with: #""status":7"#) + "\n"),
             expected: ["$/results/trials-0-of-1.jsonl:1:", "status"]),
        Case(kind: "results file", fault: "out of range", setup: report(resultsLine("t0").replacingOccurrences(of: #""val_accuracy":0.5"#, with: #""val_accuracy":1.5"#) + "\n"),
             expected: ["$/results/trials-0-of-1.jsonl:1: metrics: val_accuracy 1.5 is outside 0...1"]),
        Case(kind: "results file", fault: "a negative count", setup: report(resultsLine("t0").replacingOccurrences(of: #""peak_rss_bytes":1"#, with: #""peak_rss_bytes":-1"#) + "\n"),
             expected: ["$/results/trials-0-of-1.jsonl:1: peak_rss_bytes: -1 is negative"]),
        // Flags.
        Case(kind: "flags", fault: "wrong type", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--epochs", "abc", "--out", "OUT"]),
             expected: ["The value 'abc' is invalid for '--epochs <epochs>'"]),
        Case(kind: "flags", fault: "out of range", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--batch-size", "0", "--out", "OUT"]),
             expected: ["--batch-size must be in 1...1048576, got 0"]),
        Case(kind: "flags", fault: "past a sweep's bounds", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--batch-size", "100000000000", "--out", "OUT"]),
             expected: ["--batch-size must be in 1...1048576, got 100000000000"]),
        Case(kind: "flags", fault: "huge", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--batch-size", "99999999999999999999", "--out", "OUT"]),
             expected: ["The value '99999999999999999999' is invalid for '--batch-size <batch-size>'"]),
        Case(kind: "flags", fault: "unknown value", setup: flags(["extract", "--dataset", "/nonexistent", "--dtype", "f8", "--out", "OUT"]),
             expected: ["--dtype"]),
        Case(kind: "flags", fault: "layer out of range", setup: flags(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                                                                     "--layers", "9", "--out", "OUT"] + noBlobs),
             expected: ["--layers \"9\": the backbone has layers 0...6"]),
        Case(kind: "flags", fault: "zero", setup: flags(["sweep", "--spec", "/nonexistent.toml", "--cache", "CACHE", "--results", "OUT", "--jobs", "0"]),
             expected: ["--jobs must be in 1...1024, got 0"]),
        // A negative number is the flag's value, not a missing one (ArgumentParser's default reading
        // of "-1" as another flag had said "Missing value for '--lr <lr>'").
        Case(kind: "flags", fault: "negative learning rate", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--lr", "-1", "--out", "OUT"]),
             expected: ["--lr must be a positive number", "got -1.0"]),
        Case(kind: "flags", fault: "negative jobs", setup: flags(["sweep", "--spec", "/nonexistent.toml", "--cache", "CACHE", "--results", "OUT", "--jobs", "-2"]),
             expected: ["--jobs must be in 1...1024, got -2"]),
        Case(kind: "flags", fault: "negative seed", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--seed", "-1", "--out", "OUT"]),
             expected: ["The value '-1' is invalid for '--seed <seed>'"]),
        Case(kind: "flags", fault: "negative layer", setup: flags(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                                                                 "--layers", "-1", "--out", "OUT"] + noBlobs),
             expected: [#"--layers "-1": "-1" is not a layer or a range like 0-6"#]),
        Case(kind: "flags", fault: "negative shard", setup: flags(["sweep", "--spec", "/nonexistent.toml", "--cache", "CACHE", "--results", "OUT", "--shard", "-1/2"]),
             expected: [#"--shard -1/2: the index "-1" is not a non-negative integer"#]),
        Case(kind: "flags", fault: "negative batch tokens", setup: flags(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                                                                        "--batch-tokens", "-1", "--out", "OUT"] + noBlobs),
             expected: ["--batch-tokens must be at least 1, got -1"]),
        Case(kind: "flags", fault: "under a byte", setup: { scratch in
                 let (arguments, leftover) = try sweep("[base]\nhead = \"linear\"\n")(scratch)
                 return (arguments + ["--memory-budget", "0.5"], leftover)
             },
             expected: ["--memory-budget 0.5: expected a size from 1 byte"]),
        Case(kind: "flags", fault: "hexadecimal", setup: { scratch in
                 let (arguments, leftover) = try sweep("[base]\nhead = \"linear\"\n")(scratch)
                 return (arguments + ["--memory-budget", "0x10"], leftover)
             },
             expected: ["--memory-budget 0x10: expected a size from 1 byte"]),
        Case(kind: "flags", fault: "not a number", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--weight-decay", "nan", "--out", "OUT"]),
             expected: ["--weight-decay must be a finite number of at least 0, got nan"]),
        Case(kind: "flags", fault: "too many steps", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--epochs", "9223372036854775807", "--out", "OUT"]),
             expected: ["--epochs must be in 1...1000000, got 9223372036854775807"]),
        Case(kind: "flags", fault: "--out is a file", setup: { scratch in
                 let file = scratch.appendingPathComponent("taken").path
                 try Data("x".utf8).write(to: URL(fileURLWithPath: file))
                 return (["fit", "--cache", try ReliabilityTests.tinyCache.get(), "--head", "linear", "--out", file], .noFile(file + "/result.json"))
             },
             expected: ["--out $/taken: is a file, not a folder"]),
        Case(kind: "flags", fault: "--out is a file", setup: { scratch in
                 let file = scratch.appendingPathComponent("taken").path
                 try Data("x".utf8).write(to: URL(fileURLWithPath: file))
                 return (["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--out", file] + noBlobs, .noFile(file + "/data.mdb"))
             },
             expected: ["--out $/taken: is a file; a cache is a folder"]),
        // Checked before training, not when the head is written after it, and nothing is made.
        Case(kind: "flags", fault: "--out with a name too long", setup: { scratch in
                 let out = scratch.appendingPathComponent("made/" + String(repeating: "x", count: 300) + "/head").path
                 return (["fit", "--cache", try ReliabilityTests.tinyCache.get(), "--head", "linear", "--out", out], .noFile(scratch.path + "/made"))
             },
             expected: ["the name xxxxxxxxxxxxxxxxxxxxxxxx… is 300 bytes, more than the file system allows (255)"]),
        Case(kind: "flags", fault: "--out where no folder can be made", setup: flags(["fit", "--cache", "CACHE", "--head", "linear", "--out", "/proc/sidecar-head"]),
             expected: ["--out /proc/sidecar-head: cannot make a folder in /proc"]),
        Case(kind: "flags", fault: "--out is a cache", setup: { scratch in
                 let cache = scratch.appendingPathComponent("cache").path
                 try FileManager.default.copyItem(atPath: try ReliabilityTests.tinyCache.get(), toPath: cache)
                 return (["fit", "--cache", cache, "--head", "linear", "--out", cache], .noFile(cache + "/result.json"))
             },
             expected: ["--out $/cache: is an activation cache; give the head a folder of its own"]),
        Case(kind: "flags", fault: "--example with --verify", setup: flags(["inspect", "CACHE", "--example", "train:0", "--npy", "OUT", "--verify"]),
             expected: ["--example exports one example; run --verify or --json without it"]),
        Case(kind: "flags", fault: "--example past Int's range", setup: flags(["inspect", "CACHE", "--example", "train:99999999999999999999", "--npy", "OUT"]),
             expected: ["--example train:99999999999999999999: this cache holds train examples 0..<"]),
        Case(kind: "flags", fault: "--out under a file", setup: { scratch in
                 let file = scratch.appendingPathComponent("taken").path
                 try Data("x".utf8).write(to: URL(fileURLWithPath: file))
                 return (["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--out", file + "/cache"] + noBlobs,
                         .noFile(file + "/cache"))
             },
             expected: ["--out $/taken/cache: $/taken is a file, not a folder"]),
        Case(kind: "flags", fault: "huge chunk size", setup: flags(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                                                                  "--chunk-size", "9223372036854775807", "--out", "OUT"] + noBlobs),
             expected: ["--chunk-size 9223372036854775807 must be in 1...1000000"]),
        Case(kind: "flags", fault: "streams without a layer that has them", setup: flags(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                                                                                         "--layers", "0", "--streams", "attn", "--out", "OUT"] + noBlobs),
             expected: ["--streams attn with --layers 0: streams are stored for layers 1 and up only"]),
        Case(kind: "flags", fault: "zstd level out of range (images)", setup: { scratch in
                 let (arguments, leftover) = try extractImages("train/dark/0.png") { validPNG }(scratch)
                 return (arguments + ["--zstd-level", "0"], leftover)
             },
             expected: ["--zstd-level 0: zstd levels are 1...22"]),
        Case(kind: "flags", fault: "input is a folder", setup: flags(["tokenize", "--input", "/tmp"]), expected: ["--input /tmp: is a folder"]),
        // tokenize reads a JSON object line as predict reads JSONL (its source had been tokenized).
        Case(kind: "tokenize", fault: "text not a string", setup: tokenizeLine(#"{"text": 5}"#), expected: [#"$/in.jsonl:2: "text" is not a string"#]),
        Case(kind: "tokenize", fault: "no text key", setup: tokenizeLine(#"{"txt": "a"}"#), expected: [#"$/in.jsonl:2: no "text" key"#]),
        // An object whose value JSON does not allow is named by key (it had read "not a JSON object").
        Case(kind: "tokenize", fault: "a number out of range", setup: tokenizeLine(#"{"text": "a", "id": 1e400}"#),
             expected: [#"$/in.jsonl:2: "id" holds a value JSON does not allow"#, "a number out of range"]),
        Case(kind: "tokenize", fault: "a number out of range inside an object", setup: tokenizeLine(#"{"text": "a", "meta": {"x": [1, 1e400]}}"#),
             expected: [#"$/in.jsonl:2: "meta.x[1]" holds a value JSON does not allow"#]),
        // On the first line, which tells the format: it had been tokenized as a line of text.
        Case(kind: "tokenize", fault: "a number out of range on the first line", setup: { scratch in
                 let file = scratch.appendingPathComponent("first.txt")
                 try Data(#"{"text": "b", "z": 1e400}"#.utf8 + [10]).write(to: file)
                 return (["tokenize", "--input", file.path], .noFile(scratch.appendingPathComponent("out").path)) },
             expected: [#"$/first.txt:1: "z" holds a value JSON does not allow"#]),
        // A .jsonl file is JSON Lines whatever its first line: a broken first line had made every
        // line, the sound second one too, tokenized as text with exit status 0.
        Case(kind: "tokenize", fault: "a broken first line of a .jsonl file", setup: { scratch in
                 let file = scratch.appendingPathComponent("broken.jsonl")
                 try Data(#"{"text": "cats purr" "x"}"#.utf8 + [10] + #"{"text": "fine"}"#.utf8 + [10]).write(to: file)
                 return (["tokenize", "--input", file.path], .noFile(scratch.appendingPathComponent("out").path)) },
             expected: [#"$/broken.jsonl:1: not a JSON object"#]),
        Case(kind: "tokenize", fault: "text twice", setup: tokenizeLine(#"{"text": "a", "text": "b"}"#),
             expected: [#"$/in.jsonl:2: "text" appears twice in the object"#]),
        Case(kind: "tokenize", fault: "pair not a string", setup: tokenizeLine(#"{"text": "a", "text_pair": 5}"#),
             expected: [#"$/in.jsonl:2: "text_pair" is not a string"#]),
        Case(kind: "flags", fault: "merge into a file", setup: { scratch in
                 let file = scratch.appendingPathComponent("afile")
                 try Data("x".utf8).write(to: file)
                 return (["merge", "CACHE", "CACHE", "--out", file.path], .noFile(file.path + "/data.mdb"))
             },
             expected: ["--out $/afile: is a file, not a folder"]),
        Case(kind: "flags", fault: "merge into an empty path", setup: flags(["merge", "CACHE", "CACHE", "--out", ""]), expected: ["--out is empty; give a folder"]),
        // Heads files.
        Case(kind: "heads file", fault: "empty", setup: headsFile("[]"), expected: ["--heads-file $/heads.json: lists no heads"]),
        Case(kind: "heads file", fault: "unknown key", setup: headsFile(#"[{"head": "linear", "sets": {"layers": "all"}}]"#),
             expected: [#"--heads-file $/heads.json: entry 1 has an unknown key "sets""#]),
        Case(kind: "heads file", fault: "wrong type", setup: headsFile(#"[{"head": "linear", "set": 5}]"#),
             expected: [#"--heads-file $/heads.json: entry 1: "set" must be an object"#]),
        Case(kind: "heads file", fault: "malformed", setup: headsFile(#"[{"head": "linear""#), expected: ["--heads-file $/heads.json: not valid JSON"]),
        Case(kind: "heads file", fault: "an object, not a list", setup: headsFile(#"{"head": "mlp"}"#),
             expected: ["--heads-file $/heads.json: not a JSON array; expected a JSON array"]),
        Case(kind: "heads file", fault: "a number out of range, named by entry", setup: headsFile(#"[{"head": "linear"}, {"head": "mlp", "set": {"dropout": 1e999}}]"#),
             expected: [#"--heads-file $/heads.json: entry 2: "set.dropout" holds a value JSON does not allow"#]),
        Case(kind: "heads file", fault: "a bad value, named by entry", setup: headsFile(#"[{"head": "mlp"}, {"head": "mlp", "set": {"dropout": "nan"}}]"#),
             expected: ["--heads-file $/heads.json: entry 2: --set dropout=nan for head mlp"]),
        // Found against the cache (the tiny one stores layers 4-6), named by entry too.
        Case(kind: "heads file", fault: "a layer the cache lacks, named by entry", setup: headsFile(#"[{"head": "linear", "set": {"layers": "6"}}, {"head": "linear", "set": {"layers": "9"}}]"#),
             expected: ["--heads-file $/heads.json: entry 2: --set layers=9 for head linear: '9' is outside the backbone's layers 0-6"]),
        Case(kind: "heads file", fault: "an empty list", setup: headsFile(#"[{"head": "consolidator", "set": {"groups": []}}]"#),
             expected: [#"--heads-file $/heads.json: entry 1: "groups" is an empty list"#]),
        Case(kind: "heads file", fault: "a list for a single value", setup: headsFile(#"[{"head": "mlp", "set": {"hidden": [8]}}]"#),
             expected: [#"--heads-file $/heads.json: entry 1: "hidden" takes one value, not a list"#]),
        Case(kind: "heads file", fault: "a setting given twice", setup: headsFile(#"[{"head": "mlp", "set": {"dropout": 0.1, "dropout": 0.5}}]"#),
             expected: [#"--heads-file $/heads.json: the key "dropout" is given twice in one object"#]),
        Case(kind: "heads file", fault: "a head given twice, once escaped", setup: headsFile(#"[{"head": "mlp", "he\u0061d": "linear"}]"#),
             expected: [#"--heads-file $/heads.json: the key "head" is given twice in one object"#]),
    ]

    /// Opens `fifo` for writing, and closes it, whenever a reader waits on it in the next 30 s: a
    /// regression that opened it again would then fail this test instead of hanging the suite.
    static func unblockReadersAfterAWhile(_ fifo: String) {
        Thread.detachNewThread {
            for _ in 0..<30 {
                Thread.sleep(forTimeInterval: 1)
                let fd = open(fifo, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
        }
    }

    static func headsFile(_ text: String) -> @Sendable (URL) throws -> ([String], Leftover) {
        { scratch in
            let path = scratch.appendingPathComponent("heads.json")
            try Data(text.utf8).write(to: path)
            let out = scratch.appendingPathComponent("out").path
            return (["fit", "--cache", try ReliabilityTests.tinyCache.get(), "--heads-file", path.path, "--epochs", "1", "--out", out],
                    .noFile(out + "/result.json"))
        }
    }

    @Test(arguments: cases)
    func badInputIsRefusedNamingTheFileAndTheFault(_ c: Case) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bad-input-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (arguments, leftover) = try c.setup(scratch)
        let result = try runSidecar(arguments)
        #expect(result.status != 0, "accepted; stdout: \(result.out.suffix(300))")
        #expect(!result.err.contains("Fatal error") && !result.err.contains("Stack dump"), "crashed: \(result.err.suffix(600))")
        for fragment in c.expected {
            let wanted = fragment.replacingOccurrences(of: "$", with: scratch.path)
            #expect(result.err.contains(wanted), "no \"\(wanted)\" in:\n\(result.err.suffix(800))")
        }
        switch leftover {
        case .noFile(let path):
            #expect(!FileManager.default.fileExists(atPath: path), "\(path) was written")
        case .noCompleteCache(let path):
            if FileManager.default.fileExists(atPath: path + "/data.mdb") {
                let inspected = try runSidecar(["inspect", path, "--json"])
                if inspected.status == 0 {
                    let report = try JSONSerialization.jsonObject(with: Data(inspected.out.utf8)) as! [String: Any]
                    let splits = report["splits"] as! [[String: Any]]
                    #expect(!splits.allSatisfy { $0["complete"] as? Bool == true }, "a failed extraction left a complete cache")
                }
            }
        }
        print("bad input | \(c.kind) | \(c.fault) | \(result.err.split(separator: "\n").first { $0.hasPrefix("Error:") } ?? "")")
    }
}

struct CacheErrorForTest: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
