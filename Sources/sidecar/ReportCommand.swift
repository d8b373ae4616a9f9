// `sidecar report`: read a sweep's results folder, print the leaderboard, write the HTML page.
// Reading, ranking and rendering live in the Sweep library; this only wires flags to it.
import ArgumentParser
import Foundation
import Sweep
import TensorCore

extension RankingMetric: ExpressibleByArgument {}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Merge a sweep's results, print the leaderboard and write an HTML report.",
        discussion: """
            Reads every *.jsonl file in the results folder (one per shard) and keeps one record per trial: \
            a successful record wins over a failed one, otherwise the later one. A torn last line (a run \
            killed mid-write) is skipped with a warning; any other malformed line is an error naming file:line. \
            The page is self-contained (inline CSS and SVG, no scripts, nothing fetched): the leaderboard \
            with every trial, accuracy against trainable parameters and against fit time with their Pareto \
            fronts, the learning curves of the best trials, and, when some setting ran more than one seed, \
            the settings ranked by their mean over seeds.
            """)

    @Option(help: "The results folder written by sidecar sweep.")
    var results: String

    @Option(help: "Where to write the HTML page (default: report.html in the results folder; with --json, only when given).")
    var out: String?

    @Flag(help: "Print the merged trials as a JSON array on stdout, best first, instead of the table.")
    var json = false

    @Flag(help: """
        Rank settings instead of trials: trials that differ only in their seed make one row, with \
        their accuracies' mean ± sample standard deviation over the seeds. With --json, prints the \
        settings instead of the trials.
        """)
    var bySetting = false

    @Option(parsing: .unconditional, help: "How many of the best trials get learning curves.")
    var top = 5

    @Option(help: "The accuracy that ranks trials and goes on the charts: val_accuracy or test_accuracy.")
    var metric: RankingMetric = .valAccuracy

    func validate() throws {
        if top < 0 { throw ValidationError("--top must be 0 or more, got \(top)") }
        if let out, isFolder(out) == true {
            throw ValidationError("--out \(out): is a folder; give the HTML file to write")
        }
    }

    func run() throws {
        // As sweep refuses it: the report's default place is in the folder, and the error had
        // blamed an --out that was never given.
        if isActivationCache(results) {
            throw CommandError("--results \(results): is an activation cache (it holds data.mdb), not a sweep's results folder")
        }
        let set = try ResultsReader.read(folder: results)
        for warning in set.warnings { standardError("warning: \(warning)\n") }
        let destination = out ?? (json ? nil : URL(userPath: results).appendingPathComponent("report.html").path)
        // Checked before anything is printed. A .jsonl file in the results folder is a results file
        // to the next report: written over, it had replaced the trials with HTML.
        let file = try destination.map { destination in
            let file = try outputFile(destination)
            if set.files.contains(where: { sameItem($0, file) }) || replacesSweepOutput(file, results: results) {
                throw CommandError("--out \(destination) would replace what the sweep wrote in \(results); write the report elsewhere")
            }
            return file
        }
        let report = HTMLReport(results: set, metric: metric, curves: top, folderName: results)
        let board = report.leaderboard
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let values = bySetting ? board.settings.map(\.json) : board.all.map(\.raw)
            print(String(decoding: try encoder.encode(values), as: UTF8.self))
        } else {
            print(bySetting ? board.settingsTable() : board.terminalTable())
        }
        guard let destination, let file else { return }
        do {
            try Data(report.render().utf8).write(to: URL(userPath: file), options: .atomic)
        } catch {
            throw ReportError.cannotWrite(destination, error.localizedDescription)
        }
        let summary = "\(set.trials.count) trial\(set.trials.count == 1 ? "" : "s") (\(board.ranked.count) ok, \(board.failed.count) failed) from \(set.files.count) file"
            + (set.files.count == 1 ? "" : "s") + "; wrote \(destination)"
        if json { standardError(summary + "\n") } else { print("\n" + summary) }
    }
}
