// URL(userPath:) names what the OS opens with the same string: "link/.." is the link's target's
// parent, where URL(fileURLWithPath:) had dropped "link/.." as text. Real folders and a real link
// in a temporary folder; the relative paths are taken from the current folder without changing it
// (the tests of a suite run at once).
import Foundation
import Testing
import TensorCore

@Suite struct UserPathTests {
    /// A folder with `sub/link` → `elsewhere/deep`, a `cache` beside the link's target (what the OS
    /// opens for "sub/link/../cache") and a decoy `sub/cache` (what the text says).
    static func linkedFolders() throws -> String {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("user-path-\(UUID().uuidString)").resolvingSymlinksInPath().path
        for folder in ["elsewhere/deep", "elsewhere/cache", "sub/cache"] {
            try fm.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        #expect(fm.createFile(atPath: root + "/elsewhere/cache/REAL", contents: Data()))
        #expect(fm.createFile(atPath: root + "/sub/cache/DECOY", contents: Data()))
        try fm.createSymbolicLink(atPath: root + "/sub/link", withDestinationPath: "../elsewhere/deep")
        return root
    }

    /// `absolute` as a path relative to the current folder: up to the root, then down.
    static func relative(_ absolute: String) -> String {
        let depth = FileManager.default.currentDirectoryPath.split(separator: "/").count
        return Array(repeating: "..", count: depth).joined(separator: "/") + absolute
    }

    @Test func aRelativePathThroughALinkThenUpOpensWhatTheOSOpens() throws {
        let root = try Self.linkedFolders()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let typed = Self.relative(root + "/sub/link/../cache")
        let url = URL(userPath: typed)
        #expect(FileManager.default.fileExists(atPath: url.appendingPathComponent("REAL").path), "\(url.path)")
        #expect(!FileManager.default.fileExists(atPath: url.appendingPathComponent("DECOY").path), "\(url.path)")
        let real = try #require(realpath(typed, nil))
        defer { free(real) }
        #expect(url.resolvingSymlinksInPath().path == String(cString: real))
        #expect(url.resolvingSymlinksInPath().path == root + "/elsewhere/cache")
        // Read through the URL, the file is the one the OS finds with the typed string.
        try Data("through the link".utf8).write(to: URL(fileURLWithPath: root + "/elsewhere/cache/REAL"))
        #expect(try Data(contentsOf: url.appendingPathComponent("REAL")) == Data("through the link".utf8))
    }

    @Test func onlyDotsAndRepeatedSlashesGoAsText() throws {
        let cwd = FileManager.default.currentDirectoryPath
        #expect(URL(userPath: "a/./b//c/").path == cwd + "/a/b/c")
        #expect(URL(userPath: "./a/../b").path == cwd + "/a/../b")
        #expect(URL(userPath: "/x//./y/../z").path == "/x/y/../z")
        #expect(URL(userPath: "").path == cwd)
    }
}
