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

    /// "new/../out" with no folder new: made as the OS would make it, mkdir -p style (new, then
    /// out beside it), and new, left empty, is removed again.
    @Test func anOutputFolderThroughAMissingFolderAndUp() throws {
        let fm = FileManager.default
        let root = temporaryPath("missing-then-up")
        defer { removeFolder(root) }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let cache = try ReliabilityTests.tinyCache.get()
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", "new/../out"], directory: root)
        #expect(fit.status == 0, "\(fit.err.suffix(600))")
        #expect(fm.fileExists(atPath: root + "/out/head.safetensors"))
        #expect(!fm.fileExists(atPath: root + "/new"))
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
