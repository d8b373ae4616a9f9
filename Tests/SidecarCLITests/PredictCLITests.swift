// `eval`, `predict` and `export` as a user runs them, with the real MiniLM: for every head type,
// predict on raw text gives the logits eval gives on an f32 cache of the same text; an exported
// head (the consolidator merged) gives the logits of its folder; on an int8 cache of a real
// dataset, predict and eval agree on the labels of the test split.
import CPNG
import Encoders
import Foundation
import OneDNN
import Testing

@Suite(.serialized) struct PredictCLITests {
    static let heads = ["linear", "mlp", "losa", "lst", "unipt", "e3va", "consolidator"]

    /// An f32 cache of datasets/tiny with every stream and blob.
    static let cache: Result<String, Error> = Result {
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("predict-cli-\(UUID().uuidString)")
        // temp also holds the heads `fit(_:)` puts beside the cache.
        removeAtExit(temp.path)
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
        let cache = temp.appendingPathComponent("cache").path
        let result = try runSidecar(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--out", cache,
                                     "--dtype", "f32", "--streams", "attn,mlp", "--lst-reductions", "8", "--top-blocks", "1"])
        guard result.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: ["extract": result.err]) }
        return cache
    }

    static var testSplit: String { repository.appendingPathComponent("datasets/tiny/test.jsonl").path }

    /// Trains `head` for one epoch into a folder next to the cache.
    static func fit(_ head: String) throws -> String {
        let cache = try Self.cache.get()
        let out = cache + "-" + head
        if FileManager.default.fileExists(atPath: out + "/result.json") { return out }
        let settings = head == "consolidator" ? ["--set", "groups=96"] : []
        let result = try runSidecar(["fit", "--cache", cache, "--head", head] + settings + ["--epochs", "1", "--batch-size", "8", "--out", out])
        guard result.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: ["fit": result.err]) }
        return out
    }

    /// `eval --json --logits`: the logits of every test example, in file order.
    static func evalLogits(_ head: String, cache: String) throws -> [[Double]] {
        let result = try runSidecar(["eval", "--cache", cache, "--head", head, "--json", "--logits"])
        guard result.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: ["eval": result.err]) }
        let json = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as! [String: Any]
        return json["logits"] as! [[Double]]
    }

    /// `predict --json --logits` on a JSONL file: each line's output object.
    static func predict(_ head: String, input: String, extra: [String] = []) throws -> [[String: Any]] {
        let result = try runSidecar(["predict", "--head", head, "--input", input, "--json", "--logits"] + extra)
        guard result.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: ["predict": result.err]) }
        return try result.out.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    static func maxDifference(_ a: [[Double]], _ b: [[Double]]) -> Double {
        zip(a, b).flatMap { zip($0, $1).map { abs($0 - $1) } }.max() ?? .infinity
    }

    @Test(arguments: heads)
    func predictOnRawTextEqualsEvalOnTheF32Cache(_ head: String) throws {
        let folder = try Self.fit(head)
        let cached = try Self.evalLogits(folder, cache: try Self.cache.get())
        let lines = try Self.predict(folder, input: Self.testSplit, extra: ["--batch-size", "3"])
        #expect(lines.count == 10 && cached.count == 10)
        #expect(lines.map { $0["line"] as? Int } == Array(1...10))
        let raw = lines.map { $0["logits"] as! [Double] }
        let difference = Self.maxDifference(raw, cached)
        #expect(difference <= 1e-4, "\(head): predict and eval differ by \(difference)")
        // The reported label is the arg-max of the logits.
        let labels = ["animals", "food", "weather"]
        for (line, logits) in zip(lines, raw) {
            #expect(line["label"] as? String == labels[logits.firstIndex(of: logits.max()!)!])
        }
    }

    @Test(arguments: heads)
    func exportedHeadGivesTheFolderLogits(_ head: String) throws {
        let folder = try Self.fit(head)
        let file = folder + ".safetensors"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let export = try runSidecar(["export", "--head", folder, "--out", file])
        #expect(export.status == 0, "\(export.err)")
        let cache = try Self.cache.get()
        let difference = Self.maxDifference(try Self.evalLogits(file, cache: cache), try Self.evalLogits(folder, cache: cache))
        // Where the cache was computed in bf16 the consolidator's frozen products run in bf16, and
        // bf16(W + branches) is not bf16(W) plus the branches: the two agree to bf16's rounding.
        let tolerance = head == "consolidator" && OneDNN.hasBF16Instructions ? 1e-3 : 1e-4
        #expect(difference <= tolerance, "\(head): exported logits differ by \(difference)")
        if head == "consolidator" {
            // Consolidated: no branch survives in the file.
            let header = try Data(contentsOf: URL(fileURLWithPath: file)).prefix(200_000)
            #expect(!String(decoding: header, as: UTF8.self).contains(".branch."))
        }
        // The export and its folder are one head, whatever tensors the export holds.
        let twice = try runSidecar(["eval", "--cache", cache, "--head", folder, "--head", file])
        #expect(twice.status == 1 && twice.err.contains("\(file) holds the same head as \(folder) (\(head), the same settings"), "\(twice.err)")
        if head == "consolidator" {
            // So is the export of a fit that spelled out its default learning rate and held the
            // features in memory, which change no weight.
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as! [String: Any]
            let again = folder + "-again"
            defer { try? FileManager.default.removeItem(atPath: again) }
            let fit = try runSidecar(["fit", "--cache", cache, "--head", head, "--set", "groups=96", "--epochs", "1", "--batch-size", "8",
                                      "--lr", "\(config["lr"] as! Double)", "--in-memory", "--out", again])
            #expect(fit.status == 0, "\(fit.err)")
            #expect(FileManager.default.contents(atPath: again + "/head.safetensors") == FileManager.default.contents(atPath: folder + "/head.safetensors"))
            let same = try runSidecar(["eval", "--cache", cache, "--head", again, "--head", file])
            #expect(same.status == 1 && same.err.contains("the same settings, training and cache, one of them exported: one fit"), "\(same.err)")
        }
    }

    /// Several --head flags predict with their ensemble, as eval scores it on the f32 cache: the
    /// same logits, and each input's probability the mean of the heads' alone.
    @Test func anEnsemblePredictsAsEvalScoresIt() throws {
        let folders = try ["lst", "e3va", "linear"].map { try Self.fit($0) }
        let cache = try Self.cache.get()
        let eval = try runSidecar(["eval", "--cache", cache] + folders.flatMap { ["--head", $0] } + ["--json", "--logits"])
        #expect(eval.status == 0, "\(eval.err)")
        let cached = try #require((try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as? [String: Any])?["logits"] as? [[Double]])
        let lines = try Self.predict(folders[0], input: Self.testSplit, extra: ["--head", folders[1], "--head", folders[2], "--batch-size", "4"])
        let raw = lines.map { $0["logits"] as! [Double] }
        #expect(lines.count == 10 && cached.count == 10)
        let difference = Self.maxDifference(raw, cached)
        #expect(difference <= 1e-4, "the ensemble's predict and eval differ by \(difference)")
        let alone = try folders.map { try Self.predict($0, input: Self.testSplit).map { $0["logits"] as! [Double] } }
        let labels = ["animals", "food", "weather"]
        for (i, line) in lines.enumerated() {
            let mean = labels.indices.map { c in
                alone.reduce(0.0) { sum, head in let e = head[i].map { exp($0 - head[i].max()!) }; return sum + e[c] / e.reduce(0, +) } / 3
            }
            let top = mean.firstIndex(of: mean.max()!)!
            #expect(line["label"] as? String == labels[top])
            #expect(abs((line["probability"] as? Double ?? 0) - mean[top]) < 1e-5)
        }

        // A head trained with another pair column would be read by the first head's columns.
        let paired = cache + "-paired"
        defer { try? FileManager.default.removeItem(atPath: paired); try? FileManager.default.removeItem(atPath: paired + "-linear") }
        let extract = try runSidecar(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--out", paired,
                                      "--dtype", "f32", "--text-pair-column", "second", "--lst-reductions", "none", "--top-blocks", "0"])
        #expect(extract.status == 0, "\(extract.err)")
        let fit = try runSidecar(["fit", "--cache", paired, "--head", "linear", "--epochs", "1", "--out", paired + "-linear"])
        #expect(fit.status == 0, "\(fit.err)")
        let refused = try runSidecar(["predict", "--head", folders[2], "--head", paired + "-linear", "--input", Self.testSplit])
        #expect(refused.status == 1 && refused.err.contains(
            "\(paired)-linear was trained with text_pair_column \"second\", \(folders[2]) with \"text_pair\"; the heads of one prediction read the same inputs"),
            "\(refused.err)")
        // A copied head folder is the same head twice.
        let copy = try Self.linearCopy("ensemble-copy")
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let twice = try runSidecar(["predict", "--head", folders[2], "--head", copy, "--input", Self.testSplit])
        #expect(twice.status == 1 && twice.err.contains("\(copy) holds the same head as \(folders[2]) (linear, the same settings and weights)"),
                "\(twice.err)")
    }

    /// A copy of the fitted linear head, in a folder of its own named `name` beside the cache.
    static func linearCopy(_ name: String) throws -> String {
        let copy = try Self.cache.get() + "-" + name
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: try Self.fit("linear"), toPath: copy)
        return copy
    }

    /// No output flag writes over what fit or a sweep wrote: another head folder's files (export
    /// and inspect --npy had replaced them, leaving a head that no longer loads) or a results file.
    @Test func outputFilesKeepOffOtherHeadsAndSweepResults() throws {
        let source = try Self.linearCopy("export-source"), other = try Self.linearCopy("export-other")
        let results = other + "-results"
        try? FileManager.default.removeItem(atPath: results)
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        defer { for folder in [source, other, results] { try? FileManager.default.removeItem(atPath: folder) } }
        let lines = results + "/trials-0-of-1.jsonl"
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: lines))
        let before = try ["head.safetensors", "config.json"].map { try Data(contentsOf: URL(fileURLWithPath: other + "/" + $0)) }
        for (arguments, message) in [
            (["export", "--head", source, "--out", other + "/head.safetensors"], "would replace the head folder's own head.safetensors"),
            (["export", "--head", source, "--out", lines], "would replace what the sweep wrote in \(results)"),
            (["export", "--head", source, "--out", results + "/new.jsonl"], "would replace what the sweep wrote in \(results)"),
            (["inspect", try Self.cache.get(), "--example", "train:0", "--npy", other + "/config.json"],
             "--npy \(other)/config.json would replace the head folder's own config.json"),
        ] {
            let refused = try runSidecar(arguments)
            #expect(refused.status == 1 && refused.err.contains(message), "\(arguments): \(refused.err)")
        }
        #expect(try ["head.safetensors", "config.json"].map { try Data(contentsOf: URL(fileURLWithPath: other + "/" + $0)) } == before)
        // A head folder that lost its weights and result keeps its config and log all the same.
        for file in ["head.safetensors", "result.json"] { try FileManager.default.removeItem(atPath: other + "/" + file) }
        let stripped = try runSidecar(["export", "--head", source, "--out", other + "/config.json"])
        #expect(stripped.status == 1 && stripped.err.contains("would replace the head folder's own config.json"), "\(stripped.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: other + "/config.json")) == before[1])
        #expect(try String(contentsOfFile: lines, encoding: .utf8) == "{}\n" && !FileManager.default.fileExists(atPath: results + "/new.jsonl"))
        // Beside a head, a file of another name is written.
        let beside = other + "/exported.safetensors"
        let export = try runSidecar(["export", "--head", source, "--out", beside])
        #expect(export.status == 0 && FileManager.default.fileExists(atPath: beside), "\(export.err)")
    }

    /// A head folder reached through a link still keeps its own files from export's --out.
    @Test func exportThroughALinkedHeadFolderKeepsItsFiles() throws {
        let copy = try Self.linearCopy("linked-linear"), link = copy + "-link"
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: copy)
        let weights = copy + "/head.safetensors"
        let before = try Data(contentsOf: URL(fileURLWithPath: weights))
        for own in ["head.safetensors", "config.json"] {
            let export = try runSidecar(["export", "--head", link, "--out", link + "/" + own])
            #expect(export.status != 0 && export.err.contains("would replace the head folder's own \(own)"), "\(export.err)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: weights)) == before)
    }

    /// Nor may export write into the cache's folder, where it could replace data.mdb.
    @Test func exportLeavesTheCacheAlone() throws {
        let cache = try Self.cache.get(), data = cache + "/data.mdb"
        let before = try FileManager.default.attributesOfItem(atPath: data)[.size] as? Int
        let export = try runSidecar(["export", "--head", try Self.fit("linear"), "--out", data])
        #expect(export.status != 0 && export.err.contains("\(cache) is an activation cache (it holds data.mdb)"), "\(export.err)")
        #expect(try FileManager.default.attributesOfItem(atPath: data)[.size] as? Int == before)
    }

    /// A link to a file not made yet is written through, as a link to an existing file is; a loop
    /// of links is refused as one.
    @Test func exportWritesThroughALinkToANewFile() throws {
        let folder = URL(fileURLWithPath: try Self.cache.get()).deletingLastPathComponent().appendingPathComponent("links-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let link = folder.appendingPathComponent("link").path, target = folder.appendingPathComponent("sub/new.safetensors").path
        try FileManager.default.createDirectory(atPath: folder.appendingPathComponent("sub").path, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "sub/new.safetensors")
        let export = try runSidecar(["export", "--head", try Self.fit("linear"), "--out", link])
        #expect(export.status == 0, "\(export.err)")
        #expect(FileManager.default.fileExists(atPath: target))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == "sub/new.safetensors", "the link was replaced")
        let (a, b) = (folder.appendingPathComponent("a").path, folder.appendingPathComponent("b").path)
        try FileManager.default.createSymbolicLink(atPath: a, withDestinationPath: b)
        try FileManager.default.createSymbolicLink(atPath: b, withDestinationPath: a)
        let loop = try runSidecar(["export", "--head", try Self.fit("linear"), "--out", a])
        #expect(loop.status != 0 && loop.err.contains("is a symbolic link that leads to no file"), "\(loop.err)")
    }

    /// Plain predict output stays one line per input, whatever the texts hold.
    @Test func plainPredictOutputIsOneLinePerInput() throws {
        let texts = URL(fileURLWithPath: try Self.cache.get()).deletingLastPathComponent().appendingPathComponent("control.jsonl")
        try Data(#"""
            {"text": "rain\ntomorrow"}
            {"text": "bread\rand jam"}
            {"text": "a \u001b[31mred\u0007 cat"}

            """#.utf8).write(to: texts)
        let plain = try runSidecar(["predict", "--head", try Self.fit("linear"), "--input", texts.path])
        #expect(plain.status == 0, "\(plain.err)")
        #expect(plain.out.split(separator: "\n", omittingEmptySubsequences: false).count == 4, "\(plain.out)")
        #expect(!plain.out.unicodeScalars.contains { $0 == "\r" || $0 == "\u{1B}" || $0 == "\u{07}" }, "\(plain.out)")
    }

    /// Output that does not reach standard output fails the command, and a closed standard output
    /// is not taken for the next file opened; a full standard error is no reason to stop.
    @Test func standardStreamsThatFailAreHandled() throws {
        let head = try Self.fit("linear"), cache = try Self.cache.get()
        func shell(_ redirections: String, _ arguments: [String]) throws -> (status: Int32, err: String) {
            let process = Process(), err = Pipe()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\"$0\" \"$@\" " + redirections, sidecarBinary().path] + arguments
            process.standardError = err
            try process.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }
        for arguments in [["predict", "--head", head, "--input", Self.testSplit], ["eval", "--cache", cache, "--head", head],
                          ["inspect", cache]] {
            let full = try shell(">/dev/full", arguments)
            #expect(full.status == 1, "\(arguments[0]) into /dev/full: \(full.err)")
            #expect(full.err.contains("could not write to standard output (No space left on device)"), "\(full.err)")
        }
        // Help and the version too, which ArgumentParser writes and exits on by itself.
        for arguments in [["--help"], ["--version"], ["fit", "--help"], ["help", "sweep"]] {
            let full = try shell(">/dev/full", arguments)
            #expect(full.status == 1, "\(arguments) into /dev/full: \(full.err)")
            #expect(full.err.contains("could not write to standard output (No space left on device)"), "\(full.err)")
            let shown = try runSidecar(arguments)
            #expect(shown.status == 0 && shown.out.contains(arguments == ["--version"] ? "0.1.0" : "USAGE:"), "\(arguments): \(shown.err)")
        }
        let closed = try shell(">&-", ["predict", "--head", head, "--input", Self.testSplit])
        #expect(closed.status == 0, "\(closed.err)")
        let quiet = try shell("2>/dev/full >/dev/null", ["fit", "--cache", cache, "--head", "linear", "--epochs", "1",
                                                         "--out", cache + "-stderr-full"])
        #expect(quiet.status == 0)
    }

    /// A head whose weights hold a NaN is refused, naming the file and tensor.
    @Test func aHeadWithANaNWeightIsRefused() throws {
        let copy = try Self.linearCopy("nan-linear")
        let weights = URL(fileURLWithPath: copy + "/head.safetensors")
        // Every weight a NaN (all bits set), after the file's header.
        var damaged = try Data(contentsOf: weights)
        let headerEnd = 8 + Int(damaged.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        damaged.replaceSubrange(headerEnd..<damaged.count, with: [UInt8](repeating: 0xFF, count: damaged.count - headerEnd))
        try damaged.write(to: weights)
        let nan = try runSidecar(["predict", "--head", copy, "--input", Self.testSplit, "--json"])
        #expect(nan.status != 0 && nan.err.contains("head.safetensors: tensor") && nan.err.contains("holds a NaN at element 0"), "\(nan.err)")
    }

    /// Weights that are finite but overflow (every one 3e38) give logits that are not: predict had
    /// printed "-nan" and eval scored every example as class 0, each with exit status 0.
    @Test func aHeadWhoseLogitsOverflowIsRefused() throws {
        let copy = try Self.linearCopy("overflow-linear")
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let weights = URL(fileURLWithPath: copy + "/head.safetensors")
        var damaged = try Data(contentsOf: weights)
        let headerEnd = 8 + Int(damaged.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let huge = withUnsafeBytes(of: Float(3e38).bitPattern.littleEndian) { Array($0) }
        damaged.replaceSubrange(headerEnd..<damaged.count, with: (0..<(damaged.count - headerEnd) / 4).flatMap { _ in huge })
        try damaged.write(to: weights)
        let predicted = try runSidecar(["predict", "--head", copy, "--input", Self.testSplit])
        #expect(predicted.status == 1 && predicted.err.contains("--input \(Self.testSplit), line 1: the logits are not finite")
                && !predicted.out.contains("nan"), "\(predicted.out)\(predicted.err)")
        let scored = try runSidecar(["eval", "--cache", try Self.cache.get(), "--head", copy])
        #expect(scored.status == 1 && scored.err.contains("\(copy): 10 of the 10 examples of test get logits that are not finite"),
                "\(scored.out)\(scored.err)")
    }

    @Test func exportFindsTheTrainingCacheFromAnotherFolder() throws {
        // Fitted with a relative --cache: the head records where the cache is, wherever it runs next.
        let cache = URL(fileURLWithPath: try Self.cache.get())
        let head = cache.path + "-relative-consolidator"
        let fit = try runSidecar(["fit", "--cache", cache.lastPathComponent, "--head", "consolidator", "--set", "groups=96", "--epochs", "1",
                                  "--batch-size", "8", "--out", head], directory: cache.deletingLastPathComponent().path)
        #expect(fit.status == 0, "\(fit.err)")
        let file = head + ".safetensors"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let export = try runSidecar(["export", "--head", head, "--out", file], directory: "/")
        #expect(export.status == 0, "\(export.err)")
        // With the cache gone, the message says so and no more.
        let configURL = URL(fileURLWithPath: head + "/config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["cache"] = "/nonexistent/cache"
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let gone = try runSidecar(["export", "--head", head, "--out", file])
        #expect(gone.status != 0 && gone.err.contains("head consolidator reads weights from its training cache, which cannot be opened (/nonexistent/cache"),
                "\(gone.err)")
        #expect(!gone.err.contains("lacks"), "\(gone.err)")
        // A head that reads nothing from its cache and cannot be built (a layer its cache settings
        // lack): its own fault is said, not the cache's.
        let linear = cache.path + "-linear-damaged"
        try? FileManager.default.removeItem(atPath: linear)
        try FileManager.default.copyItem(atPath: try Self.fit("linear"), toPath: linear)
        var linearConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: linear + "/config.json"))) as! [String: Any]
        linearConfig["cache"] = "/nonexistent/cache"
        linearConfig["hyperparameters"] = ["values": ["dropout": 0, "layers": "9", "pool": "auto"]]
        try JSONSerialization.data(withJSONObject: linearConfig).write(to: URL(fileURLWithPath: linear + "/config.json"))
        let damaged = try runSidecar(["export", "--head", linear, "--out", file])
        #expect(damaged.status != 0 && damaged.err.contains("9") && !damaged.err.contains("reads weights from"), "\(damaged.err)")
    }

    /// A copy of the MiniLM folder whose JSON file `name` has `changes` merged in.
    static func minilmCopy(editing name: String, _ changes: [String: Any]) throws -> URL {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("minilm-edited-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: try BackboneFolder.resolve("minilm"), to: copy)
        let file = copy.appendingPathComponent(name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as! [String: Any]
        try JSONSerialization.data(withJSONObject: json.merging(changes) { $1 }).write(to: file)
        return copy
    }

    /// The built-in MiniLM given by its folder's path is the same backbone as `minilm`, though such
    /// a cache records the folder's name ("model"): eval had refused a head of the one on a cache
    /// of the other as "another backbone", and predict had asked for --backbone.
    @Test func theBuiltInBackboneByItsPathIsTheSameBackbone() throws {
        let byPath = try Self.cache.get() + "-by-path", head = try Self.cache.get() + "-by-path-linear"
        defer { for path in [byPath, head] { try? FileManager.default.removeItem(atPath: path) } }
        let extracted = try runSidecar(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path,
                                        "--backbone", try BackboneFolder.resolve("minilm").path, "--out", byPath, "--dtype", "f32"])
        #expect(extracted.status == 0, "\(extracted.err)")
        let scored = try runSidecar(["eval", "--cache", byPath, "--head", try Self.fit("linear")])
        #expect(scored.status == 0, "\(scored.err)")
        let fitted = try runSidecar(["fit", "--cache", byPath, "--head", "linear", "--epochs", "1", "--out", head])
        #expect(fitted.status == 0, "\(fitted.err)")
        let predicted = try runSidecar(["predict", "--head", head, "--input", Self.testSplit])
        #expect(predicted.status == 0 && predicted.out.split(separator: "\n").count == 10, "\(predicted.err)")
    }

    @Test func anotherBackboneIsRefusedUnlessForced() throws {
        let folder = try Self.fit("linear")
        // The same weights under a config.json that differs by one key: another backbone identity.
        let copy = try Self.minilmCopy(editing: "config.json", ["edited_by_test": true])
        defer { try? FileManager.default.removeItem(at: copy) }

        let refused = try runSidecar(["predict", "--head", folder, "--backbone", copy.path, "--input", Self.testSplit])
        #expect(refused.status != 0)
        #expect(refused.err.contains("not the one the head was trained on") && refused.err.contains("--force"), "\(refused.err)")
        #expect(refused.out.isEmpty)
        let forced = try Self.predict(folder, input: Self.testSplit, extra: ["--backbone", copy.path, "--force"])
        let normal = try Self.predict(folder, input: Self.testSplit)
        #expect(Self.maxDifference(forced.map { $0["logits"] as! [Double] }, normal.map { $0["logits"] as! [Double] }) <= 1e-6)
        // export has no --force, and its advice does not offer one.
        let export = try runSidecar(["export", "--head", try Self.fit("consolidator"), "--backbone", copy.path,
                                     "--out", copy.appendingPathComponent("head.safetensors").path])
        #expect(export.status != 0 && export.err.contains("not the one the head was trained on") && !export.err.contains("--force"),
                "\(export.err)")
    }

    @Test func aFolderThatTokenizesOtherwiseIsRefusedUnlessForced() throws {
        let folder = try Self.fit("linear")
        // The same config and weights (their hashes pass) with a tokenizer that keeps case.
        let copy = try Self.minilmCopy(editing: "tokenizer_config.json", ["do_lower_case": false])
        defer { try? FileManager.default.removeItem(at: copy) }
        let configURL = copy.appendingPathComponent("tokenizer_config.json")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        let refused = try runSidecar(["predict", "--head", folder, "--backbone", copy.path, "--input", Self.testSplit])
        #expect(refused.status != 0 && refused.out.isEmpty)
        #expect(refused.err.contains("tokenizes otherwise than the head's cache: lowercase false, trained with true"), "\(refused.err)")
        let forced = try runSidecar(["predict", "--head", folder, "--backbone", copy.path, "--input", Self.testSplit, "--force"])
        #expect(forced.status == 0, "\(forced.err)")
        // Lowercasing as trained, with two words' ids swapped in vocab.txt.
        try JSONSerialization.data(withJSONObject: config.merging(["do_lower_case": true]) { $1 }).write(to: configURL)
        let vocabulary = copy.appendingPathComponent("vocab.txt")
        var words = try String(contentsOf: vocabulary, encoding: .utf8).components(separatedBy: "\n")
        words.swapAt(words.firstIndex(of: "the")!, words.firstIndex(of: "dog")!)
        try Data(words.joined(separator: "\n").utf8).write(to: vocabulary)
        let swapped = try runSidecar(["predict", "--head", folder, "--backbone", copy.path, "--input", Self.testSplit])
        #expect(swapped.status != 0 && swapped.err.contains("tokenizes otherwise than the head's cache: vocabulary "), "\(swapped.err)")
        #expect(!swapped.err.contains("lowercase"), "\(swapped.err)")
    }

    @Test func csvAndTSVInputsReadTheTrainedColumns() throws {
        let folder = try Self.fit("linear")
        let texts = try String(contentsOfFile: Self.testSplit, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("predict-columns-\(UUID().uuidString)").path
        defer { for ext in ["csv", "tsv"] { try? FileManager.default.removeItem(atPath: base + "." + ext) } }
        // A label column and a quoted field with a comma: read as lines, both had become text.
        let csv = "label,text,extra\n" + texts.map { "\($0["label"]!),\"\(($0["text"] as! String).replacingOccurrences(of: "\"", with: "\"\""))\",x,y" }
            .joined(separator: "\n") + "\n"
        try Data(csv.replacingOccurrences(of: ",x,y", with: ",\"x,y\"").utf8).write(to: URL(fileURLWithPath: base + ".csv"))
        let tsv = "text\tlabel\n" + texts.map { "\($0["text"]!)\t\($0["label"]!)" }.joined(separator: "\n") + "\n"
        try Data(tsv.utf8).write(to: URL(fileURLWithPath: base + ".tsv"))
        let reference = try Self.predict(folder, input: Self.testSplit).map { $0["logits"] as! [Double] }
        for ext in ["csv", "tsv"] {
            let lines = try Self.predict(folder, input: base + "." + ext)
            #expect(lines.count == texts.count, "\(ext): \(lines.count) outputs for \(texts.count) rows")
            #expect(lines.first?["line"] as? Int == 2, "\(ext): \(lines.first ?? [:])")
            #expect(Self.maxDifference(lines.map { $0["logits"] as! [Double] }, reference) <= 1e-6, "\(ext)")
        }
        try Data("body,label\nsome text,food\n".utf8).write(to: URL(fileURLWithPath: base + ".csv"))
        let missing = try runSidecar(["predict", "--head", folder, "--input", base + ".csv"])
        #expect(missing.status != 0 && missing.err.contains("text") && missing.err.contains(base + ".csv"), "\(missing.err)")
    }

    @Test func badInputsAreNamed() throws {
        let folder = try Self.fit("linear")
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("predict-bad-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: bad) }
        try Data("{\"text\": \"a cat\"}\n{\"body\": \"no text\"}\n".utf8).write(to: URL(fileURLWithPath: bad))
        let missingKey = try runSidecar(["predict", "--head", folder, "--input", bad])
        #expect(missingKey.status != 0 && missingKey.err.contains("\(bad):2") && missingKey.err.contains("\"text\""), "\(missingKey.err)")
        // The line before the bad one is still predicted and printed.
        #expect(missingKey.out.split(separator: "\n").count == 1 && missingKey.out.hasSuffix("a cat\n"), "\(missingKey.out)")
        let noHead = try runSidecar(["predict", "--head", "/nonexistent/head", "--input", Self.testSplit])
        #expect(noHead.status != 0 && noHead.err.contains("/nonexistent/head"))
        let noInput = try runSidecar(["predict", "--head", folder, "--input", "/nonexistent/input.txt"])
        #expect(noInput.status != 0 && noInput.err.contains("/nonexistent/input.txt"))
        // A split the cache lacks is named.
        let split = try runSidecar(["eval", "--cache", try Self.cache.get(), "--head", folder, "--split", "nope"])
        #expect(split.status != 0 && split.err.contains("no nope split"), "\(split.err)")
        // An id is echoed as the JSON value it was (string or number); anything else is named.
        try Data(#"{"id": "a-1", "text": "a cat"}\#n{"id": 7, "text": "a dog"}\#n{"id": 2.5, "text": "x"}\#n{"text": "y"}\#n"#.utf8)
            .write(to: URL(fileURLWithPath: bad))
        let ids = try Self.predict(folder, input: bad).map { $0["id"] }
        #expect(ids[0] as? String == "a-1" && ids[1] as? Int == 7 && ids[2] as? Double == 2.5 && ids[3] == nil, "\(ids)")
        // A number past Int64 comes back as written (it had come back as 1.2345678901234567e+19).
        try Data(#"{"id": 12345678901234567890, "text": "a cat"}\#n"#.utf8).write(to: URL(fileURLWithPath: bad))
        let big = try runSidecar(["predict", "--head", folder, "--input", bad, "--json"])
        #expect(big.out.contains(#""id":12345678901234567890"#), "\(big.out)")
        // One Decimal cannot hold exactly is refused, not echoed changed (50 digits had come back
        // rounded to 38), nor called no number (1e200).
        for (line, written) in [(#"{"id": 12345678901234567890123456789012345678901234567891, "text": "a"}"#,
                                 "12345678901234567890123456789012345678901234567891"),
                                (#"{"text": "a", "id": 1e200}"#, "1e200")] {
            try Data((line + "\n").utf8).write(to: URL(fileURLWithPath: bad))
            let refused = try runSidecar(["predict", "--head", folder, "--input", bad, "--json"])
            #expect(refused.status != 0 && refused.err.contains("\(bad):1: \"id\" \(written) is a number predict cannot echo exactly")
                    && refused.out.isEmpty, "\(refused.err)")
        }
        // Other spellings of an exact number pass, and a nested "id" is not the input's.
        try Data(#"{"id": 1.50e1, "meta": {"id": 1e300}, "text": "a"}\#n"#.utf8).write(to: URL(fileURLWithPath: bad))
        let spelled = try Self.predict(folder, input: bad).map { $0["id"] }
        #expect(spelled.first as? Int == 15, "\(spelled)")
        // A key given twice: which value is meant cannot be told (dataset files refuse it too).
        try Data(#"{"text": "a cat"}\#n{"text": "a dog", "id": 1, "text": "a cow"}\#n"#.utf8).write(to: URL(fileURLWithPath: bad))
        let twice = try runSidecar(["predict", "--head", folder, "--input", bad])
        #expect(twice.status != 0 && twice.err.contains("\(bad):2: \"text\" appears twice"), "\(twice.err)")
        try Data(#"{"id": true, "text": "a cat"}\#n"#.utf8).write(to: URL(fileURLWithPath: bad))
        let boolean = try runSidecar(["predict", "--head", folder, "--input", bad, "--json"])
        #expect(boolean.status != 0 && boolean.err.contains("\(bad):1: \"id\" must be a string or a number"), "\(boolean.err)")
        // No inputs is no error, but it is said, on stderr: stdout stays one line per input.
        try Data("\n\n".utf8).write(to: URL(fileURLWithPath: bad))
        let empty = try runSidecar(["predict", "--head", folder, "--input", bad, "--json"])
        #expect(empty.status == 0 && empty.out.isEmpty && empty.err.contains("predict: --input \(bad) holds no inputs"), "\(empty.err)")
        // So for an empty CSV file, as for a CSV file with its header alone.
        let csv = bad + ".csv"
        defer { try? FileManager.default.removeItem(atPath: csv) }
        for content in ["", "text,label\n"] {
            try Data(content.utf8).write(to: URL(fileURLWithPath: csv))
            let none = try runSidecar(["predict", "--head", folder, "--input", csv])
            #expect(none.status == 0 && none.out.isEmpty && none.err.contains("predict: --input \(csv) holds no inputs"), "\(none.err)")
        }
    }

    @Test func plainTextFromStandardInput() throws {
        let folder = try Self.fit("linear")
        let run = try runSidecar(["predict", "--head", folder, "--input", "-", "--top-k", "2"],
                                 input: Data("the cat sleeps on the sofa\n\nrain is falling all day\n".utf8))
        #expect(run.status == 0, "\(run.err)")
        let lines = run.out.split(separator: "\n")
        // Two inputs (the blank line is skipped), each: label, probability, label, probability, text.
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.split(separator: "\t").count == 5 })
        #expect(lines[1].hasSuffix("rain is falling all day"))
    }

    /// Each line piped in is answered before the next arrives (read(2) returns what has arrived;
    /// fread had waited for a whole chunk, so answers came only at the end of the input).
    @Test func standardInputIsAnsweredLineByLine() throws {
        let folder = try Self.fit("linear")
        let process = Process()
        process.executableURL = sidecarBinary()
        process.arguments = ["predict", "--head", folder, "--input", "-", "--batch-size", "1"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data("the cat sleeps on the sofa\n".utf8))
        let answered = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var first = Data()
        DispatchQueue.global().async {
            first = output.fileHandleForReading.availableData
            answered.signal()
        }
        let inTime = answered.wait(timeout: .now() + 60) == .success
        input.fileHandleForWriting.write(Data("rain is falling all day\n".utf8))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(inTime, "no answer before the second line")
        #expect(String(decoding: first, as: UTF8.self).hasSuffix("the cat sleeps on the sofa\n"))
    }

    /// Standard input is read as a file is: a byte-order mark and blank lines before the first
    /// JSON line (they had made it plain text, the whole line classified and its id lost), lines
    /// ending in a lone "\r", and invalid UTF-8 (it had been replaced without a word).
    @Test func standardInputIsReadAsAFileIs() throws {
        let folder = try Self.fit("linear")
        let jsonl = "\u{FEFF}\n{\"text\": \"the cat sleeps\", \"id\": 7}\r\n{\"text\": \"rain all day\", \"id\": \"b\"}\n"
        let file = folder + "/inputs.jsonl"
        try Data(jsonl.utf8).write(to: URL(fileURLWithPath: file))
        let fromFile = try runSidecar(["predict", "--head", folder, "--input", file, "--json"])
        let fromStdin = try runSidecar(["predict", "--head", folder, "--input", "-", "--json"], input: Data(jsonl.utf8))
        #expect(fromFile.status == 0 && fromStdin.status == 0, "\(fromFile.err)\(fromStdin.err)")
        #expect(fromStdin.out == fromFile.out && fromStdin.out.contains("\"id\":7") && fromStdin.out.contains("\"id\":\"b\""), "\(fromStdin.out)")
        let oldMac = try runSidecar(["predict", "--head", folder, "--input", "-"], input: Data("dogs bark\rrain and snow\rbread\r".utf8))
        #expect(oldMac.status == 0 && oldMac.out.split(separator: "\n").count == 3, "\(oldMac.out)")
        let invalid = try runSidecar(["predict", "--head", folder, "--input", "-"], input: Data([0x64, 0x6F, 0xFF, 0x0A]))
        #expect(invalid.status != 0 && invalid.err.contains("standard input:1: not valid UTF-8"), "\(invalid.err)")
        // tokenize reads lines the same way (a CRLF file had been one line).
        let crlf = folder + "/lines.txt"
        try Data("hello world\r\na b\r\n".utf8).write(to: URL(fileURLWithPath: crlf))
        for run in [try runSidecar(["tokenize", "--input", crlf]), try runSidecar(["tokenize"], input: Data("hello world\ra b\r".utf8))] {
            #expect(run.status == 0 && run.out.split(separator: "\n").count == 2, "\(run.out)\(run.err)")
        }
    }

    /// debian-sections with its full test split and the first `trainCount` training examples.
    static func debianSubset(trainCount: Int) throws -> String {
        let data = repository.appendingPathComponent("datasets/debian-sections/data")
        if !FileManager.default.fileExists(atPath: data.appendingPathComponent("test.jsonl").path) {
            let build = Process()
            build.executableURL = URL(fileURLWithPath: "/bin/sh")
            build.arguments = [repository.appendingPathComponent("datasets/debian-sections/build.sh").path]
            try build.run()
            build.waitUntilExit()
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("debian-subset-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (split, keep) in [("train", trainCount), ("val", 400), ("test", Int.max)] {
            let text = try String(contentsOf: data.appendingPathComponent("\(split).jsonl"), encoding: .utf8)
            let lines = text.split(separator: "\n").prefix(keep)
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: folder.appendingPathComponent("\(split).jsonl"))
        }
        return folder.path
    }

    @Test func int8CacheAndRawInputsAgreeOnTheLabelsOfARealTestSplit() throws {
        let dataset = try Self.debianSubset(trainCount: 2000)
        let cache = dataset + "-int8"
        defer {
            for path in [dataset, cache, cache + "-heads"] { try? FileManager.default.removeItem(atPath: path) }
        }
        let extract = try runSidecar(["extract", "--dataset", dataset, "--out", cache, "--dtype", "int8"])
        try #require(extract.status == 0, "\(extract.err)")
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--set", "layers=all", "--head", "losa",
                                  "--epochs", "2", "--out", cache + "-heads"])
        try #require(fit.status == 0, "\(fit.err)")
        for head in ["01-linear", "02-losa"] {
            let folder = cache + "-heads/" + head
            let cached = try Self.evalLogits(folder, cache: cache).map { $0.firstIndex(of: $0.max()!)! }
            let raw = try Self.predict(folder, input: dataset + "/test.jsonl").map { line in
                let logits = line["logits"] as! [Double]
                return logits.firstIndex(of: logits.max()!)!
            }
            #expect(raw.count == cached.count && raw.count > 3000)
            let agreement = Double(zip(raw, cached).filter { $0 == $1 }.count) / Double(max(raw.count, 1))
            #expect(agreement >= 0.99, "\(head): labels agree on \(agreement) of \(raw.count)")
        }
    }
}

/// Images: a folder of PNGs through the tiny random ViT, predicted file by file, against eval on an
/// f32 cache of the same folder.
@Suite struct ImagePredictCLITests {
    @Test func predictOnImageFilesEqualsEvalOnTheF32Cache() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("predict-images-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var generator = SystemRandomNumberGenerator()
        for (split, count) in [("train", 12), ("val", 4), ("test", 5)] {
            for (c, name) in ["dark", "light"].enumerated() {
                let folder = root.appendingPathComponent("data/\(split)/\(name)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    // Sizes differ: the backbone's preprocessing resizes every image to 16×16.
                    let (height, width) = (18 + i % 3, 20 + i % 4)
                    let pixels = (0..<(height * width * 3)).map { _ in UInt8(c * 120 + Int(generator.next() % 120)) }
                    try Data(encodePNG(pixels, height: height, width: width)).write(to: folder.appendingPathComponent("\(i).png"))
                }
            }
        }
        let tinyViT = repository.appendingPathComponent("Tests/EncodersTests/Fixtures/tiny_vit").path
        let cache = root.appendingPathComponent("cache").path
        let extract = try runSidecar(["extract", "--dataset", root.appendingPathComponent("data").path, "--backbone", tinyViT,
                                      "--out", cache, "--dtype", "f32", "--lst-reductions", "none", "--top-blocks", "0"])
        try #require(extract.status == 0, "\(extract.err)")
        let head = root.appendingPathComponent("head").path
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "mlp", "--epochs", "2", "--batch-size", "4", "--out", head])
        try #require(fit.status == 0, "\(fit.err)")
        let cached = try PredictCLITests.evalLogits(head, cache: cache)
        let lines = try PredictCLITests.predict(head, input: root.appendingPathComponent("data/test").path,
                                                extra: ["--backbone", tinyViT, "--batch-size", "4"])
        // The folder is walked in sorted order, which is the cache's order (class, then file).
        #expect(lines.map { ($0["file"] as! String).split(separator: "/").suffix(2).joined(separator: "/") }
                == ["dark", "light"].flatMap { c in (0..<5).map { "\(c)/\($0).png" } })
        let difference = PredictCLITests.maxDifference(lines.map { $0["logits"] as! [Double] }, cached)
        #expect(cached.count == 10 && difference <= 1e-4, "predict and eval differ by \(difference)")
        // A folder is walked as extract walks a class folder: hidden files and folders are left
        // out (a macOS ._ file had stopped the run), a folder named like an image is walked into.
        let dark = root.appendingPathComponent("data/test/dark")
        let valid = try Data(contentsOf: dark.appendingPathComponent("0.png"))
        try Data("Mac OS X        ATTR".utf8).write(to: dark.appendingPathComponent("._0.png"))
        for folder in [".ipynb_checkpoints", "more.png"] {
            try FileManager.default.createDirectory(at: dark.appendingPathComponent(folder), withIntermediateDirectories: true)
            try valid.write(to: dark.appendingPathComponent(folder + "/0.png"))
        }
        let walked = try PredictCLITests.predict(head, input: root.appendingPathComponent("data/test").path, extra: ["--backbone", tinyViT])
        #expect(walked.map { ($0["file"] as! String).split(separator: "/").suffix(2).joined(separator: "/") }
                == ["dark/0.png", "dark/1.png", "dark/2.png", "dark/3.png", "dark/4.png", "more.png/0.png"] + (0..<5).map { "light/\($0).png" })
        // Text into an image head is refused.
        let text = try runSidecar(["predict", "--head", head, "--backbone", tinyViT, "--input", PredictCLITests.testSplit])
        #expect(text.status != 0 && text.err.contains("reads images"), "\(text.err)")
        // The same config and weights, normalised otherwise: preprocessor_config.json is not hashed.
        let copy = root.appendingPathComponent("tiny_vit_mean")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: tinyViT), to: copy)
        let configURL = copy.appendingPathComponent("preprocessor_config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["image_mean"] = [0.4, 0.5, 0.5]
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let other = try runSidecar(["predict", "--head", head, "--backbone", copy.path, "--input", root.appendingPathComponent("data/test").path])
        #expect(other.status != 0 && other.err.contains("preprocesses images otherwise than the head's cache"), "\(other.err)")
    }
}

/// An RGB PNG, through libpng's simplified API.
func encodePNG(_ pixels: [UInt8], height: Int, width: Int) -> [UInt8] {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    image.width = UInt32(width)
    image.height = UInt32(height)
    image.format = UInt32(PNG_FORMAT_FLAG_COLOR)
    var size: png_alloc_size_t = 0
    _ = pixels.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil) }
    var encoded = [UInt8](repeating: 0, count: Int(size))
    let written = encoded.withUnsafeMutableBytes { target in
        pixels.withUnsafeBytes { png_image_write_to_memory(&image, target.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
    }
    precondition(written != 0, "png_image_write_to_memory failed")
    return Array(encoded.prefix(Int(size)))
}
