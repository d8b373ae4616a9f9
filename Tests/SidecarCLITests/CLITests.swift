// Runs the built `sidecar` binary as a user would and pins what it prints.
import Foundation
import Testing

@Suite struct CLITests {
    @Test func helpListsSubcommands() throws {
        let result = try runSidecar(["--help"])
        #expect(result.status == 0)
        #expect(result.out.contains("USAGE: sidecar <subcommand>"))
        for subcommand in ["extract", "merge", "inspect", "fit", "eval", "predict", "export", "sweep", "report", "heads", "tokenize", "info"] {
            #expect(result.out.contains("\n  \(subcommand) "), "--help should list \(subcommand)")
        }
    }

    /// tokenize tells a file's format by its first line: in a text file, a line that happens to be
    /// a JSON object is text; in JSON Lines, the text is the "text" key's.
    @Test func tokenizeTellsTheFormatByTheFirstLine() throws {
        let text = try runSidecar(["tokenize"], input: Data("a cat\n{\"a\": 1}\n".utf8))
        // The same two texts as JSON Lines.
        let jsonl = try runSidecar(["tokenize"], input: Data(#"{"text": "a cat"}\#n{"text": "{\"a\": 1}"}\#n"#.utf8))
        #expect(text.status == 0 && jsonl.status == 0, "\(text.err)\(jsonl.err)")
        #expect(text.out.split(separator: "\n").count == 2 && text.out == jsonl.out, "\(text.out) against \(jsonl.out)")
        // A plain line in JSON Lines is an error, not text.
        let mixed = try runSidecar(["tokenize"], input: Data(#"{"text": "a cat"}\#na dog\#n"#.utf8))
        #expect(mixed.status != 0 && mixed.err.contains("standard input:2: not a JSON object"), "\(mixed.err)")
    }

    @Test func infoNamesTheLinkedLibraries() throws {
        let result = try runSidecar(["info"])
        #expect(result.status == 0, "\(result.err)")
        for library in ["OpenBLAS", "oneDNN", "LMDB", "zstd"] { #expect(result.out.contains(library)) }
        // A core named in the environment is used, and said to be: it can cost a third of a fit's time.
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = "Haswell"
        let named = try runSidecar(["info"], environment: environment)
        #expect(named.status == 0 && named.out.contains("kernels Haswell (named by OPENBLAS_CORETYPE)"), "\(named.out)")
        environment["OPENBLAS_CORETYPE"] = nil
        let own = try runSidecar(["info"], environment: environment)
        #expect(own.status == 0 && own.out.contains("kernels ") && !own.out.contains("OPENBLAS_CORETYPE"), "\(own.out)")
    }

    /// A low soft open-file limit is raised toward the hard one (with 20, starting python3 to find the
    /// backbone had failed as "cannot run python3"); a hard limit too low to work with is refused
    /// by name (with 8, Foundation had trapped while starting the child process).
    @Test func aLowOpenFileLimitIsRaisedOrRefused() throws {
        func underLimit(_ ulimit: String, _ arguments: [String]) throws -> (status: Int32, err: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit \(ulimit) && exec \"$@\"", "sh", sidecarBinary().path] + arguments
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let data = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("low-files-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let raised = try underLimit("-S -n 20", ["extract", "--dataset", repository.appendingPathComponent("datasets/tiny").path, "--out", cache,
                                                "--layers", "6", "--lst-reductions", "none", "--top-blocks", "0"])
        #expect(raised.status == 0, "\(raised.err)")
        let refused = try underLimit("-n 8", ["info"])
        #expect(refused.status == 1 && refused.err.contains("the open-file limit is 8 (ulimit -n); sidecar needs at least 256"), "\(refused.err)")
    }

    @Test func unknownSubcommandFailsWithAMessage() throws {
        let result = try runSidecar(["frobnicate"])
        #expect(result.status != 0)
        #expect(result.err.contains("frobnicate"))
    }
}

@Suite struct ExtractStreamFlagTests {
    @Test func streamsAndBlobFlagsReachTheManifest() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("cli-streams-\(UUID().uuidString)").path
        defer { for path in [cache, cache + "-bad"] { removeFolder(path) } }
        let dataset = repository.appendingPathComponent("datasets/tiny").path
        let result = try runSidecar(["extract", "--dataset", dataset, "--out", cache, "--layers", "0,1", "--tokens", "cls",
                                     "--streams", "attn,mlp", "--lst-reductions", "4,8", "--top-blocks", "1"])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.err.contains("streams attn,mlp; blobs lst.r4, lst.r8, top_blocks"), "\(result.err)")
        let inspected = try runSidecar(["inspect", cache, "--json", "--verify"])
        #expect(inspected.status == 0, "\(inspected.err)")
        let report = try JSONSerialization.jsonObject(with: Data(inspected.out.utf8)) as! [String: Any]
        let settings = (report["manifest"] as! [String: Any])["settings"] as! [String: Any]
        #expect(settings["streams"] as? [String] == ["attn", "mlp"])
        #expect(settings["blobs"] as? [String] == ["lst.r4", "lst.r8", "top_blocks"])
        #expect(settings["maxTokens"] as? Int == 128 && settings["pooling"] as? String == "mean")
        #expect((report["damaged"] as? [Any])?.isEmpty == true)

        let bad = try runSidecar(["extract", "--dataset", dataset, "--out", cache + "-bad", "--streams", "attn,ffn"])
        #expect(bad.status != 0 && bad.err.contains("--streams \"attn,ffn\": \"ffn\" is not a stream"), "\(bad.err)")
        let help = try runSidecar(["extract", "--help"])
        for flag in ["--streams", "--lst-reductions", "--top-blocks"] { #expect(help.out.contains(flag), "\(flag)") }
    }
}
