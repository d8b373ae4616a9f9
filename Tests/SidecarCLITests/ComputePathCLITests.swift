// `--compute` as a user meets it: auto (the default) follows the CPU; the path is recorded in the
// cache and shown by `inspect`; resuming with another path is refused naming `compute`; a head
// trained on a bf16 cache predicts through the bf16 path (same logits as eval on its cache), and asking predict for f32 is refused; on a CPU
// oneDNN cannot compute bf16 on (simulated with ONEDNN_MAX_CPU_ISA), bf16 is refused with the fix.
import Foundation
import OneDNN
import Testing

@Suite(.serialized) struct ComputePathCLITests {
    static let dataset = repository.appendingPathComponent("datasets/tiny").path
    static let small = ["--layers", "0-2", "--lst-reductions", "none", "--top-blocks", "0"]
    /// Every layer (the linear head reads the last), still no blobs.
    static let allLayers = ["--lst-reductions", "none", "--top-blocks", "0"]

    static func scratch() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("compute-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test func resumingWithAnotherComputePathIsRefused() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: folder) }
        let cache = folder.appendingPathComponent("cache").path
        let first = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--compute", "f32"] + Self.small)
        #expect(first.status == 0, "\(first.err)")
        #expect(first.err.contains("compute f32"))
        let inspect = try runSidecar(["inspect", cache])
        #expect(inspect.status == 0 && inspect.out.contains("computed in f32"), "\(inspect.out)")

        let resumed = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--compute", "bf16"] + Self.small)
        #expect(resumed.status != 0)
        #expect(resumed.err.contains("compute: bf16 requested, f32 in the cache"), "\(resumed.err)")
        // The same command with the recorded path finds the cache complete and leaves it as it was.
        let again = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--compute", "f32"] + Self.small)
        #expect(again.status == 0, "\(again.err)")
    }

    /// The default, auto, is bf16 exactly where oneDNN has bf16 instructions; an AVX-512 CPU without
    /// them (simulated with ONEDNN_MAX_CPU_ISA) gets f32, not the slower emulation.
    @Test func autoIsTheDefaultAndFollowsTheCPU() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: folder) }
        let native = folder.appendingPathComponent("native").path
        let first = try runSidecar(["extract", "--dataset", Self.dataset, "--out", native] + Self.small)
        #expect(first.status == 0, "\(first.err)")
        let expected = OneDNN.hasBF16Instructions ? "bf16" : "f32"
        #expect(first.err.contains("compute \(expected) (auto:"), "\(first.err)")
        let inspect = try runSidecar(["inspect", native])
        #expect(inspect.out.contains("computed in \(expected)"), "\(inspect.out)")

        guard OneDNN.supportsBF16 else { return }
        var environment = ProcessInfo.processInfo.environment
        environment["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE"
        let capped = folder.appendingPathComponent("capped").path
        let result = try runSidecar(["extract", "--dataset", Self.dataset, "--out", capped] + Self.small, environment: environment)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.err.contains("compute f32 (auto:"), "\(result.err)")
    }

    @Test func badComputeValueIsAFlagError() throws {
        let result = try runSidecar(["extract", "--dataset", Self.dataset, "--out", "/nonexistent/cache", "--compute", "fp16"])
        #expect(result.status != 0)
        #expect(result.err.contains("--compute fp16: expected f32, bf16 or auto"), "\(result.err)")
    }

    @Test(.enabled(if: OneDNN.supportsBF16, "oneDNN has no bf16 product on this CPU"))
    func bf16CacheIsRecordedAndPredictUsesItsPath() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: folder) }
        let cache = folder.appendingPathComponent("cache").path
        let extract = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--compute", "bf16", "--dtype", "f32"] + Self.allLayers)
        #expect(extract.status == 0, "\(extract.err)")
        let inspect = try runSidecar(["inspect", cache])
        #expect(inspect.out.contains("computed in bf16"), "\(inspect.out)")
        let resumed = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--dtype", "f32", "--compute", "f32"] + Self.allLayers)
        #expect(resumed.status != 0)
        #expect(resumed.err.contains("compute: f32 requested, bf16 in the cache"), "\(resumed.err)")

        let head = folder.appendingPathComponent("head").path
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--batch-size", "8", "--out", head])
        #expect(fit.status == 0, "\(fit.err)")
        let eval = try runSidecar(["eval", "--cache", cache, "--head", head, "--json", "--logits"])
        #expect(eval.status == 0, "\(eval.err)")
        let cached = (try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as! [String: Any])["logits"] as! [[Double]]
        let test = repository.appendingPathComponent("datasets/tiny/test.jsonl").path
        let predict = try runSidecar(["predict", "--head", head, "--input", test, "--json", "--logits", "--batch-size", "3"])
        #expect(predict.status == 0, "\(predict.err)")
        let raw = try predict.out.split(separator: "\n").map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["logits"] as! [Double] }
        #expect(raw.count == 10 && cached.count == 10)
        let difference = zip(raw, cached).flatMap { zip($0, $1).map { abs($0 - $1) } }.max() ?? .infinity
        print("predict through bf16 vs eval on the bf16 cache: max |Δ logit| = \(difference)")
        #expect(difference <= 1e-4)

        let refused = try runSidecar(["predict", "--head", head, "--input", test, "--compute", "f32"])
        #expect(refused.status != 0)
        #expect(refused.err.contains("--compute f32: the head was trained on activations extracted with --compute bf16"), "\(refused.err)")
        // auto, where it resolves to f32 (a CPU without bf16 instructions, simulated), says so.
        var environment = ProcessInfo.processInfo.environment
        environment["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE"
        let auto = try runSidecar(["predict", "--head", head, "--input", test, "--compute", "auto"], environment: environment)
        #expect(auto.status != 0)
        #expect(auto.err.contains("--compute auto (f32 here): the head was trained"), "\(auto.err)")

        // An ensemble runs the backbone once, so its heads must have been trained on one path.
        let f32Cache = folder.appendingPathComponent("f32").path
        let f32Extract = try runSidecar(["extract", "--dataset", Self.dataset, "--out", f32Cache, "--compute", "f32", "--dtype", "f32"] + Self.allLayers)
        #expect(f32Extract.status == 0, "\(f32Extract.err)")
        let f32Head = folder.appendingPathComponent("f32-head").path
        let f32Fit = try runSidecar(["fit", "--cache", f32Cache, "--head", "linear", "--epochs", "1", "--batch-size", "8", "--out", f32Head])
        #expect(f32Fit.status == 0, "\(f32Fit.err)")
        let mixed = try runSidecar(["predict", "--head", head, "--head", f32Head, "--input", test])
        #expect(mixed.status != 0)
        #expect(mixed.err.contains("\(f32Head) was trained on activations computed in f32, \(head) in bf16; "
                                   + "the heads of one prediction share one run of the backbone (or name one with --compute and --force)"),
                "\(mixed.err)")
        let forced = try runSidecar(["predict", "--head", head, "--head", f32Head, "--input", test, "--compute", "f32", "--force"])
        #expect(forced.status == 0 && forced.out.split(separator: "\n").count == 10, "\(forced.err)")
    }

    /// The shards of a job array plan alone, each on its node: a node without bf16 products
    /// (simulated) must split the sweep as one with them does, though it would train the
    /// consolidator in f32 (its estimates had followed the CPU, and the shards overlapped). A
    /// trial asking for bf16 there fails alone; the rest of its pass trains.
    @Test(.enabled(if: OneDNN.hasBF16Instructions, "needs a CPU with bf16 instructions to simulate one without"))
    func sweepShardsAreTheSameOnCPUsWithAndWithoutBF16() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: folder) }
        let cache = folder.appendingPathComponent("cache").path
        let extract = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--tokens", "all", "--layers", "5,6",
                                      "--lst-reductions", "none", "--top-blocks", "1"])
        #expect(extract.status == 0, "\(extract.err)")
        let spec = folder.appendingPathComponent("sweep.toml").path
        // The MLP's pass is estimated between the consolidator's in bf16 and in f32, so the
        // longest-first partition would order them otherwise on the two CPUs.
        try Data("""
            [base.training]
            epochs = 500
            [[grid]]
            head = "consolidator"
            [grid.training]
            seed = [0, 1, 2]
            [[grid]]
            head = "mlp"
            [grid.set]
            hidden = [8192]
            [grid.training]
            epochs = 1300
            """.utf8).write(to: URL(fileURLWithPath: spec))
        var without = ProcessInfo.processInfo.environment
        without["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        func passes(_ shard: String, _ environment: [String: String]? = nil) throws -> [String] {
            let run = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", folder.appendingPathComponent("r").path,
                                      "--dry-run", "--shard", shard], environment: environment)
            #expect(run.status == 0, "\(run.err)")
            return run.out.split(separator: "\n").filter { $0.hasPrefix("  pass ") }.map { String($0.prefix(19)) }
        }
        for shard in ["0/2", "1/2"] {
            let native = try passes(shard)
            #expect(!native.isEmpty)
            #expect(try passes(shard, without) == native, "shard \(shard)")
        }

        try Data("""
            [base.training]
            epochs = 1
            [[grid]]
            head = "consolidator"
            [grid.set]
            compute = "bf16"
            [[grid]]
            head = "linear"
            """.utf8).write(to: URL(fileURLWithPath: spec))
        let results = folder.appendingPathComponent("run").path
        let run = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results], environment: without)
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains("done: 1 ok, 1 failed"), "\(run.out)")
        let lines = try String(contentsOfFile: results + "/trials-0-of-1.jsonl", encoding: .utf8).split(separator: "\n")
        let failed = lines.filter { $0.contains("\"consolidator\"") }
        #expect(failed.count == 1 && failed[0].contains("config: --set compute=bf16 for head consolidator"), "\(lines)")
    }

    /// ONEDNN_MAX_CPU_ISA caps what oneDNN uses, so an AVX2-only CPU (no bf16 product in oneDNN 2.6)
    /// and an AVX-512 CPU without bf16 instructions (emulated) are both reachable here.
    @Test(.enabled(if: OneDNN.supportsBF16, "needs a CPU with AVX-512 to simulate the others"))
    func bf16OnCPUsWithoutBF16Instructions() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: folder) }
        var environment = ProcessInfo.processInfo.environment
        environment["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        let cache = folder.appendingPathComponent("avx2").path
        let refused = try runSidecar(["extract", "--dataset", Self.dataset, "--out", cache, "--compute", "bf16"] + Self.small, environment: environment)
        #expect(refused.status != 0)
        #expect(refused.err.contains("bf16 needs AVX-512") && refused.err.contains("use --compute f32"), "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: cache))

        environment["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE"
        let emulated = try runSidecar(["extract", "--dataset", Self.dataset, "--out", folder.appendingPathComponent("avx512").path,
                                       "--compute", "bf16"] + Self.small, environment: environment)
        #expect(emulated.status == 0, "\(emulated.err)")
    }
}
