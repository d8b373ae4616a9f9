// Ranking, the Pareto front, the hyperparameters worth a column, and the terminal table.
import Foundation
import XCTest
@testable import Sweep

func records(_ objects: [[String: Any]]) throws -> [ReportedTrial] {
    let text = objects.map(resultLine).joined(separator: "\n") + "\n"
    return try ResultsReader.parse(Data(text.utf8), name: "fixture").records
}

final class LeaderboardTests: XCTestCase {
    func testParetoFrontOnAHandCheckedSet() {
        // Checked by hand: C (15, .4) is beaten by A (10, .5); D (20, .6) and E (40, .7) by B (20, .7);
        // F and G are equal, so neither beats the other; H is the cheapest.
        let points: [(cost: Double, value: Double)] = [
            (10, 0.5), (20, 0.7), (15, 0.4), (20, 0.6), (40, 0.7), (50, 0.9), (50, 0.9), (5, 0.3), (.nan, 0.99),
        ]
        //                A          B          C          D          E          F          G          H
        XCTAssertEqual(ParetoFront.indices(of: points), [7, 0, 1, 5, 6])
        XCTAssertEqual(ParetoFront.indices(of: []), [])
        XCTAssertEqual(ParetoFront.indices(of: [(3, 0.1)]), [0])
    }

    /// By validation, a tie never goes to the better test accuracy (that would select by test);
    /// by test, a tie goes to the better validation accuracy.
    func testRanksByTheMetricThenFewerParametersAndByTestThenValidation() throws {
        let trials = try records([
            trialObject("t1", val: 0.80, test: 0.70),
            trialObject("t2", val: 0.85, test: 0.60),
            trialObject("t3", val: 0.80, test: 0.75),
            trialObject("t4", val: 0.80, test: 0.75, params: 100),
            trialObject("f1", head: "mlp", status: "failed"),
            trialObject("t5", val: nil, test: 0.99),
        ])
        let byVal = Leaderboard(trials: trials, metric: .valAccuracy)
        XCTAssertEqual(byVal.ranked.map(\.trial), ["t2", "t4", "t1", "t3", "t5"])
        XCTAssertEqual(byVal.failed.map(\.trial), ["f1"])
        let byTest = Leaderboard(trials: trials, metric: .testAccuracy)
        XCTAssertEqual(byTest.ranked.map(\.trial), ["t5", "t4", "t3", "t1", "t2"])
        // All have 3850 parameters but t4 (100): the front is t4 (cheapest) and t2 (most accurate).
        XCTAssertEqual(byVal.parametersFront, ["t4", "t2"])
    }

    func testOnlyVaryingKeysAreShown() throws {
        let trials = try records([
            trialObject("a", head: "losa", extra: ["hyperparameters": ["rank": 8, "dropout": 0.1, "layers": [1, 2]]]),
            trialObject("b", head: "losa", extra: ["hyperparameters": ["rank": 16, "dropout": 0.1, "layers": [1, 2]],
                                                   "training": ["epochs": 4, "lr": 0.003, "batch_size": 32, "seed": 0]]),
            trialObject("c", head: "linear", extra: ["hyperparameters": ["layers": [6]]]),
        ])
        let board = Leaderboard(trials: trials, metric: .valAccuracy)
        XCTAssertEqual(board.varyingKeys.map(\.name), ["layers", "rank", "lr"])
        let a = trials.first { $0.trial == "a" }!, b = trials.first { $0.trial == "b" }!, c = trials.first { $0.trial == "c" }!
        XCTAssertEqual(board.keyHyperparameters(of: a), "layers=1,2 rank=8 lr=0.001")
        XCTAssertEqual(board.keyHyperparameters(of: b), "layers=1,2 rank=16 lr=0.003")
        XCTAssertEqual(board.keyHyperparameters(of: c), "layers=6 lr=0.001")
    }

    func testTerminalTableListsEveryTrialFailedOnesLastWithTheirError() throws {
        let folder = try temporaryFolder("table")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (ids, failed) = try writeRealisticSweep(to: folder)
        let set = try ResultsReader.read(folder: folder.path)
        XCTAssertEqual(Set(set.trials.map(\.trial)), Set(ids))
        let board = Leaderboard(trials: set.trials, metric: .valAccuracy)
        let table = board.terminalTable()
        print(table)
        let lines = table.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertTrue(lines[0].hasPrefix("rank  trial"), lines[0])
        for column in ["head", "hyperparameters", "val_acc", "test_acc", "macro_f1", "params", "fit_s", "status"] {
            XCTAssertTrue(lines[0].contains(column), column)
        }
        let rows = Array(lines[1...ids.count])
        XCTAssertEqual(rows.map { $0.split(separator: " ")[1] }.map(String.init).sorted(), ids.sorted())
        for (i, row) in rows.enumerated() {
            let cells = row.split(separator: " ")
            if i < ids.count - failed.count {
                XCTAssertEqual(cells.first.map(String.init), String(i + 1))
                XCTAssertEqual(cells.last, "ok")
            } else {
                XCTAssertEqual(cells.last, "failed")
                XCTAssertTrue(failed.contains(String(cells[1])))
            }
        }
        let values = board.ranked.compactMap(\.metrics.valAccuracy)
        XCTAssertEqual(values, values.sorted(by: >))
        XCTAssertEqual(lines[ids.count + 2], "failed:")
        XCTAssertTrue(table.contains("c0ffee000001 losa: layers [7] out of range: the cache holds layers 0-6"))
        // Learning rate and the heads' own settings vary; batch size does not.
        XCTAssertTrue(rows.contains { $0.contains("rank=16 lr=0.003") })
        XCTAssertFalse(table.contains("batch_size="))
    }

    /// Seeds of one setting, given out of order, make one row with their mean and sample spread;
    /// the best setting is not the one with the best single seed.
    /// A consolidator trial recorded before block_dropout existed and one recorded after, at its
    /// default, are one setting; a value other than the default is another, and is shown.
    func testAKeyAddedLaterAtItsDefaultIsTheSameSetting() throws {
        func consolidator(_ id: String, seed: Int, blockDropout: Double?) -> [String: Any] {
            var hyperparameters: [String: Any] = ["K": 2, "groups": [24], "branch_drop": 0.1]
            if let blockDropout { hyperparameters["block_dropout"] = blockDropout }
            return trialObject(id, head: "consolidator", extra: ["hyperparameters": hyperparameters,
                                                                 "training": ["epochs": 4, "lr": 0.005, "batch_size": 32, "seed": seed]])
        }
        let trials = try records([consolidator("old", seed: 0, blockDropout: nil), consolidator("new", seed: 1, blockDropout: 0),
                                  consolidator("dropped", seed: 0, blockDropout: 0.1)])
        let board = Leaderboard(trials: trials, metric: .valAccuracy)
        XCTAssertEqual(Set(board.settings.map { $0.trials.map(\.trial) }), [["old", "new"], ["dropped"]])
        XCTAssertEqual(trials.map { $0.hyperparameters["block_dropout"] }, [.number(0), .number(0), .number(0.1)])
        // The key differs between the settings, so it has a column; the old line shows its default.
        XCTAssertEqual(board.keyHyperparameters(of: board.settings.first { $0.trials[0].trial == "old" }!), "block_dropout=0")
    }

    func testSettingsGroupTrialsThatDifferOnlyInTheirSeed() throws {
        func seeded(_ id: String, head: String = "linear", lr: Double = 0.001, seed: Int, val: Double, test: Double,
                    status: String = "ok") -> [String: Any] {
            trialObject(id, head: head, status: status, val: val, test: test,
                        extra: ["training": ["epochs": 4, "lr": lr, "batch_size": 32, "seed": seed]])
        }
        let trials = try records([
            seeded("a2", seed: 2, val: 0.82, test: 0.78),
            seeded("b0", lr: 0.003, seed: 0, val: 0.83, test: 0.75),
            seeded("a0", seed: 0, val: 0.80, test: 0.70),
            seeded("c0", head: "mlp", seed: 0, val: 0.80, test: 0.71),
            seeded("a1", seed: 1, val: 0.84, test: 0.74),
            seeded("f3", seed: 3, val: 0, test: 0, status: "failed"),
        ])
        let board = Leaderboard(trials: trials, metric: .valAccuracy)
        XCTAssertEqual(board.ranked.first?.trial, "a1")
        XCTAssertEqual(board.settings.map { $0.trials.map(\.trial) }, [["b0"], ["a0", "a1", "a2"], ["c0"]])
        let a = board.settings[1]
        XCTAssertEqual(a.seeds, [.number(0), .number(1), .number(2)])
        XCTAssertNil(a.training["seed"])
        let val = try XCTUnwrap(a.spread(of: .valAccuracy)), test = try XCTUnwrap(a.spread(of: .testAccuracy))
        // Worked by hand: deviations ∓0.02, 0 (val) and −0.04, 0, +0.04 (test), over n − 1 = 2.
        XCTAssertEqual(val.count, 3)
        XCTAssertEqual(val.mean, 0.82, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(val.standardDeviation), 0.02, accuracy: 1e-12)
        XCTAssertEqual(test.mean, 0.74, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(test.standardDeviation), 0.04, accuracy: 1e-12)
        XCTAssertEqual(val.formatted(), "0.8200 ± 0.0200")
        XCTAssertNil(board.settings[0].spread(of: .valAccuracy)?.standardDeviation, "one seed has no spread")
        XCTAssertEqual(board.settings[0].spread(of: .valAccuracy)?.formatted(), "0.8300")
        XCTAssertNil(Spread([]))
        // By test accuracy: b0's 0.75, then the three seeds' mean 0.74, then c0's 0.71.
        XCTAssertEqual(Leaderboard(trials: trials, metric: .testAccuracy).settings.map { $0.trials[0].trial }, ["b0", "a0", "c0"])

        XCTAssertEqual(board.keyHyperparameters(of: a), "lr=0.001", "the seed has a column of its own")
        let table = board.settingsTable().split(separator: "\n").map(String.init)
        XCTAssertTrue(table[0].hasPrefix("rank  head") && table[0].contains("seeds"), table[0])
        XCTAssertTrue(table[2].contains("lr=0.001") && table[2].contains("0,1,2") && table[2].contains("0.8200 ± 0.0200")
                      && table[2].contains("0.7400 ± 0.0400"), table[2])
        XCTAssertEqual(table.last, "1 failed trial left out (the trial table lists them)")

        guard case .object(let json) = a.json else { return XCTFail("\(a.json)") }
        XCTAssertEqual(json["trials"], .array([.string("a0"), .string("a1"), .string("a2")]))
        XCTAssertEqual(json["seeds"], .array([.number(0), .number(1), .number(2)]))
        guard case .object(let spread) = json["val_accuracy"] else { return XCTFail("\(json)") }
        XCTAssertEqual(spread["count"], .number(3))
    }
}
