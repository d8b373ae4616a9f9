// The results reader against hand-written shards: merging, the ok-over-failed and last-wins rules,
// the torn last line, and the errors for bad folders and malformed lines.
import Foundation
import XCTest
@testable import Sweep

final class ResultsReaderTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("reader") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: folder.appendingPathComponent(name))
    }

    func testMergesShardsAndKeepsOneRecordPerTrial() throws {
        // a: failed, then ok in a later shard → ok. b: ok, then failed later → ok still.
        // c: ok twice → the later one (val 0.9). d: failed twice → the later error.
        // Shard 10 sorts after shard 2 (natural order), so its c wins.
        try write("trials-0-of-11.jsonl", [
            resultLine(trialObject("a", status: "failed")),
            resultLine(trialObject("b", val: 0.7)),
            resultLine(trialObject("d", status: "failed", extra: ["error": "first"])),
        ].joined(separator: "\n") + "\n")
        try write("trials-2-of-11.jsonl", [
            resultLine(trialObject("a", val: 0.75)),
            resultLine(trialObject("c", val: 0.6)),
            resultLine(trialObject("d", status: "failed", extra: ["error": "second"])),
        ].joined(separator: "\n") + "\n")
        try write("trials-10-of-11.jsonl", [
            resultLine(trialObject("b", status: "failed")),
            "",
            resultLine(trialObject("c", val: 0.9)),
        ].joined(separator: "\n") + "\n")
        try write("notes.txt", "not a results file\n")

        let set = try ResultsReader.read(folder: folder.path)
        XCTAssertEqual(set.files.map { URL(fileURLWithPath: $0).lastPathComponent },
                       ["trials-0-of-11.jsonl", "trials-2-of-11.jsonl", "trials-10-of-11.jsonl"])
        XCTAssertEqual(set.recordsRead, 8)
        XCTAssertEqual(set.duplicatesDropped, 4)
        XCTAssertEqual(set.warnings, [])
        let byID = Dictionary(uniqueKeysWithValues: set.trials.map { ($0.trial, $0) })
        XCTAssertEqual(set.trials.map(\.trial), ["a", "b", "d", "c"])
        XCTAssertEqual(byID["a"]?.status, .ok)
        XCTAssertEqual(byID["a"]?.metrics.valAccuracy, 0.75)
        XCTAssertEqual(byID["b"]?.status, .ok)
        XCTAssertEqual(byID["b"]?.metrics.valAccuracy, 0.7)
        XCTAssertEqual(byID["c"]?.metrics.valAccuracy, 0.9)
        XCTAssertEqual(byID["d"]?.status, .failed)
        XCTAssertEqual(byID["d"]?.error, "second")
        XCTAssertEqual(byID["c"]?.source, folder.appendingPathComponent("trials-10-of-11.jsonl").path + ":3")
    }

    func testSkipsATornLastLineWithAWarning() throws {
        let torn = String(resultLine(trialObject("torn")).prefix(40))
        try write("trials-0-of-1.jsonl", resultLine(trialObject("x")) + "\n" + resultLine(trialObject("y")) + "\n" + torn)
        let set = try ResultsReader.read(folder: folder.path)
        XCTAssertEqual(set.trials.map(\.trial), ["x", "y"])
        XCTAssertEqual(set.warnings.count, 1)
        XCTAssertTrue(set.warnings[0].hasPrefix(folder.appendingPathComponent("trials-0-of-1.jsonl").path + ":3: skipped a torn last line"),
                      set.warnings[0])
    }

    func testAcceptsACompleteLastLineWithoutANewline() throws {
        try write("trials-0-of-1.jsonl", resultLine(trialObject("x")) + "\n" + resultLine(trialObject("y")))
        let set = try ResultsReader.read(folder: folder.path)
        XCTAssertEqual(set.trials.map(\.trial), ["x", "y"])
        XCTAssertEqual(set.warnings, [])
    }

    func testAMalformedLineInsideAFileIsAnErrorNamingFileLineAndFault() throws {
        let file = folder.appendingPathComponent("trials-0-of-1.jsonl").path
        let cases: [(line: String, fault: String)] = [
            ("{\"trial\": \"x\", \"status\": \"ok\", \"head\": \"linear\"", "not a JSON object"),
            ("[1, 2]", "not a JSON object (each line holds one trial"),
            (resultLine(trialObject("x", extra: ["status": "done"])), "status: expected \"ok\" or \"failed\", found \"done\""),
            (resultLine(trialObject("x", extra: ["metrics": ["val_accuracy": "high"]])), "metrics.val_accuracy: expected a number"),
            (resultLine(trialObject("x").filter { $0.key != "head" }), "missing key \"head\""),
            (resultLine(trialObject("x", extra: ["history": [["epoch": 1, "train_loss": true]]])), "history[0].train_loss: expected a number"),
            // Valid JSON had been called invalid.
            (resultLine(trialObject("x", extra: ["trainable_parameters": 1155.5])), "the JSON is valid, but trainable_parameters holds 1155.5, out of range for that field"),
            (resultLine(trialObject("x", extra: ["history": [["epoch": 1e300, "train_loss": 0.5]]])),
             "the JSON is valid, but history[0].epoch holds 1e+300, out of range for that field"),
        ]
        for (line, fault) in cases {
            try write("trials-0-of-1.jsonl", resultLine(trialObject("a")) + "\n" + line + "\n" + resultLine(trialObject("b")) + "\n")
            XCTAssertThrowsError(try ResultsReader.read(folder: folder.path)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("\(file):2: "), message)
                XCTAssertTrue(message.contains(fault), "expected \(fault) in: \(message)")
            }
        }
    }

    func testFolderErrorsSayWhatIsWrong() throws {
        let missing = folder.appendingPathComponent("nope").path
        XCTAssertThrowsError(try ResultsReader.read(folder: missing)) { XCTAssertTrue("\($0)".contains("\(missing) does not exist"), "\($0)") }
        XCTAssertThrowsError(try ResultsReader.read(folder: folder.path)) { XCTAssertTrue("\($0)".contains("no results files"), "\($0)") }
        try write("trials-0-of-2.jsonl", "")
        try write("trials-1-of-2.jsonl", "\n")
        XCTAssertThrowsError(try ResultsReader.read(folder: folder.path)) {
            XCTAssertTrue("\($0)".contains("2 results files but no trials"), "\($0)")
        }
        let file = folder.appendingPathComponent("trials-0-of-2.jsonl").path
        XCTAssertThrowsError(try ResultsReader.read(folder: file)) { XCTAssertTrue("\($0)".contains("is not a folder"), "\($0)") }
    }
}
