// Paths typed through a link and then "..": sidecar opens and writes what the OS opens with the
// same string (the link's target's parent), not the folder the text names without the link.
// Real folders and links around the tiny cache; each command runs in that folder with relative paths.
import Foundation
import Testing

@Suite struct LinkedPathCLITests {
    /// A folder where `sub/link` → `elsewhere/deep`, so "sub/link/../NAME" is `elsewhere/NAME` to
    /// the OS and `sub/NAME` as text; `elsewhere/cache` is a link to the tiny cache.
    static func linkedFolders(_ name: String) throws -> String {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: temporaryPath(name)).resolvingSymlinksInPath().path
        try fm.createDirectory(atPath: root + "/elsewhere/deep", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "/sub/link", withDestinationPath: "../elsewhere/deep")
        try fm.createSymbolicLink(atPath: root + "/elsewhere/cache", withDestinationPath: try ReliabilityTests.tinyCache.get())
        return root
    }

    @Test func fitWritesItsHeadsWhereTheOSPutsThem() throws {
        let fm = FileManager.default
        let root = try Self.linkedFolders("linked-fit")
        defer { removeFolder(root) }
        let one = try runSidecar(["fit", "--cache", "sub/link/../cache", "--head", "linear", "--epochs", "1", "--out", "sub/link/../out"],
                                 directory: root)
        #expect(one.status == 0, "\(one.err.suffix(600))")
        #expect(fm.fileExists(atPath: root + "/elsewhere/out/result.json") && fm.fileExists(atPath: root + "/elsewhere/out/head.safetensors"))
        #expect(!fm.fileExists(atPath: root + "/sub/out"))
        // The cache it records is the one it opened, so that export and eval from elsewhere find it.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/elsewhere/out/config.json"))) as? [String: Any]
        let cache = URL(fileURLWithPath: try ReliabilityTests.tinyCache.get()).resolvingSymlinksInPath().path
        #expect(config?["cache"] as? String == cache, "\(config?["cache"] ?? "none")")

        // A fit of two heads into the same folder replaces the earlier head's files there.
        let two = try runSidecar(["fit", "--cache", "sub/link/../cache", "--head", "linear", "--head", "mlp", "--epochs", "1",
                                  "--out", "sub/link/../out"], directory: root)
        #expect(two.status == 0, "\(two.err.suffix(600))")
        #expect(fm.fileExists(atPath: root + "/elsewhere/out/01-linear/result.json") && fm.fileExists(atPath: root + "/elsewhere/out/02-mlp/result.json"))
        #expect(!fm.fileExists(atPath: root + "/elsewhere/out/result.json") && !fm.fileExists(atPath: root + "/elsewhere/out/config.json"))
    }

    @Test func inspectReadsTheCacheAndWritesTheArrayWhereTheOSFindsThem() throws {
        let fm = FileManager.default
        let root = try Self.linkedFolders("linked-inspect")
        defer { removeFolder(root) }
        let report = try runSidecar(["inspect", "sub/link/../cache"], directory: root)
        #expect(report.status == 0, "\(report.err)")
        let npy = try runSidecar(["inspect", "sub/link/../cache", "--example", "train:0", "--layer", "5", "--npy", "sub/link/../first.npy"],
                                 directory: root)
        #expect(npy.status == 0, "\(npy.err)")
        #expect(fm.fileExists(atPath: root + "/elsewhere/first.npy"))
        #expect(!fm.fileExists(atPath: root + "/sub/first.npy"))
    }
}
