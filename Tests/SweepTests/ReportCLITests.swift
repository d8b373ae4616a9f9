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
    }
}
