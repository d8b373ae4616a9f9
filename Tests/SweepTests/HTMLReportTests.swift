// The page's text: escaping, determinism, and every trial in the table. What it looks like is
// checked in a real browser in BrowserTests.
import Foundation
import XCTest
@testable import Sweep

final class HTMLReportTests: XCTestCase {
    func testEscapesEverythingFromTheResults() throws {
        let hostile = "</td></table><script>alert(\"x\")</script> & 'q'"
        let trials = try records([
            trialObject("ok<1>", head: "losa", extra: ["hyperparameters": ["rank": 8, "note": "a<b & \"c\""]]),
            trialObject("ok2", head: "lo<sa>", extra: ["hyperparameters": ["rank": 16, "note": "plain"]]),
            trialObject("bad&1", status: "failed", extra: ["error": hostile]),
        ])
        let set = ResultsSet(trials: trials, files: ["/r/<trials>.jsonl"], recordsRead: 3, duplicatesDropped: 0,
                             warnings: ["/r/x.jsonl:9: <torn>"])
        let html = HTMLReport(results: set, metric: .valAccuracy, folderName: "/tmp/<results> & co").render()
        XCTAssertFalse(html.contains("<script"), "a script element got through")
        XCTAssertFalse(html.contains("<sa>"))
        XCTAssertFalse(html.contains("<1>"))
        XCTAssertFalse(html.contains("<torn>"))
        XCTAssertFalse(html.contains("<results>"))
        XCTAssertTrue(html.contains("&lt;/td&gt;&lt;/table&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"))
        XCTAssertTrue(html.contains("data-trial=\"ok&lt;1&gt;\""))
        XCTAssertTrue(html.contains("note=a&lt;b &amp; &quot;c&quot;"))
        XCTAssertTrue(html.contains("/tmp/&lt;results&gt; &amp; co"))
        XCTAssertEqual(escapeHTML("a\u{1}b\tc"), "a\u{FFFD}b\tc")
    }

    func testTheSameResultsGiveTheSameBytesWhateverTheLineOrder() throws {
        let folder = try temporaryFolder("determinism")
        defer { try? FileManager.default.removeItem(at: folder) }
        try writeRealisticSweep(to: folder)
        let set = try ResultsReader.read(folder: folder.path)
        let page = HTMLReport(results: set, metric: .valAccuracy, folderName: "results").render()
        var shuffled = set
        var random = FixtureRandom(state: 7)
        for i in stride(from: shuffled.trials.count - 1, to: 0, by: -1) {
            shuffled.trials.swapAt(i, Int(random.next() % UInt64(i + 1)))
        }
        XCTAssertNotEqual(shuffled.trials.map(\.trial), set.trials.map(\.trial))
        XCTAssertEqual(HTMLReport(results: shuffled, metric: .valAccuracy, folderName: "results").render(), page)
        XCTAssertEqual(HTMLReport(results: set, metric: .valAccuracy, folderName: "results").render(), page)
    }

    func testPageIsSelfContainedAndListsEveryTrial() throws {
        let folder = try temporaryFolder("page")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (ids, failed) = try writeRealisticSweep(to: folder)
        let set = try ResultsReader.read(folder: folder.path)
        let html = HTMLReport(results: set, metric: .testAccuracy, folderName: folder.path).render()
        for id in ids { XCTAssertTrue(html.contains("data-trial=\"\(id)\""), id) }
        XCTAssertEqual(html.components(separatedBy: "<tr class=\"failed\"").count - 1, failed.count)
        XCTAssertEqual(html.components(separatedBy: "<tr class=\"ok\"").count - 1, ids.count - failed.count)
        XCTAssertTrue(html.contains("out of memory: needs 6.1 GiB"))
        // Nothing to fetch: no scripts, no external stylesheets, fonts or images.
        for forbidden in ["<script", "<link", "@import", "url(", "src=", "http://", "https://"] {
            let outside = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
            XCTAssertFalse(outside.contains(forbidden), forbidden)
        }
        XCTAssertTrue(html.contains("test accuracy against trainable parameters".sentenceCased))
        XCTAssertTrue(html.contains("trainable parameters (log scale)"))
        XCTAssertTrue(html.contains("class=\"front\""))
        XCTAssertTrue(html.contains("Learning curves of the best 5"))
        XCTAssertTrue(html.contains("skipped a torn last line"))
        XCTAssertFalse(html.contains("Settings over seeds"), "every setting ran one seed: the section would repeat the leaderboard")
    }

    func testSmallAndDegenerateSweepsStillGiveAPage() throws {
        let one = try records([trialObject("only", extra: ["history": [["epoch": 1, "train_loss": 0.9, "val_accuracy": 0.8]]])])
        let onePage = HTMLReport(results: ResultsSet(trials: one, files: ["a.jsonl"], recordsRead: 1, duplicatesDropped: 0, warnings: []),
                                 metric: .valAccuracy, folderName: "r").render()
        XCTAssertEqual(onePage.components(separatedBy: "<svg class=\"chart\"").count - 1, 4)
        XCTAssertTrue(onePage.contains("Learning curves of the best 1"))
        let failedOnly = try records([trialObject("f1", status: "failed"), trialObject("f2", head: "mlp", status: "failed")])
        let failedPage = HTMLReport(results: ResultsSet(trials: failedOnly, files: ["a.jsonl"], recordsRead: 2, duplicatesDropped: 0, warnings: []),
                                    metric: .valAccuracy, folderName: "r").render()
        XCTAssertFalse(failedPage.contains("<svg class=\"chart\""))
        XCTAssertTrue(failedPage.contains("No successful trial records both validation accuracy and this cost."))
        XCTAssertTrue(failedPage.contains("No successful trial has a per-epoch history."))
        XCTAssertEqual(failedPage.components(separatedBy: "<tr class=\"failed\"").count - 1, 2)
        // Finite losses whose span overflows had given NaN coordinates.
        let extreme = try records([trialObject("e", extra: ["history": [["epoch": 1, "train_loss": -1e308, "val_accuracy": 0.8],
                                                                         ["epoch": 2, "train_loss": 1e308, "val_accuracy": 0.8]]])])
        let extremePage = HTMLReport(results: ResultsSet(trials: extreme, files: ["a.jsonl"], recordsRead: 1, duplicatesDropped: 0, warnings: []),
                                     metric: .valAccuracy, folderName: "r").render()
        for bad in ["nan\"", "nan ", "inf\"", "inf "] { XCTAssertFalse(extremePage.contains(bad), "\(bad) in the page's coordinates") }
    }

    func testAxisTicks() {
        XCTAssertEqual(ChartAxis(low: 0.78, high: 0.88).ticks().map { ($0 * 1000).rounded() / 1000 }, [0.78, 0.8, 0.82, 0.84, 0.86, 0.88])
        let log = ChartAxis(covering: [3_850, 4_284_426], logarithmic: true)
        XCTAssertEqual(log.ticks(), [10_000, 100_000, 1_000_000])
        let narrow = ChartAxis(covering: [40_000, 90_000], logarithmic: true)
        XCTAssertEqual(narrow.ticks(), [30_000, 40_000, 50_000, 60_000, 70_000, 80_000, 90_000, 100_000])
        // A loss of 1e14 that hardly moves: steps below the values' precision end, in at most eight ticks.
        let flat = ChartAxis(covering: [1e14, 1e14 + 0.02], logarithmic: false)
        XCTAssertTrue((1...8).contains(flat.ticks().count), "\(flat.ticks())")
        XCTAssertEqual([3_850, 20_000, 1_500_000, 2e9].map(compactNumber), ["3.85k", "20k", "1.5M", "2G"])
        XCTAssertEqual(HTMLReport.grouped(4_284_426), "4,284,426")
    }
}
