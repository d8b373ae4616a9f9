// A sweep's --results and the report's --out typed through a link and then "..": the results and
// the page are where the OS puts them (beside the link's target), not in the folder the text names
// without the link. Real folders and a real link; the commands run there with relative paths.
import Foundation
import Testing

@Suite struct SweepLinkedPathTests {
    @Test func resultsAndReportGoWhereTheOSPutsThem() throws {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: scratchPath("linked")).resolvingSymlinksInPath().path
        defer { try? fm.removeItem(atPath: root) }
        // "sub/link/../NAME" is elsewhere/NAME to the OS, sub/NAME as text.
        try fm.createDirectory(atPath: root + "/elsewhere/deep", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "/sub/link", withDestinationPath: "../elsewhere/deep")
        let spec = try writeSpec("[base.training]\nepochs = 1\nbatch_size = 16\n[[grid]]\nhead = \"linear\"\n")
        defer { try? fm.removeItem(atPath: spec) }
        let cache = try sharedCache.get()

        let sweep = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", "sub/link/../results"], directory: root)
        #expect(sweep.status == 0, "\(sweep.err)")
        #expect(fm.fileExists(atPath: root + "/elsewhere/results/trials-0-of-1.jsonl"))
        #expect(!fm.fileExists(atPath: root + "/sub/results"))
        #expect(sweep.out.contains("results in \(root)/sub/link/../results/trials-0-of-1.jsonl"), "\(sweep.out)")

        let page = try runSidecar(["report", "--results", "sub/link/../results"], directory: root)
        #expect(page.status == 0, "\(page.err)")
        #expect(fm.fileExists(atPath: root + "/elsewhere/results/report.html"))
        let elsewhere = try runSidecar(["report", "--results", "sub/link/../results", "--out", "sub/link/../report.html"], directory: root)
        #expect(elsewhere.status == 0, "\(elsewhere.err)")
        #expect(fm.fileExists(atPath: root + "/elsewhere/report.html"))
        #expect(!fm.fileExists(atPath: root + "/sub/report.html"))

        // A job script runs in another folder: its paths keep the ".." for the OS to resolve there.
        let job = try runSidecar(["sweep", "--spec", spec, "--cache", "sub/link/../cache", "--results", "sub/link/../results", "--emit", "slurm"],
                                 directory: root)
        #expect(job.status == 0, "\(job.err)")
        #expect(job.out.contains("\(root)/sub/link/../results") && job.out.contains("\(root)/sub/link/../cache"), "\(job.out)")
    }
}
