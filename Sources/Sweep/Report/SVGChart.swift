// Small SVG charts for the report: scatter plots with a Pareto step line, and line charts. Plain
// strings, fixed number formats and no randomness, so a page is byte-for-byte reproducible. Not a
// plotting library: two chart kinds, linear or log x, nothing interactive beyond SVG <title> tooltips.
import Foundation
import Training

/// Escapes text for HTML and SVG content and attribute values.
public func escapeHTML(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for ch in text.unicodeScalars {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default:
            // Control characters other than tab and newline are not allowed in HTML or XML text;
            // a bidirectional override would reverse the rest of its cell as displayed.
            if ch.value < 0x20 && ch != "\t" && ch != "\n" || TerminalText.isBidiControl(ch) { out += "\u{FFFD}" } else { out.unicodeScalars.append(ch) }
        }
    }
    return out
}

/// A coordinate with two decimals: enough for a 560-pixel chart, short in the file.
func svgNumber(_ value: Double) -> String { String(format: "%.2f", value) }

/// A number on an axis tick: 3 significant digits with k/M/G for thousands, millions, billions.
func compactNumber(_ value: Double) -> String {
    let magnitude = abs(value)
    let (scaled, suffix): (Double, String) = magnitude >= 1e9 ? (value / 1e9, "G") : magnitude >= 1e6 ? (value / 1e6, "M")
        : magnitude >= 1e3 ? (value / 1e3, "k") : (value, "")
    var text = String(format: "%.3g", scaled)
    if text.contains("e") { text = String(format: "%.0f", scaled) }
    return text + suffix
}

/// An axis: maps data values onto [0, 1] and picks ticks.
struct ChartAxis {
    var low: Double
    var high: Double
    var logarithmic: Bool
    /// Ticks only at whole numbers (epochs).
    var integral = false

    /// An axis covering `values` with a margin; log axes need positive values.
    init(covering values: [Double], logarithmic: Bool, margin: Double = 0.06, minimumSpan: Double = 0) {
        self.logarithmic = logarithmic
        // Clamped, so that no span overflows: losses of ±1e308 in a results line had put NaN
        // coordinates in the page.
        let data = logarithmic ? values.filter { $0 > 0 }.map(log10) : values.map(Self.clamped)
        var lo = data.min() ?? 0, hi = data.max() ?? 1
        let span = max(hi - lo, logarithmic ? 0.6 : minimumSpan, 1e-9)
        let middle = (lo + hi) / 2
        if hi - lo < span { lo = middle - span / 2; hi = middle + span / 2 }
        low = lo - margin * span
        high = hi + margin * span
    }

    init(low: Double, high: Double) {
        self.low = low
        self.high = high
        logarithmic = false
    }

    /// Position in [0, 1] along the axis.
    func fraction(_ value: Double) -> Double {
        let v = logarithmic ? log10(max(value, 1e-300)) : Self.clamped(value)
        return (v - low) / (high - low)
    }

    /// A value within ±1e300, where differences and margins of two stay finite.
    static func clamped(_ value: Double) -> Double { min(max(value, -1e300), 1e300) }

    /// Tick values: 1-2-5 steps on linear axes; powers of ten on log axes, with 2× and 5× (or every
    /// integer multiple) added when the range covers too few decades to show three ticks.
    func ticks() -> [Double] {
        if logarithmic {
            let first = Int(floor(low)), last = Int(ceil(high))
            for multiples in [[1.0], [1.0, 2.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
                var values: [Double] = []
                for exponent in first...last {
                    for m in multiples {
                        let v = m * pow(10, Double(exponent))
                        let l = log10(v)
                        if l >= low - 1e-9 && l <= high + 1e-9 { values.append(v) }
                    }
                }
                if values.count >= 3 || multiples.count == 9 { return values }
            }
            return []
        }
        // The finest 1-2-5 step that gives at most seven intervals.
        let span = high - low
        let power = pow(10, floor(log10(span / 7)))
        let steps = (integral ? [1.0, 2.0, 5.0, 10.0] : [1.0, 2.0, 2.5, 5.0, 10.0]).map { $0 * power }
        var step = steps.first { span / $0 <= 7 } ?? 10 * power
        if integral { step = max(step.rounded(), 1) }
        // By index, at most eight: adding a step finer than the values' own precision (a loss of
        // 1e14 that hardly moved) would never get past `high`.
        var values: [Double] = []
        let first = (low / step).rounded(.up)
        for i in 0..<8 {
            let v = (first + Double(i)) * step
            guard v <= high + step * 1e-9, v.isFinite else { break }
            if values.last != v { values.append(abs(v) < step * 1e-9 ? 0 : v) }
        }
        return values
    }
}

/// One point of a scatter chart.
struct ScatterPoint {
    var x: Double
    var y: Double
    var color: String
    var tooltip: String
    var onFront: Bool
}

/// One series of a line chart.
struct LineSeries {
    var points: [(x: Double, y: Double)]
    var color: String
    var label: String
}

/// The frame shared by both chart kinds: plot area, grid, ticks and axis labels.
struct ChartFrame {
    let width = 560.0
    let height = 360.0
    let left = 62.0
    let right = 18.0
    let top = 16.0
    let bottom = 52.0
    var x: ChartAxis
    var y: ChartAxis
    var xLabel: String
    var yLabel: String
    var xFormat: (Double) -> String
    var yFormat: (Double) -> String

    var plotWidth: Double { width - left - right }
    var plotHeight: Double { height - top - bottom }
    func sx(_ v: Double) -> Double { left + x.fraction(v) * plotWidth }
    func sy(_ v: Double) -> Double { top + (1 - y.fraction(v)) * plotHeight }

    func open(title: String) -> String {
        var s = "<svg class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(escapeHTML(title))\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        s += "<rect class=\"plot\" x=\"\(svgNumber(left))\" y=\"\(svgNumber(top))\" width=\"\(svgNumber(plotWidth))\" height=\"\(svgNumber(plotHeight))\"/>\n"
        for v in y.ticks() {
            let py = sy(v)
            s += "<line class=\"grid\" x1=\"\(svgNumber(left))\" x2=\"\(svgNumber(left + plotWidth))\" y1=\"\(svgNumber(py))\" y2=\"\(svgNumber(py))\"/>"
            s += "<text class=\"tick\" x=\"\(svgNumber(left - 7))\" y=\"\(svgNumber(py + 4))\" text-anchor=\"end\">\(escapeHTML(yFormat(v)))</text>\n"
        }
        // Log axes get many ticks; leave out labels that would collide with the previous one.
        var lastLabelEnd = -Double.infinity
        for v in x.ticks() {
            let pxv = sx(v)
            let label = xFormat(v)
            s += "<line class=\"grid\" x1=\"\(svgNumber(pxv))\" x2=\"\(svgNumber(pxv))\" y1=\"\(svgNumber(top))\" y2=\"\(svgNumber(top + plotHeight))\"/>"
            s += "<line class=\"axis\" x1=\"\(svgNumber(pxv))\" x2=\"\(svgNumber(pxv))\" y1=\"\(svgNumber(top + plotHeight))\" y2=\"\(svgNumber(top + plotHeight + 5))\"/>"
            let halfWidth = Double(label.count) * 3.6
            if pxv - halfWidth > lastLabelEnd + 6 {
                s += "<text class=\"tick\" x=\"\(svgNumber(pxv))\" y=\"\(svgNumber(top + plotHeight + 19))\" text-anchor=\"middle\">\(escapeHTML(label))</text>"
                lastLabelEnd = pxv + halfWidth
            }
            s += "\n"
        }
        s += "<line class=\"axis\" x1=\"\(svgNumber(left))\" x2=\"\(svgNumber(left + plotWidth))\" y1=\"\(svgNumber(top + plotHeight))\" y2=\"\(svgNumber(top + plotHeight))\"/>"
        s += "<line class=\"axis\" x1=\"\(svgNumber(left))\" x2=\"\(svgNumber(left))\" y1=\"\(svgNumber(top))\" y2=\"\(svgNumber(top + plotHeight))\"/>\n"
        s += "<text class=\"label\" x=\"\(svgNumber(left + plotWidth / 2))\" y=\"\(svgNumber(height - 10))\" text-anchor=\"middle\">\(escapeHTML(xLabel))</text>\n"
        s += "<text class=\"label\" transform=\"translate(16 \(svgNumber(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(escapeHTML(yLabel))</text>\n"
        return s
    }
}

enum SVGCharts {
    /// A scatter plot with the Pareto front drawn as a step line through the front's points and
    /// on to the right edge: the best value reachable at each cost.
    static func scatter(title: String, points: [ScatterPoint], frame: ChartFrame) -> String {
        var s = frame.open(title: title)
        let front = points.filter(\.onFront).sorted { ($0.x, -$0.y) < ($1.x, -$1.y) }
        if let first = front.first {
            var path = "M\(svgNumber(frame.sx(first.x))) \(svgNumber(frame.sy(first.y)))"
            for p in front.dropFirst() { path += " H\(svgNumber(frame.sx(p.x))) V\(svgNumber(frame.sy(p.y)))" }
            path += " H\(svgNumber(frame.left + frame.plotWidth))"
            s += "<path class=\"front\" d=\"\(path)\"/>\n"
        }
        // Front points last, so their rings are never hidden under other points.
        for p in points.filter({ !$0.onFront }) + front {
            let cx = svgNumber(frame.sx(p.x)), cy = svgNumber(frame.sy(p.y))
            s += "<g><title>\(escapeHTML(p.tooltip))</title>"
            if p.onFront { s += "<circle class=\"ring\" cx=\"\(cx)\" cy=\"\(cy)\" r=\"8.5\"/>" }
            s += "<circle class=\"dot\" cx=\"\(cx)\" cy=\"\(cy)\" r=\"5\" fill=\"\(p.color)\"/></g>\n"
        }
        return s + "</svg>"
    }

    /// Lines with a marker on every point.
    static func lines(title: String, series: [LineSeries], frame: ChartFrame) -> String {
        var s = frame.open(title: title)
        for line in series {
            let path = line.points.enumerated().map { i, p in "\(i == 0 ? "M" : "L")\(svgNumber(frame.sx(p.x))) \(svgNumber(frame.sy(p.y)))" }.joined(separator: " ")
            s += "<g><title>\(escapeHTML(line.label))</title>"
            s += "<path class=\"curve\" d=\"\(path)\" stroke=\"\(line.color)\"/>"
            for p in line.points {
                s += "<circle cx=\"\(svgNumber(frame.sx(p.x)))\" cy=\"\(svgNumber(frame.sy(p.y)))\" r=\"3\" fill=\"\(line.color)\"/>"
            }
            s += "</g>\n"
        }
        return s + "</svg>"
    }
}
