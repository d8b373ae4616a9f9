// `sidecar fit` as a user runs it, on a cache extracted from the tiny dataset with the real MiniLM,
// after the backbone's files are deleted: every head trains from the command line, --set groups
// go to their --head, and bad flags are refused before training with the flag named.
import ActivationStore
import Encoders
import Foundation
import Testing

@Suite(.serialized) struct FitCLITests {
    /// A cache of datasets/tiny with every stream and blob, extracted from a private copy of the
    /// backbone that is deleted before returning.
    static let cache: Result<String, Error> = Result {
        let fm = FileManager.default
        let temp = fm.temporaryDirectory.appendingPathComponent("fit-cli-\(UUID().uuidString)")
        // temp also holds the --out folders the tests put beside the cache.
        removeAtExit(temp.path)
        let backbone = temp.appendingPathComponent("backbone")
        try fm.createDirectory(at: temp, withIntermediateDirectories: true)
        try fm.copyItem(at: try BackboneFolder.resolve("minilm"), to: backbone)
        let cache = temp.appendingPathComponent("cache").path
        var environment = ProcessInfo.processInfo.environment
        environment["SIDECAR_MINILM_DIR"] = backbone.path
        let result = try runSidecar(["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--out", cache,
                                     "--streams", "attn,mlp", "--lst-reductions", "8", "--top-blocks", "1"], environment: environment)
        guard result.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: ["extract": result.err]) }
        try fm.removeItem(at: backbone)
        return cache
    }

    /// No backbone anywhere: no SIDECAR_MINILM_DIR that exists, no python3 on the PATH.
    static let noBackbone = ["SIDECAR_MINILM_DIR": "/nonexistent", "PATH": "/nonexistent", "HOME": NSTemporaryDirectory()]

    @Test(arguments: ["linear", "mlp", "losa", "lst", "unipt", "e3va", "consolidator"])
    func everyHeadTrainsWithoutTheBackbone(_ head: String) throws {
        let cache = try Self.cache.get()
        let out = cache + "-\(head)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let settings = head == "consolidator" ? ["--set", "groups=96"] : []
        let result = try runSidecar(["fit", "--cache", cache, "--head", head] + settings + ["--epochs", "2", "--batch-size", "8", "--json", "--out", out],
                                    environment: Self.noBackbone)
        #expect(result.status == 0, "\(head): \(result.err.suffix(600))")
        let json = try JSONSerialization.jsonObject(with: Data(result.out.split(separator: "\n").last!.utf8)) as! [String: Any]
        #expect(json["head"] as? String == head)
        #expect((json["test"] as? [String: Any])?["accuracy"] is Double)
        #expect((json["trainable_parameters"] as? Int ?? 0) > 0)
        for file in ["head.safetensors", "config.json", "log.tsv", "result.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + file), "\(head): no \(file)")
        }
    }

    @Test func setsGoToTheHeadBeforeThem() throws {
        let cache = try Self.cache.get()
        let out = cache + "-group"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--set", "layers=all", "--head", "mlp", "--set", "hidden=16",
                                     "--set", "dropout=0", "--epochs", "1", "--json", "--out", out])
        #expect(result.status == 0, "\(result.err.suffix(600))")
        let results = try JSONSerialization.jsonObject(with: Data(result.out.split(separator: "\n").last!.utf8)) as! [[String: Any]]
        let values = results.map { ($0["hyperparameters"] as! [String: Any])["values"] as! [String: Any] }
        #expect(values[0]["layers"] as? String == "all")
        #expect(values[1]["hidden"] as? Int == 16 && values[1]["dropout"] as? Double == 0 && values[1]["layers"] as? String == "last")
        #expect(FileManager.default.fileExists(atPath: out + "/01-linear/result.json"))
        #expect(FileManager.default.fileExists(atPath: out + "/02-mlp/result.json"))

        // Again into the same folder, another fit replaces the whole of the earlier one's results:
        // one head instead of two, then two other heads (files of the user's own stay).
        try Data("mine".utf8).write(to: URL(fileURLWithPath: out + "/notes.txt"))
        let one = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", out])
        #expect(one.status == 0, "\(one.err.suffix(600))")
        let fm = FileManager.default
        #expect(try fm.contentsOfDirectory(atPath: out).sorted() == ["config.json", "head.safetensors", "log.tsv", "notes.txt", "result.json"])
        let two = try runSidecar(["fit", "--cache", cache, "--head", "mlp", "--head", "linear", "--epochs", "1", "--out", out])
        #expect(two.status == 0, "\(two.err.suffix(600))")
        #expect(try fm.contentsOfDirectory(atPath: out).sorted() == ["01-mlp", "02-linear", "notes.txt"])
    }

    /// A damaged blob stops only the heads that read it: fits of the others train, warned (a
    /// damaged top-blocks blob had stopped every head's fit, even --skip-corrupt's); a fit that
    /// includes a head reading it is refused before training, naming that head.
    @Test func aDamagedBlobStopsOnlyTheHeadsThatReadIt() throws {
        let cache = try Self.cache.get() + "-damaged-blob-checksum"
        let fm = FileManager.default
        try? fm.removeItem(atPath: cache)
        try fm.copyItem(atPath: try Self.cache.get(), toPath: cache)
        defer { for path in [cache, cache + "-linear", cache + "-consolidator"] { try? fm.removeItem(atPath: path) } }
        // Every copy of the checksum stored with blob top_blocks (the 16 hex digits after its key),
        // its first digit changed.
        let file = URL(fileURLWithPath: cache + "/data.mdb")
        var data = try Data(contentsOf: file)
        var changed = 0, from = data.startIndex
        while let key = data.range(of: Data("blob-xxh64:top_blocks".utf8), in: from..<data.endIndex) {
            data[key.upperBound] = data[key.upperBound] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            from = key.upperBound
            changed += 1
        }
        #expect(changed >= 1)
        try data.write(to: file)
        let damage = "\(cache): blob top_blocks is damaged (its checksum does not match)"
        for skip in [[], ["--skip-corrupt"]] {
            let linear = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", cache + "-linear"] + skip)
            #expect(linear.status == 0 && linear.err.contains("warning: \(damage)") && linear.err.contains("heads that read blob top_blocks cannot train"),
                    "\(linear.err)")
            #expect(fm.fileExists(atPath: cache + "-linear/result.json"))
        }
        let consolidator = try runSidecar(["fit", "--cache", cache, "--head", "consolidator", "--set", "groups=96", "--epochs", "1",
                                           "--out", cache + "-consolidator"])
        #expect(consolidator.status == 1 && consolidator.err.contains("Error: \(damage)"), "\(consolidator.err)")
        #expect(!fm.fileExists(atPath: cache + "-consolidator/result.json"))
        let both = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--head", "consolidator", "--set", "groups=96", "--epochs", "1",
                                   "--out", cache + "-consolidator"])
        #expect(both.status == 1 && both.err.contains("Error: --head consolidator (head 2 of 2 given by --head): \(damage)")
                && !both.out.contains("epoch  1"), "\(both.err)")

        // A blob the manifest lists but the cache lacks is damage too, named as such: it had read
        // as a cache extracted without it, whose advice to extract again failed on the manifest.
        var options = LMDBEnvironment.Options()
        options.maxDatabases = 4
        do {
            let environment = try LMDBEnvironment(path: cache, options: options)
            let meta = try environment.openDatabase("meta")
            try environment.write { txn throws in
                #expect(try txn.delete(Array("blob:top_blocks".utf8), in: meta))
                _ = try txn.delete(Array("blob-xxh64:top_blocks".utf8), in: meta)
            }
        }
        let lacking = "\(cache): the manifest lists blob top_blocks, but the cache does not hold it (it is damaged)"
        let linear = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", cache + "-linear"])
        #expect(linear.status == 0 && linear.err.contains("warning: \(lacking)"), "\(linear.err)")
        let missing = try runSidecar(["fit", "--cache", cache, "--head", "consolidator", "--set", "groups=96", "--epochs", "1",
                                      "--out", cache + "-consolidator"])
        #expect(missing.status == 1 && missing.err.contains("reads blob top_blocks, which the cache's manifest lists but the cache does not hold"),
                "\(missing.err)")
    }

    /// eval --select chooses an ensemble among the heads given on the val split, best head first,
    /// and scores what it chose on the test split exactly as eval scores those heads given alone.
    @Test func evalChoosesAnEnsembleOnValidation() throws {
        let cache = try Self.cache.get()
        let out = cache + "-select"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--set", "layers=all", "--head", "mlp", "--set", "hidden=16",
                                  "--head", "losa", "--head", "linear", "--epochs", "2", "--batch-size", "8", "--out", out], environment: Self.noBackbone)
        #expect(fit.status == 0, "\(fit.err.suffix(600))")
        let heads = ["01-linear", "02-mlp", "03-losa", "04-linear"].map { out + "/" + $0 }
        func report(_ arguments: [String]) throws -> [String: Any] {
            let eval = try runSidecar(["eval", "--cache", cache] + arguments + ["--json"], environment: Self.noBackbone)
            #expect(eval.status == 0, "\(eval.err)")
            return try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as? [String: Any] ?? [:]
        }
        func accuracy(_ r: [String: Any]) -> Double { (r["metrics"] as? [String: Any])?["accuracy"] as? Double ?? -1 }
        let chosen = try report(["--select", "3"] + heads.flatMap { ["--head", $0] })
        let selection = try #require(chosen["selection"] as? [String: Any])
        #expect(selection["split"] as? String == "val" && selection["candidates"] as? Int == 4)
        let steps = try #require(selection["steps"] as? [[String: Any]])
        let members = steps.compactMap { $0["head"] as? String }
        #expect((1...3).contains(steps.count) && members.count == steps.count && Set(members).count == members.count
                && members.allSatisfy(heads.contains), "\(steps)")
        // The first member is the best head alone on val; its score there is its own.
        let onVal = try heads.map { try report(["--head", $0, "--split", "val"]) }
        #expect(steps[0]["accuracy"] as? Double == onVal.map(accuracy).max(), "\(steps) against \(onVal.map(accuracy))")
        // What was chosen is scored on test as eval scores those heads given by hand.
        #expect(chosen["split"] as? String == "test")
        let byHand = try report(members.flatMap { ["--head", $0] })
        #expect(NSDictionary(dictionary: chosen["metrics"] as? [String: Any] ?? [:]) == NSDictionary(dictionary: byHand["metrics"] as? [String: Any] ?? [:]))
        // One head chosen is still reported as the one member.
        let single = try report(["--select", "1"] + heads.flatMap { ["--head", $0] })
        #expect((single["members"] as? [[String: Any]])?.map { $0["head"] as? String } == [members[0]]
                && ((single["selection"] as? [String: Any])?["steps"] as? [[String: Any]])?.count == 1, "\(single)")
        let text = try runSidecar(["eval", "--cache", cache, "--select", "2"] + heads.flatMap { ["--head", $0] }, environment: Self.noBackbone)
        #expect(text.status == 0 && text.out.hasPrefix("chose ") && text.out.contains(" of 4 heads on val"), "\(text.out)")

        for (arguments, message) in [(["--select", "2", "--split", "val"], "--select chooses the heads on val, so it cannot also score them there"),
                                     (["--select", "0"], "--select must be at least 1, got 0")] {
            let refused = try runSidecar(["eval", "--cache", cache] + arguments + heads.flatMap { ["--head", $0] })
            #expect(refused.status == 64 && refused.err.contains(message), "\(refused.err)")
        }
        let one = try runSidecar(["eval", "--cache", cache, "--select", "2", "--head", heads[0]])
        #expect(one.status == 64 && one.err.contains("--select chooses among several heads"), "\(one.err)")
    }

    /// eval with several --head flags scores them as an ensemble on one pass, each member scored
    /// as eval scores it alone; the same head twice is refused.
    @Test func evalScoresSeveralHeadsAsAnEnsemble() throws {
        let cache = try Self.cache.get()
        let out = cache + "-ensemble"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--set", "layers=all", "--head", "losa",
                                  "--epochs", "2", "--batch-size", "8", "--out", out], environment: Self.noBackbone)
        #expect(fit.status == 0, "\(fit.err.suffix(600))")
        let heads = [out + "/01-linear", out + "/02-losa"]
        func report(_ arguments: [String]) throws -> [String: Any] {
            let eval = try runSidecar(["eval", "--cache", cache] + arguments + ["--json", "--logits"], environment: Self.noBackbone)
            #expect(eval.status == 0, "\(eval.err)")
            return try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as? [String: Any] ?? [:]
        }
        let alone = try heads.map { try report(["--head", $0]) }
        #expect(alone.allSatisfy { $0["members"] == nil })
        let ensemble = try report(["--head", heads[0], "--head", heads[1]])
        let members = try #require(ensemble["members"] as? [[String: Any]])
        #expect(members.map { $0["head"] as? String } == heads && members.map { $0["kind"] as? String } == ["linear", "losa"])
        #expect(members.map { NSDictionary(dictionary: $0["metrics"] as? [String: Any] ?? [:]) }
                == alone.map { NSDictionary(dictionary: $0["metrics"] as? [String: Any] ?? [:]) })
        // The ensemble's vote for each example is the class of the largest mean probability.
        let logits = alone.map { $0["logits"] as? [[Double]] ?? [] }
        let votes = zip(logits[0], logits[1]).map { a, b -> Int in
            func softmax(_ row: [Double]) -> [Double] { let e = row.map { exp($0 - row.max()!) }; return e.map { $0 / e.reduce(0, +) } }
            let mean = zip(softmax(a), softmax(b)).map { $0 + $1 }
            return mean.firstIndex(of: mean.max()!)!
        }
        let mixed = (ensemble["logits"] as? [[Double]] ?? []).map { $0.firstIndex(of: $0.max()!)! }
        #expect(!votes.isEmpty && mixed == votes)

        let text = try runSidecar(["eval", "--cache", cache, "--head", heads[0], "--head", heads[1]], environment: Self.noBackbone)
        #expect(text.status == 0 && text.out.hasPrefix("ensemble of 2 heads on \(cache): the mean of their class probabilities"), "\(text.out)")
        #expect(text.out.contains("  linear from \(heads[0]): accuracy ") && text.out.contains("  losa from \(heads[1]): accuracy "), "\(text.out)")

        // Without --logits the report leaves the key out rather than giving an empty list.
        let bare = try runSidecar(["eval", "--cache", cache, "--head", heads[0], "--head", heads[1], "--json"], environment: Self.noBackbone)
        let keys = Set((try JSONSerialization.jsonObject(with: Data(bare.out.utf8)) as? [String: Any] ?? [:]).keys)
        #expect(bare.status == 0 && keys == ["split", "labels", "metrics", "per_class", "members"], "\(keys)")

        let parent = try runSidecar(["eval", "--cache", cache, "--head", out])
        #expect(parent.status == 1 && parent.err.contains("\(out): not a head folder but the heads of one fit (01-linear, 02-losa)"), "\(parent.err)")

        let twice = try runSidecar(["eval", "--cache", cache, "--head", heads[0], "--head", heads[0]])
        #expect(twice.status == 64 && twice.err.contains("--head \(heads[0]) is given twice"), "\(twice.err)")
        let link = out + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: heads[1])
        let again = try runSidecar(["eval", "--cache", cache, "--head", heads[1] + "/", "--head", link])
        #expect(again.status == 64 && again.err.contains("--head \(link) is \(heads[1])/, given before"), "\(again.err)")
        // Through a link elsewhere, "link/.." is the link's target's parent, as the OS opens it:
        // out/sub/losa/../01-linear is out/01-linear, not out/sub/01-linear.
        try FileManager.default.createDirectory(atPath: out + "/sub", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: out + "/sub/losa", withDestinationPath: heads[1])
        let around = out + "/sub/losa/../01-linear"
        let through = try runSidecar(["eval", "--cache", cache, "--head", around], environment: Self.noBackbone)
        #expect(through.status == 0 && through.out.hasPrefix("linear from \(around) on"), "\(through.err)")
        let same = try runSidecar(["eval", "--cache", cache, "--head", heads[0], "--head", around])
        #expect(same.status == 64 && same.err.contains("--head \(around) is \(heads[0]), given before"), "\(same.err)")
        let none = try runSidecar(["eval", "--cache", cache])
        #expect(none.status == 64 && none.err.contains("Missing expected argument '--head <head> ...'"), "\(none.err)")
        // One head from two files, a copied folder or the head's export, is one head twice too.
        let copy = out + "/copy-of-linear"
        try FileManager.default.copyItem(atPath: heads[0], toPath: copy)
        let copied = try runSidecar(["eval", "--cache", cache, "--head", heads[0], "--head", copy])
        #expect(copied.status == 1 && copied.err.contains("\(copy) holds the same head as \(heads[0]) (linear, the same settings and weights)"),
                "\(copied.err)")
        let exported = out + "/losa.safetensors"
        #expect(try runSidecar(["export", "--head", heads[1], "--out", exported]).status == 0)
        let export = try runSidecar(["eval", "--cache", cache, "--head", exported, "--head", heads[1]])
        #expect(export.status == 1 && export.err.contains("\(heads[1]) holds the same head as \(exported) (losa"), "\(export.err)")
        // Heads of one kind and settings that differ in their weights are an ensemble.
        let retrained = out + "/linear-seed-1"
        #expect(try runSidecar(["fit", "--cache", cache, "--head", "linear", "--set", "layers=all", "--epochs", "2", "--batch-size", "8",
                                "--seed", "1", "--out", retrained],
                               environment: Self.noBackbone).status == 0)
        let pair = try runSidecar(["eval", "--cache", cache, "--head", heads[0], "--head", retrained], environment: Self.noBackbone)
        #expect(pair.status == 0, "\(pair.err)")
        // One layer list spelled two ways is one head.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: heads[0] + "/config.json"))) as! [String: Any]
        let layers = (config["features"] as! [String]).map { String($0.dropFirst(2)) }
        let spellings = [layers.joined(separator: ","), layers.reversed().joined(separator: ",")]
        #expect(spellings[0] != spellings[1])
        let spelled = spellings.indices.map { out + "/spelled-\($0)" }
        for (spelling, folder) in zip(spellings, spelled) {
            #expect(try runSidecar(["fit", "--cache", cache, "--head", "linear", "--set", "layers=\(spelling)", "--epochs", "1", "--batch-size", "8",
                                    "--out", folder], environment: Self.noBackbone).status == 0)
        }
        let respelled = try runSidecar(["eval", "--cache", cache, "--head", spelled[0], "--head", spelled[1]], environment: Self.noBackbone)
        #expect(respelled.status == 1 && respelled.err.contains("\(spelled[1]) holds the same head as \(spelled[0]) (linear, the same settings and weights)"),
                "\(spellings) \(respelled.err)")
    }

    /// A damaged blob a head reads is found before the first epoch, not when the head folder
    /// records the cache's blobs after the last; and an earlier fit's heads in --out stay where
    /// nothing new was written.
    @Test func aDamagedBlobStopsTheFitBeforeTrainingAndKeepsEarlierHeads() throws {
        let fm = FileManager.default
        let cache = try Self.cache.get() + "-damaged-blob"
        let out = cache + "-out"
        defer { for path in [cache, out] { try? fm.removeItem(atPath: path) } }
        try fm.copyItem(atPath: try Self.cache.get(), toPath: cache)
        let earlier = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--head", "mlp", "--epochs", "1", "--out", out])
        #expect(earlier.status == 0, "\(earlier.err.suffix(600))")

        // Every copy of the first block's query matrix in data.mdb gets one byte flipped.
        let weight = try #require(try ActivationCache.open(path: cache).blob("top_blocks")?.tensors["block.6.attention.query.weight"])
        let file = URL(fileURLWithPath: cache + "/data.mdb")
        var data = try Data(contentsOf: file)
        let needle = weight.scalars.withUnsafeBytes { Data($0) }
        var flipped = 0, from = data.startIndex
        while let range = data.range(of: needle, in: from..<data.endIndex) {
            data[range.lowerBound + 1000] ^= 0x01
            from = range.upperBound
            flipped += 1
        }
        #expect(flipped >= 1)
        try data.write(to: file)

        let result = try runSidecar(["fit", "--cache", cache, "--head", "consolidator", "--set", "groups=96", "--epochs", "1", "--out", out])
        #expect(result.status == 1)
        #expect(result.err.contains("blob top_blocks is damaged"), "\(result.err.suffix(600))")
        #expect(!result.out.contains("epoch  1"), "trained before the blob was read:\n\(result.out)")
        #expect(try fm.contentsOfDirectory(atPath: out).sorted() == ["01-linear", "02-mlp"])
        for head in ["01-linear", "02-mlp"] { #expect(fm.fileExists(atPath: "\(out)/\(head)/result.json")) }
    }

    /// A fit holds its --out folder: a second fit into it is refused at once (two at once had left
    /// one's weights beside the other's result.json). A fit that fails before writing leaves no
    /// folder it made.
    @Test func aSecondFitIntoTheSameFolderIsRefused() throws {
        let cache = try Self.cache.get()
        let out = cache + "-held"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let fd = open(out, O_RDONLY | O_DIRECTORY)
        #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        let refused = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", out])
        close(fd)
        // The refused fit leaves the holder's folder where it is.
        #expect(FileManager.default.fileExists(atPath: out))
        #expect(refused.status == 1)
        #expect(refused.err.contains("--out \(out): another sidecar fit is writing into this folder"), "\(refused.err)")
        #expect(!refused.out.contains("epoch"), "trained before refusing: \(refused.out)")
        let after = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", out])
        #expect(after.status == 0, "\(after.err)")

        let made = cache + "-never/nested"
        let failed = try runSidecar(["fit", "--cache", cache + "-missing", "--head", "linear", "--out", made])
        #expect(failed.status != 0)
        #expect(!FileManager.default.fileExists(atPath: cache + "-never"), "a failed fit left the folder it made")
    }

    /// A head whose loss diverges: the fit says so and exits non-zero; its folder records why and
    /// holds no weights (an earlier fit's are removed), so eval refuses it with the reason.
    @Test func aDivergedHeadIsReportedAndLeavesNoWeights() throws {
        let cache = try Self.cache.get()
        let out = cache + "-diverged"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let first = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", out])
        #expect(first.status == 0 && FileManager.default.fileExists(atPath: out + "/head.safetensors"), "\(first.err.suffix(600))")
        let result = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--lr", "1e30", "--epochs", "1", "--out", out])
        #expect(result.status == 1)
        #expect(result.out.contains("linear failed: diverged: "), "\(result.out)")
        #expect(!FileManager.default.fileExists(atPath: out + "/head.safetensors"))
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/result.json"))) as! [String: Any]
        #expect((record["failure"] as? String)?.hasPrefix("diverged: ") == true)
        let eval = try runSidecar(["eval", "--cache", cache, "--head", out])
        #expect(eval.status != 0 && eval.err.contains("this head's fit failed (diverged: "), "\(eval.err)")
    }

    /// `layers=all` means the layers of the cache a head was trained on: evaluated on a cache that
    /// stores others (1,4,6 for 0,3,6), the weights had been applied to them without a word.
    @Test func aHeadReadsTheLayersItWasTrainedOnWhateverTheCacheStores() throws {
        let all = try Self.cache.get()
        let folder = all + "-layers"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tiny = repository.appendingPathComponent("datasets/tiny").path
        for (name, layers) in [("a", "0,3,6"), ("b", "1,4,6")] {
            let extract = try runSidecar(["extract", "--dataset", tiny, "--out", folder + "/" + name, "--layers", layers,
                                          "--lst-reductions", "none", "--top-blocks", "0"])
            #expect(extract.status == 0, "\(extract.err)")
        }
        let head = folder + "/head"
        let fit = try runSidecar(["fit", "--cache", folder + "/a", "--head", "linear", "--set", "layers=all", "--epochs", "2", "--out", head])
        #expect(fit.status == 0 && fit.out.contains("reads z_0 z_3 z_6"), "\(fit.out)\(fit.err)")
        let other = try runSidecar(["eval", "--cache", folder + "/b", "--head", head])
        #expect(other.status != 0)
        #expect(other.err.contains("reads z_0 z_3, which this cache does not store (it has layers 1,4,6; the head was trained on layers 0,3,6)"),
                "\(other.err)")
        // A cache storing every layer serves the head's three, and scores as its own cache does.
        func logits(_ cache: String) throws -> [[Double]] {
            let eval = try runSidecar(["eval", "--cache", cache, "--head", head, "--json", "--logits"])
            #expect(eval.status == 0, "\(eval.err)")
            return (try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as? [String: Any])?["logits"] as? [[Double]] ?? []
        }
        let own = try logits(folder + "/a"), everyLayer = try logits(all)
        #expect(!own.isEmpty && own == everyLayer)
    }

    @Test func badFlagsAreRefusedWithTheFlagNamed() throws {
        let cache = try Self.cache.get()
        let cases: [([String], String)] = [
            (["--head", "nope"], "unknown head 'nope'"),
            (["--head", "losa", "--set", "rank=4"], "has no hyperparameter rank"),
            (["--head", "losa", "--set", "rank_tokens=-1"], "--set rank_tokens=-1"),
            (["--set", "rank_tokens=4", "--head", "losa"], "comes before any --head"),
            (["--head", "lst", "--set", "reduction=4"], "--lst-reductions 4"),
            (["--head", "consolidator", "--set", "K=2"], "--top-blocks 2"),
            (["--head", "linear", "--epochs", "0"], "--epochs"),
        ]
        for (arguments, expected) in cases {
            let result = try runSidecar(["fit", "--cache", cache, "--out", cache + "-bad"] + arguments)
            #expect(result.status != 0, "\(arguments) was accepted")
            #expect(result.err.contains(expected), "\(arguments): \(result.err)")
        }
        // A bad --set value is a usage error, as a bad flag value is.
        let usage = try runSidecar(["fit", "--cache", cache, "--out", cache + "-bad", "--head", "losa", "--set", "rank_tokens=-1"])
        #expect(usage.status == 64 && usage.err.contains("Usage: sidecar fit"), "\(usage.err)")
        let missing = try runSidecar(["fit", "--cache", "/nonexistent/cache", "--head", "linear", "--out", "/tmp/x"])
        #expect(missing.status != 0 && missing.err.contains("/nonexistent/cache"))
    }
}
