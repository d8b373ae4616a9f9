// `sidecar report` run as a user would: the table, --json, the page, and the errors.
import Foundation
import XCTest
@testable import Sweep

final class ReportCLITests: XCTestCase {
    func testReportPrintsTheTableAndWritesThePage() throws {
        let folder = try temporaryFolder("cli")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (ids, _) = try writeRealisticSweep(to: folder)
        let result = try runSidecar(["report", "--results", folder.path])
        XCTAssertEqual(result.status, 0, result.err)
        for id in ids { XCTAssertTrue(result.out.contains(id), id) }
        XCTAssertTrue(result.err.contains("trials-2-of-3.jsonl:"), "the torn line's warning: \(result.err)")
        let page = folder.appendingPathComponent("report.html").path
        XCTAssertTrue(result.out.contains("39 trials (36 ok, 3 failed) from 3 files; wrote \(page)"), result.out)
        let html = try String(contentsOfFile: page, encoding: .utf8)
        XCTAssertTrue(html.hasSuffix("</html>\n"))

        let out = folder.appendingPathComponent("elsewhere.html").path
        let byTest = try runSidecar(["report", "--results", folder.path, "--out", out, "--metric", "test_accuracy", "--top", "2"])
        XCTAssertEqual(byTest.status, 0, byTest.err)
        let other = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertTrue(other.contains("Learning curves of the best 2"))
        XCTAssertTrue(other.contains("trials ranked by test accuracy"))

        let noCurves = try runSidecar(["report", "--results", folder.path, "--out", out, "--top", "0"])
        XCTAssertEqual(noCurves.status, 0, noCurves.err)
        XCTAssertFalse(try String(contentsOfFile: out, encoding: .utf8).contains("Learning curves"))
    }

    func testJSONPrintsTheMergedTrialsBestFirst() throws {
        let folder = try temporaryFolder("cli-json")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (ids, failed) = try writeRealisticSweep(to: folder)
        let result = try runSidecar(["report", "--results", folder.path, "--json"])
        XCTAssertEqual(result.status, 0, result.err)
        let array = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [[String: Any]])
        XCTAssertEqual(array.count, ids.count)
        XCTAssertEqual(Set(array.compactMap { $0["trial"] as? String }), Set(ids))
        XCTAssertEqual(array.suffix(failed.count).compactMap { $0["status"] as? String }, Array(repeating: "failed", count: failed.count))
        let accuracies = array.compactMap { ($0["metrics"] as? [String: Any])?["val_accuracy"] as? Double }
        XCTAssertEqual(accuracies, accuracies.sorted(by: >))
        XCTAssertNotNil(array[0]["history"] as? [Any], "every key of the line is passed through")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("report.html").path),
                       "--json without --out writes no page")
    }

    func testBySettingRanksSettingsOverTheirSeeds() throws {
        let folder = try temporaryFolder("cli-settings")
        defer { try? FileManager.default.removeItem(at: folder) }
        func seeded(_ id: String, lr: Double, seed: Int, val: Double) -> [String: Any] {
            trialObject(id, val: val, test: val - 0.01, extra: ["training": ["epochs": 4, "lr": lr, "batch_size": 32, "seed": seed]])
        }
        let lines = [seeded("s0", lr: 0.001, seed: 0, val: 0.81), seeded("s1", lr: 0.001, seed: 1, val: 0.83),
                     seeded("t0", lr: 0.003, seed: 0, val: 0.85), seeded("t1", lr: 0.003, seed: 1, val: 0.75)]
        try (lines.map(resultLine).joined(separator: "\n") + "\n").write(to: folder.appendingPathComponent("trials-0-of-1.jsonl"),
                                                                         atomically: true, encoding: .utf8)
        let table = try runSidecar(["report", "--results", folder.path, "--by-setting"])
        XCTAssertEqual(table.status, 0, table.err)
        let rows = table.out.split(separator: "\n").map(String.init)
        // t0 is the best trial, but lr 0.003's mean (0.80) is below lr 0.001's (0.82).
        XCTAssertTrue(rows[1].contains("lr=0.001") && rows[1].contains("0,1") && rows[1].contains("0.8200 ± 0.0141"), table.out)
        XCTAssertTrue(rows[2].contains("lr=0.003") && rows[2].contains("0.8000 ± 0.0707"), table.out)
        let html = try String(contentsOfFile: folder.appendingPathComponent("report.html").path, encoding: .utf8)
        XCTAssertTrue(html.contains("Settings over seeds") && html.contains("0.8200 ± 0.0141"))

        let json = try runSidecar(["report", "--results", folder.path, "--by-setting", "--json"])
        XCTAssertEqual(json.status, 0, json.err)
        let settings = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [[String: Any]])
        XCTAssertEqual(settings.map { $0["trials"] as? [String] }, [["s0", "s1"], ["t0", "t1"]])
        let spread = try XCTUnwrap(settings[0]["val_accuracy"] as? [String: Double])
        XCTAssertEqual(try XCTUnwrap(spread["mean"]), 0.82, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(spread["std"]), 0.02.squareRoot() / 10, accuracy: 1e-12)
        XCTAssertNil((settings[0]["training"] as? [String: Any])?["seed"])
    }

    func testErrorsAreMessagesAndAFailingExit() throws {
        let folder = try temporaryFolder("cli-errors")
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = try runSidecar(["report", "--results", folder.appendingPathComponent("none").path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("does not exist"), missing.err)
        let empty = try runSidecar(["report", "--results", folder.path])
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertTrue(empty.err.contains("holds no results files"), empty.err)
        try Data().write(to: folder.appendingPathComponent("trials-0-of-1.jsonl"))
        let noTrials = try runSidecar(["report", "--results", folder.path])
        XCTAssertNotEqual(noTrials.status, 0)
        XCTAssertTrue(noTrials.err.contains("no trials"), noTrials.err)
        try Data("{\"trial\": 1}\n{}\n".utf8).write(to: folder.appendingPathComponent("trials-0-of-1.jsonl"))
        let bad = try runSidecar(["report", "--results", folder.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("trials-0-of-1.jsonl:1: trial: expected a string"), bad.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("report.html").path))
        let badFlag = try runSidecar(["report", "--results", folder.path, "--metric", "f1"])
        XCTAssertNotEqual(badFlag.status, 0)
        XCTAssertTrue(badFlag.err.contains("--metric"), badFlag.err)

        // Two caches' trials in one folder: one id's result would hide the other's.
        let cacheA = trialObject("a1", val: 0.8, test: 0.8, extra: ["cache_manifest_hash": "aaaa"])
        let cacheB = trialObject("a1", val: 0.7, test: 0.7, extra: ["cache_manifest_hash": "bbbb"])
        try (resultLine(cacheA) + "\n").write(to: folder.appendingPathComponent("trials-0-of-1.jsonl"), atomically: true, encoding: .utf8)
        try (resultLine(cacheB) + "\n").write(to: folder.appendingPathComponent("trials-0-of-2.jsonl"), atomically: true, encoding: .utf8)
        let mixed = try runSidecar(["report", "--results", folder.path])
        XCTAssertNotEqual(mixed.status, 0)
        XCTAssertTrue(mixed.err.contains("holds trials run on different caches (manifest aaaa in ") && mixed.err.contains("bbbb in "), mixed.err)

        // A cache's folder is no results folder: the error had blamed an --out never given.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("trials-0-of-2.jsonl"))
        try Data().write(to: folder.appendingPathComponent("data.mdb"))
        let cache = try runSidecar(["report", "--results", folder.path])
        XCTAssertNotEqual(cache.status, 0)
        XCTAssertTrue(cache.err.contains("--results \(folder.path): is an activation cache (it holds data.mdb), not a sweep's results folder"), cache.err)
    }

    /// Results lines are input: their strings reach neither the terminal's control sequences nor a
    /// reordering of the page, and --out writes only regular files.
    func testOddStringsAndOutputPaths() throws {
        let folder = try temporaryFolder("cli-odd")
        defer { try? FileManager.default.removeItem(at: folder) }
        let odd = "\u{1B}[31mred\u{07}\r\nnext \u{202E}reversed"
        let lines = [trialObject("o1", val: 0.8, test: 0.8, extra: ["training": ["epochs": 4, "lr": odd, "batch_size": 32, "seed": 0]]),
                     trialObject("o2", val: 0.7, test: 0.7, extra: ["training": ["epochs": 4, "lr": 0.1, "batch_size": 32, "seed": 0]])]
        try (lines.map(resultLine).joined(separator: "\n") + "\n").write(to: folder.appendingPathComponent("trials-0-of-1.jsonl"),
                                                                         atomically: true, encoding: .utf8)
        let table = try runSidecar(["report", "--results", folder.path])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssertFalse(table.out.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\u{07}" || $0 == "\r" || $0 == "\u{202E}" }, table.out)
        XCTAssertEqual(table.out.split(separator: "\n").filter { $0.contains("o1") }.count, 1, "a value split its row: \(table.out)")
        let html = try String(contentsOfFile: folder.appendingPathComponent("report.html").path, encoding: .utf8)
        XCTAssertFalse(html.unicodeScalars.contains("\u{202E}"))

        // A FIFO is refused, not replaced by a file; a link is written through to its target.
        let fifo = folder.appendingPathComponent("fifo.html").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let refused = try runSidecar(["report", "--results", folder.path, "--out", fifo])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.err.contains("is not a regular file"), refused.err)
        var status = stat()
        XCTAssertEqual(lstat(fifo, &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFIFO)
        let target = folder.appendingPathComponent("target.html").path, link = folder.appendingPathComponent("link.html").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let through = try runSidecar(["report", "--results", folder.path, "--out", link])
        XCTAssertEqual(through.status, 0, through.err)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), target)
        XCTAssertTrue(try String(contentsOfFile: target, encoding: .utf8).hasSuffix("</html>\n"))

        // The results files are refused as --out, directly, through a link, or as a new .jsonl
        // the next report would read; the trials are untouched and nothing is printed.
        let trials = folder.appendingPathComponent("trials-0-of-1.jsonl").path
        let before = try Data(contentsOf: URL(fileURLWithPath: trials))
        let trialsLink = folder.deletingLastPathComponent().appendingPathComponent("\(folder.lastPathComponent)-trials-link.html").path
        try FileManager.default.createSymbolicLink(atPath: trialsLink, withDestinationPath: trials)
        defer { try? FileManager.default.removeItem(atPath: trialsLink) }
        // So is a trial folder's own file.
        let trialFolder = folder.appendingPathComponent("trials/o1")
        try FileManager.default.createDirectory(at: trialFolder, withIntermediateDirectories: true)
        let trialResult = trialFolder.appendingPathComponent("result.json")
        try Data("{}".utf8).write(to: trialResult)
        for out in [trials, trialsLink, folder.appendingPathComponent("new.jsonl").path, trialResult.path] {
            let own = try runSidecar(["report", "--results", folder.path, "--out", out])
            XCTAssertNotEqual(own.status, 0, out)
            XCTAssertTrue(own.err.contains("would replace what the sweep wrote"), own.err)
            XCTAssertFalse(own.out.contains("o1"), "printed before refusing: \(own.out)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: trials)), before)
        XCTAssertEqual(try Data(contentsOf: trialResult), Data("{}".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("new.jsonl").path))

        // A folder that is not there is found before anything is printed, not after.
        let nowhere = try runSidecar(["report", "--results", folder.path, "--out", folder.appendingPathComponent("missing/report.html").path])
        XCTAssertNotEqual(nowhere.status, 0)
        XCTAssertTrue(nowhere.err.contains("the folder \(folder.appendingPathComponent("missing").path) does not exist"), nowhere.err)
        XCTAssertFalse(nowhere.out.contains("o1"), "printed before refusing: \(nowhere.out)")
    }
}
