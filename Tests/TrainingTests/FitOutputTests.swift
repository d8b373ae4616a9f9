// FitOutput's handling of a folder an earlier fit wrote into.
import Foundation
import Testing
import Training

@Suite struct FitOutputTests {
    /// Before a fit writes its heads, every earlier head in the folder loses its result.json: a fit
    /// stopped half-way through writing leaves nothing that reads as complete.
    @Test func earlierHeadsAreMarkedIncompleteBeforeNewOnesAreWritten() throws {
        let fm = FileManager.default
        let out = fm.temporaryDirectory.appendingPathComponent("invalidated-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: out) }
        for folder in [out, out + "/01-linear", out + "/02-mlp", out + "/notes"] {
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for file in ["result.json", "config.json"] { try Data("{}".utf8).write(to: URL(fileURLWithPath: folder + "/" + file)) }
        }
        try FitOutput.invalidateEarlierOutputs(in: out)
        for folder in [out, out + "/01-linear", out + "/02-mlp"] {
            #expect(!fm.fileExists(atPath: folder + "/result.json") && fm.fileExists(atPath: folder + "/config.json"), "\(folder)")
        }
        // Only what a fit writes: a folder of the user's own keeps its files.
        #expect(fm.fileExists(atPath: out + "/notes/result.json"))
    }

    /// A fit of several heads into a folder that held one head removes that head's files, which
    /// by then have no result.json; a config.json of the user's own, without a head's log.tsv, stays.
    @Test func anEarlierSingleHeadIsRemovedButNotAUsersConfig() throws {
        let fm = FileManager.default
        let out = fm.temporaryDirectory.appendingPathComponent("stale-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: out) }
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: out + "/config.json"))
        try FitOutput.removeStaleOutputs(in: out, keeping: [out + "/01-linear", out + "/02-mlp"])
        #expect(fm.fileExists(atPath: out + "/config.json"))
        for file in ["log.tsv", "head.safetensors"] { try Data("x".utf8).write(to: URL(fileURLWithPath: out + "/" + file)) }
        try FitOutput.removeStaleOutputs(in: out, keeping: [out + "/01-linear", out + "/02-mlp"])
        #expect(try fm.contentsOfDirectory(atPath: out).isEmpty)
    }

    /// An earlier fit's head folders that the new fit does not replace lose the files a fit
    /// writes, and go only when nothing else is left in them: a note of the user's own in one
    /// stays, and so does an `NN-name` folder whose config.json no fit wrote. Whole folders had
    /// gone, with what the user kept in them.
    @Test func staleHeadFoldersLoseOnlyTheFilesAFitWrites() throws {
        let fm = FileManager.default
        let out = fm.temporaryDirectory.appendingPathComponent("stale-folders-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: out) }
        func write(_ path: String) throws {
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
        }
        for folder in ["01-linear", "02-mlp", "03-losa"] {
            for file in ["config.json", "log.tsv", "head.safetensors"] { try write(out + "/" + folder + "/" + file) }
        }
        try write(out + "/02-mlp/notes.txt")
        try write(out + "/99-settings/config.json")
        try write(out + "/99-settings/data.csv")
        try FitOutput.removeStaleOutputs(in: out, keeping: [out + "/01-linear"])
        #expect(fm.fileExists(atPath: out + "/01-linear/head.safetensors"))
        #expect(try fm.contentsOfDirectory(atPath: out + "/02-mlp") == ["notes.txt"])
        #expect(!fm.fileExists(atPath: out + "/03-losa"))
        #expect(try Set(fm.contentsOfDirectory(atPath: out + "/99-settings")) == ["config.json", "data.csv"])
    }
}
