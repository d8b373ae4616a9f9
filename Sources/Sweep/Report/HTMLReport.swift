// The sweep report as one self-contained HTML page: inline CSS and SVG, no scripts, no fonts or
// images to fetch, so it opens offline and can be mailed or archived as a single file. Every piece
// of text from the results goes through escapeHTML. Nothing in it depends on the clock or on
// dictionary order: the same results give the same bytes.
import Foundation

public struct HTMLReport: Sendable {
    public let results: ResultsSet
    public let leaderboard: Leaderboard
    /// How many of the best trials get learning curves (0: no learning-curve section).
    public let curves: Int
    /// What the page calls the results folder.
    public let folderName: String
    /// The heads present, known ones in their fixed order, others alphabetically after.
    let heads: [String]
    /// Each present head's colour: known heads keep theirs from one report to the next.
    private let colors: [String: String]

    public init(results: ResultsSet, metric: RankingMetric, curves: Int = 5, folderName: String) {
        self.results = results
        leaderboard = Leaderboard(trials: results.trials, metric: metric)
        self.curves = curves
        self.folderName = folderName
        let present = Set(results.trials.map(\.head))
        let others = present.subtracting(Self.knownHeads).sorted()
        heads = Self.knownHeads.filter(present.contains) + others
        var colors: [String: String] = [:]
        for (i, head) in Self.knownHeads.enumerated() { colors[head] = Self.headPalette[i] }
        for (i, head) in others.enumerated() { colors[head] = Self.extraPalette[i % Self.extraPalette.count] }
        self.colors = colors
    }

    /// Heads in a fixed order, so a head keeps its colour from one report to the next.
    static let knownHeads = ["linear", "mlp", "losa", "lst", "unipt", "e3va", "consolidator"]
    static let headPalette = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#17a2b8", "#9c755f"]
    static let extraPalette = ["#edc948", "#ff9da7", "#7f7f7f", "#bcbd22", "#1f3a93"]
    /// The scatter dots' fill opacity: overlapping trials stay visible.
    static let dotOpacity = 0.85
    /// Learning curves are coloured by rank, not head: the best few are often all the same head.
    static let curvePalette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]

    func color(of head: String) -> String { colors[head] ?? Self.extraPalette[0] }

    /// The page.
    public func render() -> String {
        let metric = leaderboard.metric
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Sweep report: \(escapeHTML(folderName))</title>
            <style>\(Self.css)</style>
            </head>
            <body>
            <main>
            <header>
            <h1>Sweep report</h1>
            <p class="sub">Results folder <code>\(escapeHTML(folderName))</code> · \(results.files.count) results file\(results.files.count == 1 ? "" : "s") · \
            trials ranked by \(metric.title)</p>
            </header>

            """
        html += summary()
        if !results.warnings.isEmpty {
            html += "<section class=\"warnings\"><h2>Warnings</h2><ul>"
            for warning in results.warnings { html += "<li>\(escapeHTML(warning))</li>" }
            html += "</ul></section>\n"
        }
        html += costSection()
        html += curvesSection()
        html += tableSection()
        html += settingsSection()
        html += "<footer>Written by <code>sidecar report</code> from "
        html += results.files.map { "<code>\(escapeHTML(URL(fileURLWithPath: $0).lastPathComponent))</code>" }.joined(separator: ", ")
        html += ": \(results.recordsRead) record\(results.recordsRead == 1 ? "" : "s"), \(results.duplicatesDropped) superseded by a later or successful run of the same trial.</footer>\n"
        html += "</main>\n</body>\n</html>\n"
        return html
    }

    func summary() -> String {
        let board = leaderboard
        var s = "<section class=\"cards\">\n"
        s += "<div class=\"card\"><div class=\"k\">Trials</div><div class=\"v\">\(results.trials.count)</div>"
        s += "<div class=\"d\">\(board.ranked.count) ok · \(board.failed.count) failed · \(heads.count) head type\(heads.count == 1 ? "" : "s")</div></div>\n"
        if let best = board.ranked.first {
            s += "<div class=\"card\"><div class=\"k\">Best by \(escapeHTML(board.metric.title))</div>"
            s += "<div class=\"v\">\(best.value(of: board.metric).map { String(format: "%.4f", $0) } ?? "—")</div>"
            s += "<div class=\"d\"><code>\(escapeHTML(best.trial))</code> \(swatch(best.head))\(escapeHTML(best.head))"
            if let p = best.trainableParameters { s += " · \(compactNumber(Double(p))) params" }
            s += "</div></div>\n"
        }
        let cheapest = board.ranked.filter { board.parametersFront.contains($0.trial) }
            .min { ($0.trainableParameters ?? .max, $0.trial) < ($1.trainableParameters ?? .max, $1.trial) }
        if let cheapest {
            s += "<div class=\"card\"><div class=\"k\">Cheapest on the front</div>"
            s += "<div class=\"v\">\(cheapest.trainableParameters.map { compactNumber(Double($0)) } ?? "—")</div>"
            s += "<div class=\"d\"><code>\(escapeHTML(cheapest.trial))</code> \(swatch(cheapest.head))\(escapeHTML(cheapest.head))"
            s += " · \(cheapest.value(of: board.metric).map { String(format: "%.4f", $0) } ?? "—")</div></div>\n"
        }
        s += "<div class=\"card\"><div class=\"k\">On the Pareto fronts</div>"
        s += "<div class=\"v\">\(board.parametersFront.count) <span class=\"of\">params</span> · \(board.secondsFront.count) <span class=\"of\">time</span></div>"
        s += "<div class=\"d\">trials no other beats on both accuracy and cost</div></div>\n"
        return s + "</section>\n"
    }

    func swatch(_ head: String) -> String { "<span class=\"sw\" style=\"background:\(color(of: head))\"></span>" }

    func legend() -> String {
        var s = "<div class=\"legend\">"
        for head in heads {
            let count = results.trials.filter { $0.head == head && $0.status == .ok }.count
            s += "<span>\(swatch(head))\(escapeHTML(head)) <span class=\"muted\">(\(count))</span></span>"
        }
        s += "<span><svg width=\"22\" height=\"14\" aria-hidden=\"true\"><circle cx=\"11\" cy=\"7\" r=\"5.5\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.5\"/></svg>on the Pareto front</span>"
        s += "<span><svg width=\"26\" height=\"14\" aria-hidden=\"true\"><path d=\"M1 11 H12 V3 H25\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.5\"/></svg>best reachable at that cost</span>"
        return s + "</div>\n"
    }

    func costSection() -> String {
        let board = leaderboard
        let metric = board.metric
        func tooltip(_ t: ReportedTrial) -> String {
            var parts = [t.trial, t.head, "\(metric.rawValue) " + (t.value(of: metric).map { String(format: "%.4f", $0) } ?? "—")]
            if let p = t.trainableParameters { parts.append("\(p) params") }
            if let f = t.fitSeconds { parts.append(String(format: "%.1f s", f)) }
            let hyper = board.keyHyperparameters(of: t)
            if !hyper.isEmpty { parts.append(hyper) }
            return parts.joined(separator: " · ")
        }
        func chart(title: String, cost: (ReportedTrial) -> Double?, front: Set<String>, xLabel: String, log: Bool?, format: @escaping (Double) -> String) -> String {
            let plotted = board.ranked.filter { t in cost(t).map { $0 > 0 || log == false } == true && t.value(of: metric) != nil }
            let left = board.ranked.count - plotted.count
            var s = "<figure><figcaption>\(escapeHTML(title))</figcaption>"
            if plotted.isEmpty {
                s += "<p class=\"empty\">No successful trial records both \(escapeHTML(metric.title)) and this cost.</p></figure>\n"
                return s
            }
            let xs = plotted.map { cost($0)! }, ys = plotted.map { $0.value(of: metric)! }
            let logarithmic = log ?? ((xs.max()! / max(xs.min()!, 1e-12)) >= 8)
            let y = ChartAxis(covering: ys, logarithmic: false, margin: 0.08, minimumSpan: 0.02)
            let frame = ChartFrame(x: ChartAxis(covering: xs, logarithmic: logarithmic, margin: 0.06, minimumSpan: max(xs.max()! * 0.2, 1e-6)), y: y,
                                   xLabel: xLabel + (logarithmic ? " (log scale)" : ""), yLabel: metric.title,
                                   xFormat: format, yFormat: Self.tickFormatter(y.ticks()))
            let points = plotted.map { t in
                ScatterPoint(x: cost(t)!, y: t.value(of: metric)!, color: color(of: t.head), tooltip: tooltip(t), onFront: front.contains(t.trial))
            }
            s += SVGCharts.scatter(title: title, points: points, frame: frame)
            var notes: [String] = []
            if left > 0 { notes.append("\(left) successful trial\(left == 1 ? "" : "s") without this cost or metric not drawn") }
            if !board.failed.isEmpty { notes.append("\(board.failed.count) failed trial\(board.failed.count == 1 ? "" : "s") not drawn") }
            if !notes.isEmpty { s += "<p class=\"note\">\(escapeHTML(notes.joined(separator: "; "))).</p>" }
            return s + "</figure>\n"
        }
        var s = "<section>\n<h2>Accuracy against cost</h2>\n"
        s += "<p class=\"caption\">Each point is a successful trial; the y axis is its \(escapeHTML(metric.title)) (the ranking metric). "
        s += "Ringed points are on the Pareto front: no other trial is at least as accurate with fewer trainable parameters "
        s += "(left) or less fit time (right). Fit time is the wall time of the data pass that trained the trial; "
        s += "trials trained together in one pass share it. Hover a point for its trial.</p>\n"
        s += legend()
        s += "<div class=\"pair\">\n"
        s += chart(title: "\(metric.title.sentenceCased) against trainable parameters", cost: { $0.trainableParameters.map(Double.init) },
                   front: board.parametersFront, xLabel: "trainable parameters", log: true, format: compactNumber)
        s += chart(title: "\(metric.title.sentenceCased) against fit time", cost: { $0.fitSeconds },
                   front: board.secondsFront, xLabel: "fit seconds", log: nil, format: shortNumber)
        return s + "</div>\n</section>\n"
    }

    func curvesSection() -> String {
        guard curves > 0 else { return "" }
        let best = Array(leaderboard.ranked.filter { !$0.history.isEmpty }.prefix(curves))
        var s = "<section>\n<h2>Learning curves of the best \(best.count)</h2>\n"
        guard !best.isEmpty else { return s + "<p class=\"empty\">No successful trial has a per-epoch history.</p>\n</section>\n" }
        s += "<p class=\"caption\">Per epoch, from each trial's history; the best \(best.count) by \(escapeHTML(leaderboard.metric.title)) that have one.</p>\n"
        s += "<ol class=\"series\">"
        let rankOf = Dictionary(uniqueKeysWithValues: leaderboard.ranked.enumerated().map { ($1.trial, $0 + 1) })
        var seriesColor: [String: String] = [:]
        for (i, t) in best.enumerated() {
            let c = Self.curvePalette[i % Self.curvePalette.count]
            seriesColor[t.trial] = c
            s += "<li><svg width=\"26\" height=\"10\" aria-hidden=\"true\"><line x1=\"1\" y1=\"5\" x2=\"25\" y2=\"5\" stroke=\"\(c)\" stroke-width=\"2.5\"/></svg>"
            s += "<b>#\(rankOf[t.trial]!)</b> <code>\(escapeHTML(t.trial))</code> \(swatch(t.head))\(escapeHTML(t.head))"
            let hyper = leaderboard.keyHyperparameters(of: t)
            if !hyper.isEmpty { s += " <span class=\"muted\">\(escapeHTML(hyper))</span>" }
            s += "</li>"
        }
        s += "</ol>\n<div class=\"pair\">\n"
        func chart(title: String, yLabel: String, value: (ReportedTrial.Epoch) -> Double?) -> String {
            let series = best.map { t in
                LineSeries(points: t.history.compactMap { e in value(e).flatMap { $0.isFinite ? (x: Double(e.epoch), y: $0) : nil } },
                           color: seriesColor[t.trial]!, label: "#\(rankOf[t.trial]!) \(t.trial) \(t.head)")
            }.filter { !$0.points.isEmpty }
            var s = "<figure><figcaption>\(escapeHTML(title))</figcaption>"
            guard !series.isEmpty else { return s + "<p class=\"empty\">No epoch records \(escapeHTML(yLabel)).</p></figure>\n" }
            let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
            var x = ChartAxis(covering: xs + [1], logarithmic: false, margin: 0.04, minimumSpan: 1)
            x.integral = true
            let y = ChartAxis(covering: ys, logarithmic: false, margin: 0.08, minimumSpan: 0.02)
            let frame = ChartFrame(x: x, y: y, xLabel: "epoch", yLabel: yLabel, xFormat: shortNumber, yFormat: Self.tickFormatter(y.ticks()))
            s += SVGCharts.lines(title: title, series: series, frame: frame)
            return s + "</figure>\n"
        }
        s += chart(title: "Validation accuracy per epoch", yLabel: "validation accuracy") { $0.valAccuracy }
        s += chart(title: "Training loss per epoch", yLabel: "training loss") { $0.trainLoss }
        return s + "</div>\n</section>\n"
    }

    func tableSection() -> String {
        let board = leaderboard
        var s = "<section>\n<h2>Leaderboard</h2>\n"
        s += "<p class=\"caption\">Every trial, ranked by \(escapeHTML(board.metric.title)), then the other accuracy, then fewer parameters; "
        s += "failed trials last with their reason. Hyperparameters shows the settings that differ between trials; "
        s += "hover it for all of them.</p>\n"
        s += "<table class=\"board\">\n<thead><tr><th class=\"num\">#</th><th>Trial</th><th>Head</th><th>Hyperparameters</th>"
        s += "<th class=\"num\">Val acc</th><th class=\"num\">Test acc</th><th class=\"num\">Macro F1</th><th class=\"num\">Params</th>"
        s += "<th class=\"num\">Fit s</th><th class=\"num\">Peak RSS</th><th class=\"num\">Epochs</th><th>Front</th><th>Status</th></tr></thead>\n<tbody>\n"
        func accuracy(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "—" }
        func cells(_ t: ReportedTrial, rank: String) -> String {
            var r = "<tr class=\"\(t.status.rawValue)\" data-trial=\"\(escapeHTML(t.trial))\"><td class=\"num\">\(rank)</td>"
            r += "<td><code>\(escapeHTML(t.trial))</code></td><td class=\"nowrap\">\(swatch(t.head))\(escapeHTML(t.head))</td>"
            r += "<td class=\"hp\" title=\"\(escapeHTML(Leaderboard.allSettings(of: t)))\">\(escapeHTML(board.keyHyperparameters(of: t)))</td>"
            return r
        }
        for (i, t) in board.ranked.enumerated() {
            s += cells(t, rank: String(i + 1))
            s += "<td class=\"num\">\(accuracy(t.metrics.valAccuracy))</td><td class=\"num\">\(accuracy(t.metrics.testAccuracy))</td>"
            s += "<td class=\"num\">\(accuracy(t.metrics.testMacroF1))</td>"
            s += "<td class=\"num\">\(t.trainableParameters.map { Self.grouped($0) } ?? "—")</td>"
            s += "<td class=\"num\">\(t.fitSeconds.map { String(format: "%.1f", $0) } ?? "—")</td>"
            s += "<td class=\"num\">\(t.peakRSSBytes.map { String(format: "%.0f MiB", Double($0) / 1_048_576) } ?? "—")</td>"
            let epochs = [t.metrics.bestEpoch, t.metrics.epochsRun].map { $0.map(String.init) ?? "?" }
            s += "<td class=\"num\">\(t.metrics.bestEpoch == nil && t.metrics.epochsRun == nil ? "—" : epochs.joined(separator: "/"))</td>"
            let fronts = [board.parametersFront.contains(t.trial) ? "params" : nil, board.secondsFront.contains(t.trial) ? "time" : nil].compactMap { $0 }
            s += "<td class=\"nowrap\">\(fronts.map { "<span class=\"pill\">\($0)</span>" }.joined(separator: " "))</td>"
            s += "<td><span class=\"status ok\">ok</span></td></tr>\n"
        }
        for t in board.failed {
            s += cells(t, rank: "—")
            s += "<td class=\"error\" colspan=\"8\">\(escapeHTML(t.error ?? "no reason recorded"))</td>"
            s += "<td><span class=\"status failed\">failed</span></td></tr>\n"
        }
        s += "</tbody>\n</table>\n"
        s += "<p class=\"note\">Epochs: best epoch / epochs run. Front: on the Pareto front of accuracy against trainable parameters, against fit time.</p>\n"
        return s + "</section>\n"
    }

    /// The settings ranked by their mean over seeds; only when some setting ran more than one seed
    /// (otherwise it would repeat the leaderboard).
    func settingsSection() -> String {
        let board = leaderboard
        guard board.settings.contains(where: { $0.trials.count > 1 }) else { return "" }
        var s = "<section>\n<h2>Settings over seeds</h2>\n"
        s += "<p class=\"caption\">Trials that differ only in their seed, as one setting, ranked by their mean \(escapeHTML(board.metric.title)); "
        s += "mean ± sample standard deviation over the seeds. Failed trials are left out.</p>\n"
        s += "<table class=\"board\">\n<thead><tr><th class=\"num\">#</th><th>Head</th><th>Hyperparameters</th><th>Seeds</th>"
        s += "<th class=\"num\">Val acc</th><th class=\"num\">Test acc</th><th class=\"num\">Macro F1</th><th class=\"num\">Params</th>"
        s += "<th>Trials</th></tr></thead>\n<tbody>\n"
        for (i, setting) in board.settings.enumerated() {
            s += "<tr><td class=\"num\">\(i + 1)</td><td class=\"nowrap\">\(swatch(setting.head))\(escapeHTML(setting.head))</td>"
            s += "<td class=\"hp\">\(escapeHTML(board.keyHyperparameters(of: setting)))</td>"
            s += "<td>\(escapeHTML(setting.seeds.map(\.display).joined(separator: ", ")))</td>"
            for spread in [setting.spread(of: .valAccuracy), setting.spread(of: .testAccuracy), setting.testMacroF1] {
                s += "<td class=\"num nowrap\">\(spread.map { escapeHTML($0.formatted()) } ?? "—")</td>"
            }
            s += "<td class=\"num\">\(setting.trainableParameters.map { Self.grouped($0) } ?? "—")</td>"
            s += "<td>\(setting.trials.map { "<code>\(escapeHTML($0.trial))</code>" }.joined(separator: " "))</td></tr>\n"
        }
        return s + "</tbody>\n</table>\n</section>\n"
    }

    /// 1234567 → "1,234,567" (fixed, not the locale's, so the page does not depend on the machine).
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// The fewest decimals that write every tick exactly.
    static func tickFormatter(_ ticks: [Double]) -> (Double) -> String {
        let decimals = (0...6).first { d in ticks.allSatisfy { abs((Double(String(format: "%.\(d)f", $0)) ?? .nan) - $0) < 1e-9 } } ?? 6
        return { String(format: "%.\(decimals)f", $0) }
    }

    static let css = """

        :root { --ink: #1d232b; --muted: #66707c; --line: #d9dee4; --soft: #f4f6f8; }
        * { box-sizing: border-box; }
        body { margin: 0; background: #fff; color: var(--ink);
               font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans", "DejaVu Sans", Arial, sans-serif; }
        main { max-width: 1160px; margin: 0 auto; padding: 28px 24px 40px; }
        h1 { font-size: 24px; margin: 0 0 4px; font-weight: 650; letter-spacing: -0.01em; }
        h2 { font-size: 17px; margin: 34px 0 6px; font-weight: 650; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
        code { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
        .sub, .caption, .note, .muted, footer { color: var(--muted); }
        .sub { margin: 0; }
        .caption { margin: 6px 0 10px; max-width: 920px; }
        .note { font-size: 12.5px; margin: 6px 0 0; }
        .cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-top: 20px; }
        .card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; background: var(--soft); }
        .card .k { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: 0.04em; }
        .card .v { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; margin: 2px 0; }
        .card .d { font-size: 12.5px; color: var(--muted); }
        .card .of { font-size: 13px; font-weight: 400; color: var(--muted); }
        .warnings { background: #fff7e0; border: 1px solid #ecd58a; border-radius: 6px; padding: 4px 16px; margin-top: 18px; }
        .warnings h2 { border: 0; margin: 8px 0 0; font-size: 15px; }
        .legend { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; margin: 4px 0 8px; font-size: 13px; }
        .legend > span { display: inline-flex; align-items: center; gap: 5px; }
        .legend svg { display: block; }
        .sw { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 5px; vertical-align: 0; }
        .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
        figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 10px 10px 8px; }
        figcaption { font-weight: 600; font-size: 13.5px; margin: 0 0 4px 6px; }
        .empty { color: var(--muted); padding: 40px 0; text-align: center; }
        svg.chart { width: 100%; height: auto; display: block; font-family: inherit; }
        svg.chart .plot { fill: #fff; }
        svg.chart .grid { stroke: #edf0f3; stroke-width: 1; }
        svg.chart .axis { stroke: #8a939d; stroke-width: 1; }
        svg.chart .tick { fill: #56606b; font-size: 11px; font-variant-numeric: tabular-nums; }
        svg.chart .label { fill: #2f3741; font-size: 12px; }
        svg.chart .front { fill: none; stroke: #2b2f33; stroke-width: 1.5; stroke-opacity: 0.75; }
        svg.chart .ring { fill: none; stroke: #1d232b; stroke-width: 1.5; }
        svg.chart .dot { stroke: #fff; stroke-width: 1; fill-opacity: \(shortNumber(dotOpacity)); }
        svg.chart .curve { fill: none; stroke-width: 2; stroke-linejoin: round; }
        ol.series { list-style: none; padding: 0; margin: 4px 0 10px; display: flex; flex-wrap: wrap; gap: 4px 22px; font-size: 13px; }
        ol.series li { display: inline-flex; align-items: center; gap: 6px; }
        table.board { width: 100%; border-collapse: collapse; font-size: 13px; }
        .board th { text-align: left; font-weight: 600; color: #3b444e; background: var(--soft); border-bottom: 1px solid #c5ccd4;
                    padding: 6px 6px; white-space: nowrap; }
        .board td { padding: 5px 6px; border-bottom: 1px solid #eceff2; vertical-align: baseline; }
        .board tbody tr:nth-child(even) td { background: #fafbfc; }
        .board tr.failed td { background: #fff6f6; }
        .board .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .board .nowrap { white-space: nowrap; }
        .board .hp { color: #39424c; font-size: 12px; min-width: 15em; }
        .board .error { color: #9b1c1c; }
        .pill { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px; background: #e8eef6; color: #2b4d78; }
        .status { font-size: 12px; font-weight: 600; }
        .status.ok { color: #2d7a3a; }
        .status.failed { color: #b42318; }
        footer { margin-top: 28px; font-size: 12.5px; border-top: 1px solid var(--line); padding-top: 10px; }

        """
}

extension String {
    var sentenceCased: String { prefix(1).uppercased() + dropFirst() }
}
