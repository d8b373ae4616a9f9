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
