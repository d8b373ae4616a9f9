// A sweep refused before it runs leaves no results folder behind, and a results folder it cannot
// make (a link that leads nowhere) or must not use (a cache's own folder) is named in a one-line
// error, not a file system error's dump.
import Foundation
import Testing

@Suite struct SweepRefusalLeavesNothingTests {
    @Test func aRefusedSweepMakesNoResultsFolder() throws {
        let fm = FileManager.default
        let root = scratchPath("refused")
        defer { try? fm.removeItem(atPath: root) }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let spec = try writeSpec("[base.training]\nepochs = 1\n[[grid]]\nhead = \"linear\"\n")
        defer { try? fm.removeItem(atPath: spec) }

        let noCache = try runSidecar(["sweep", "--spec", spec, "--cache", root + "/no-cache", "--results", root + "/results/a"])
        #expect(noCache.status != 0)
        #expect(!fm.fileExists(atPath: root + "/results"), "a refused sweep left \(root)/results")

        try fm.createSymbolicLink(atPath: root + "/dangling", withDestinationPath: root + "/nowhere")
        let cache = try sharedCache.get()
        let dangling = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", root + "/dangling"])
        #expect(dangling.status != 0)
        #expect(dangling.err.contains("\(root)/dangling is a symbolic link to \(root)/nowhere, which does not exist"), "\(dangling.err)")
        #expect(!dangling.err.contains("NSCocoaErrorDomain"), "\(dangling.err)")
        #expect(!fm.fileExists(atPath: root + "/nowhere"))

        let intoCache = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", cache])
        #expect(intoCache.status != 0)
        #expect(intoCache.err.contains("is an activation cache"), "\(intoCache.err)")
        #expect(!fm.fileExists(atPath: cache + "/trials"))
    }

    /// "new/../r" with no folder new: made as `mkdir -p` makes it (new, then r beside it), and
    /// kept, so that the path as typed still leads to the results (report, a rerun).
    @Test func aFolderMadeOnTheWayToTheResultsStays() throws {
        let fm = FileManager.default
        let root = scratchPath("on-the-way")
        defer { try? fm.removeItem(atPath: root) }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let spec = try writeSpec("[base.training]\nepochs = 1\n[[grid]]\nhead = \"linear\"\n")
        defer { try? fm.removeItem(atPath: spec) }
        let sweep = try runSidecar(["sweep", "--spec", spec, "--cache", try sharedCache.get(), "--results", "new/../r"], directory: root)
        #expect(sweep.status == 0, "\(sweep.err.suffix(600))")
        #expect(try fm.contentsOfDirectory(atPath: root + "/r").contains { $0.hasSuffix(".jsonl") })
        let report = try runSidecar(["report", "--results", "new/../r"], directory: root)
        #expect(report.status == 0, "\(report.err.suffix(600))")
    }
}
