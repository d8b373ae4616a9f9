// Output paths the OS would not take as given: a file output whose name ends in a slash (a
// folder's name), and an output folder that is a symbolic link leading nowhere. Each is refused
// with a message naming it, before anything is written.
import Foundation
import Testing

@Suite struct OutputPathCLITests {
    @Test func aFileOutputEndingInASlashIsRefused() throws {
        let fm = FileManager.default
        let root = temporaryPath("slash-output")
        defer { removeFolder(root) }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let cache = try ReliabilityTests.tinyCache.get()
        let head = root + "/head"
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", head])
        #expect(fit.status == 0, "\(fit.err.suffix(600))")

        for name in ["new/", "new/.", "existing/"] {
            if name == "existing/" { #expect(fm.createFile(atPath: root + "/existing", contents: Data("kept".utf8))) }
            let export = try runSidecar(["export", "--head", head, "--out", root + "/" + name])
            #expect(export.status != 0, "export --out \(name)")
            #expect(export.err.contains("names a folder; give a file to write"), "\(export.err)")
            let npy = try runSidecar(["inspect", cache, "--example", "train:0", "--npy", root + "/" + name])
            #expect(npy.status != 0, "inspect --npy \(name)")
            #expect(npy.err.contains("--npy \(root)/\(name): names a folder"), "\(npy.err)")
        }
        #expect(!fm.fileExists(atPath: root + "/new"))
        #expect(fm.contents(atPath: root + "/existing") == Data("kept".utf8))
    }

    /// "new/../out" with no folder new: made as `mkdir -p` makes it (new, then out beside it), and
    /// kept, so that the path as typed still leads to the head. A fit that fails removes what it
    /// made, and only that: "new/../e" is the existing e, never a folder the fit made.
    @Test func anOutputFolderThroughAMissingFolderAndUp() throws {
        let fm = FileManager.default
        let root = temporaryPath("missing-then-up")
        defer { removeFolder(root) }
        try fm.createDirectory(atPath: root + "/e", withIntermediateDirectories: true)
        let cache = try ReliabilityTests.tinyCache.get()
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", "new/../out"], directory: root)
        #expect(fit.status == 0, "\(fit.err.suffix(600))")
        #expect(fm.fileExists(atPath: root + "/out/head.safetensors"))
        let eval = try runSidecar(["eval", "--cache", cache, "--head", "new/../out"], directory: root)
        #expect(eval.status == 0, "\(eval.err.suffix(600))")
        try fm.removeItem(atPath: root + "/new")
        let failed = try runSidecar(["fit", "--cache", root + "/no-cache", "--head", "linear", "--out", "new/../e/../h"], directory: root)
        #expect(failed.status != 0)
        #expect(try fm.contentsOfDirectory(atPath: root).sorted() == ["e", "out"])
        // Into the existing e through a missing new: new stays beside e's head.
        let intoExisting = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", "new/../e"], directory: root)
        #expect(intoExisting.status == 0, "\(intoExisting.err.suffix(600))")
        #expect(fm.fileExists(atPath: root + "/new/../e/head.safetensors"))
        // A file in the way: refused, and the new it made on the way is removed again.
        try fm.removeItem(atPath: root + "/new")
        fm.createFile(atPath: root + "/file", contents: Data("kept".utf8))
        for out in ["new/../file", "new/../file/x"] {
            let refused = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--out", out], directory: root)
            #expect(refused.status != 0 && refused.err.contains("--out \(out): "), "\(refused.err)")
            #expect(!fm.fileExists(atPath: root + "/new"), "\(out)")
        }
    }

    /// A cache is written only into a new or empty folder, or its own: extraction had put its LMDB
    /// files beside a sweep's results (which sweep and report then refused to read) and into the
    /// dataset's own folder, without a word.
    @Test func aCacheIsNotWrittenIntoAFolderOfOtherFiles() throws {
        let fm = FileManager.default
        let root = temporaryPath("cache-into-folder")
        defer { removeFolder(root) }
        try fm.createDirectory(atPath: root + "/results", withIntermediateDirectories: true)
        #expect(fm.createFile(atPath: root + "/results/trials-0-of-1.jsonl", contents: Data("{}\n".utf8)))
        let dataset = repository.appendingPathComponent("datasets/tiny").path
        let refused = try runSidecar(["extract", "--dataset", dataset, "--out", root + "/results"])
        #expect(refused.status != 0 && refused.err.contains("--out \(root)/results: a folder that holds other files (trials-0-of-1.jsonl) and no cache"),
                "\(refused.err)")
        #expect(try fm.contentsOfDirectory(atPath: root + "/results") == ["trials-0-of-1.jsonl"])
        let merged = try runSidecar(["merge", "--out", root + "/results", try ReliabilityTests.tinyCache.get()])
        #expect(merged.status != 0 && merged.err.contains("a folder that holds other files (trials-0-of-1.jsonl) and no cache"), "\(merged.err)")
    }

    /// Ctrl-C or SIGTERM stops a fit after its current batch, with the shell's status for the
    /// signal, and the folders it made are removed as a failed fit removes them: killed, it had
    /// left them behind, empty.
    @Test(arguments: [SIGINT, SIGTERM])
    func aFitStoppedBySignalLeavesNoFolder(_ sig: Int32) throws {
        let fm = FileManager.default
        let root = temporaryPath("signal-fit")
        defer { removeFolder(root) }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = sidecarBinary()
        process.arguments = ["fit", "--cache", try ReliabilityTests.tinyCache.get(), "--head", "linear", "--epochs", "100000",
                             "--batch-size", "1", "--out", root + "/new/a/b"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Training has started once the head's line is printed.
        var printed = ""
        let deadline = Date().addingTimeInterval(60)
        while !printed.contains("trainable parameters") && process.isRunning && Date() < deadline {
            printed += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        }
        #expect(fm.fileExists(atPath: root + "/new/a/b"))
        kill(process.processIdentifier, sig)
        // A fit that goes on (as one that inherits an ignored SIGINT did) fails the test, not hangs it.
        let watchdog = DispatchWorkItem { kill(process.processIdentifier, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 128 + sig && message.contains("sidecar fit: stopped by a signal; no head was written"),
                "\(process.terminationStatus): \(message)")
        #expect(try fm.contentsOfDirectory(atPath: root) == [])
    }

    /// While a fit of two heads runs, a fit aimed at one of its head folders is refused (it had
    /// taken only its own folder's lock, and the two had mixed their files there), and so is
    /// reading that head (one fit's config and result.json had been paired with the next one's
    /// weights). Once the fit ends, both work.
    @Test func aHeadFolderAFitIsWritingIsNeitherWrittenNorRead() throws {
        let root = temporaryPath("busy-head"), cache = try ReliabilityTests.tinyCache.get()
        defer { removeFolder(root) }
        let first = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--head", "mlp", "--epochs", "1", "--out", root + "/m"])
        #expect(first.status == 0, "\(first.err)")
        let process = Process()
        process.executableURL = sidecarBinary()
        process.arguments = ["fit", "--cache", cache, "--head", "linear", "--head", "mlp", "--epochs", "100000", "--batch-size", "1",
                             "--out", root + "/m"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var printed = ""
        let deadline = Date().addingTimeInterval(60)
        while !printed.contains("mlp: ") && process.isRunning && Date() < deadline {
            printed += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        }
        let nested = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", root + "/m/01-linear"])
        #expect(nested.status != 0 && nested.err.contains("--out \(root)/m/01-linear: another sidecar fit is writing into this folder"),
                "\(nested.err)")
        let read = try runSidecar(["eval", "--cache", cache, "--head", root + "/m/01-linear"])
        #expect(read.status != 0 && read.err.contains("\(root)/m/01-linear: a sidecar fit is writing into this folder; wait for it to end"),
                "\(read.err)")
        kill(process.processIdentifier, SIGTERM)
        let watchdog = DispatchWorkItem { kill(process.processIdentifier, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        #expect(process.terminationStatus == 128 + SIGTERM)
        // The stopped fit leaves the first one's heads as they were.
        let after = try runSidecar(["eval", "--cache", cache, "--head", root + "/m/01-linear"])
        #expect(after.status == 0, "\(after.err)")
    }

    @Test func anOutputFolderThatIsADanglingLinkIsNamed() throws {
        let fm = FileManager.default
        let root = temporaryPath("dangling-output")
        defer { removeFolder(root) }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "/link", withDestinationPath: root + "/nowhere")
        let cache = try ReliabilityTests.tinyCache.get()
        for out in [root + "/link", root + "/link/deeper"] {
            let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", out])
            #expect(fit.status != 0)
            #expect(fit.err.contains("--out \(out): \(root)/link is a symbolic link to \(root)/nowhere, which does not exist"), "\(fit.err)")
            let merge = try runSidecar(["merge", cache, "--out", out])
            #expect(merge.status != 0)
            #expect(merge.err.contains("\(root)/link is a symbolic link to \(root)/nowhere, which does not exist"), "\(merge.err)")
        }
        #expect(!fm.fileExists(atPath: root + "/nowhere"))
    }
}
