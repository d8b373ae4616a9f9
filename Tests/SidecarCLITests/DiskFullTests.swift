// Extraction onto a file system that fills up (a 3 MB tmpfs the test mounts): it stops with an
// error naming the cache folder and the full disk, and once the file system is grown the same
// command resumes to a cache equal to one extracted without interruption. Needs root (mount);
// skipped otherwise. XCTest rather than swift-testing for XCTSkip: a skip must read as a skip.
import Foundation
import XCTest

final class DiskFullTests: XCTestCase {
    func testAFullDiskStopsExtractionClearlyAndItResumes() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("disk-full-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mounted = try shell(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint])
        guard mounted.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mounted.output)") }
        defer { _ = try? shell(["umount", "-l", mountPoint]) }

        let dataset = try makeDataset(count: 160)
        defer { try? FileManager.default.removeItem(atPath: dataset) }
        let arguments = ["extract", "--dataset", dataset, "--layers", "all", "--dtype", "f32", "--chunk-size", "8",
                         "--lst-reductions", "none", "--top-blocks", "0"]
        let cache = mountPoint + "/cache"
        // Room for the lock file (nine pages) but not for data.mdb's two meta pages: LMDB leaves a
        // short data.mdb, which is the disk, not a damaged cache to restore from a copy.
        XCTAssertEqual(try shell(["fallocate", "-l", "40960", mountPoint + "/gap"]).status, 0)
        _ = try shell(["dd", "if=/dev/zero", "of=\(mountPoint)/fill", "bs=4k"])
        try FileManager.default.removeItem(atPath: mountPoint + "/gap")
        let short = try runSidecar(arguments + ["--out", mountPoint + "/short"])
        XCTAssertEqual(short.status, 1, short.err)
        XCTAssertTrue(short.err.contains("no space left on device while creating the cache"), short.err)
        XCTAssertFalse(short.err.contains("truncated"), short.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: mountPoint + "/short/lock.mdb"), "the lock file did not fit: nothing tested")
        for leftover in ["fill", "short"] { try FileManager.default.removeItem(atPath: mountPoint + "/" + leftover) }

        let full = try runSidecar(arguments + ["--out", cache])
        XCTAssertNotEqual(full.status, 0, "the extraction fit in 3 MB; make the dataset larger")
        XCTAssertTrue(full.err.contains("\(cache): no space left on device while writing train records "), full.err)
        XCTAssertTrue(full.err.contains("run the same command again to resume"), full.err)
        // What was written is a consistent, incomplete cache.
        let partial = try runSidecar(["inspect", cache, "--json", "--verify"])
        XCTAssertEqual(partial.status, 1, "an incomplete cache passed --verify")
        let report = try JSONSerialization.jsonObject(with: Data(partial.out.utf8)) as! [String: Any]
        let train = (report["splits"] as! [[String: Any]])[0]
        XCTAssertEqual(train["complete"] as? Bool, false)
        XCTAssertGreaterThan(train["records"] as? Int ?? 0, 0)

        // With no byte left, a new cache's lock file cannot be backed: an error, not LMDB's SIGBUS
        // on the first write through its map. So for a reader of a cache copied without one.
        _ = try shell(["dd", "if=/dev/zero", "of=\(mountPoint)/fill", "bs=4k"])
        let none = try runSidecar(arguments + ["--out", mountPoint + "/another"])
        XCTAssertEqual(none.status, 1, none.err)
        XCTAssertTrue(none.err.contains("no space left on device while creating the cache"), none.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mountPoint + "/another/lock.mdb"), "an unbacked lock file was left")
        try FileManager.default.removeItem(atPath: cache + "/lock.mdb")
        _ = try shell(["dd", "if=/dev/zero", "of=\(mountPoint)/fill-again", "bs=4k"])
        let reader = try runSidecar(["inspect", cache])
        XCTAssertEqual(reader.status, 1, reader.err)
        XCTAssertTrue(reader.err.contains("allocating the lock file") && reader.err.contains("No space left on device"), reader.err)
        for fill in ["fill", "fill-again"] { try FileManager.default.removeItem(atPath: mountPoint + "/" + fill) }

        // Space freed: the same command finishes it, and it equals an uninterrupted extraction.
        XCTAssertEqual(try shell(["mount", "-o", "remount,size=256m", mountPoint]).status, 0)
        let resumed = try runSidecar(arguments + ["--out", cache])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        let reference = FileManager.default.temporaryDirectory.appendingPathComponent("disk-full-ref-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: reference) }
        let whole = try runSidecar(arguments + ["--out", reference])
        XCTAssertEqual(whole.status, 0, whole.err)
        XCTAssertEqual(try digests(cache), try digests(reference))
    }

    /// A fit of two heads whose second does not fit on the disk: the first had been left with its
    /// result.json, reading as finished. A sweep had recorded such trials as failed and exited 0.
    func testHeadsThatCannotBeWrittenLeaveNoHeadAndFailTheCommand() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("disk-full-heads-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        // A linear probe's files fit; an MLP 1024 wide (1.6 MB of weights) does not.
        let mounted = try shell(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", mountPoint])
        guard mounted.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mounted.output)") }
        defer { _ = try? shell(["umount", "-l", mountPoint]) }
        let cache = try ReliabilityTests.tinyCache.get()

        let out = mountPoint + "/heads"
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "linear", "--head", "mlp", "--set", "hidden=1024", "--epochs", "1", "--out", out])
        XCTAssertEqual(fit.status, 1, fit.err)
        XCTAssertTrue(fit.err.contains("\(out)/02-mlp/head.safetensors: cannot write"), fit.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a fit that failed left \(out): \((try? FileManager.default.subpathsOfDirectory(atPath: out)) ?? [])")

        let spec = FileManager.default.temporaryDirectory.appendingPathComponent("disk-full-\(UUID().uuidString).toml").path
        defer { try? FileManager.default.removeItem(atPath: spec) }
        try Data("[base.training]\nepochs = 1\n[[grid]]\nhead = \"mlp\"\n[grid.set]\nhidden = [8, 1024]\n".utf8).write(to: URL(fileURLWithPath: spec))
        let results = mountPoint + "/results"
        let sweep = try runSidecar(["sweep", "--spec", spec, "--cache", cache, "--results", results])
        XCTAssertEqual(sweep.status, 1, sweep.out + sweep.err)
        XCTAssertTrue(sweep.err.contains("1 trained head(s) could not be written"), sweep.err)
        let trials = (try? FileManager.default.contentsOfDirectory(atPath: results + "/trials")) ?? []
        XCTAssertEqual(trials.count, 1, "only the head that was written keeps a folder: \(trials)")
    }

    private func shell(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
