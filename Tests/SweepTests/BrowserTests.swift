// The report in a real browser: headless Chromium renders the page of a realistic sweep to PNG and
// dumps the DOM it parsed. Skipped, saying why, where Chromium is not installed (`make setup`
// installs Debian's `chromium`). Set SIDECAR_REPORT_KEEP=DIR to keep the page and the picture.
import Datasets
import Foundation
import XCTest
@testable import Sweep

final class BrowserTests: XCTestCase {
    func testChromiumRendersTheReportWithEveryTrial() throws {
        guard let chromium = Chromium.find() else {
            throw XCTSkip("headless Chromium is not installed (apt-get install chromium, or make setup)")
        }
        let folder = try temporaryFolder("browser")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (ids, failed) = try writeRealisticSweep(to: folder)
        let set = try ResultsReader.read(folder: folder.path)
        let report = HTMLReport(results: set, metric: .valAccuracy, folderName: "results/sweep-demo")
        let page = folder.appendingPathComponent("report.html")
        try Data(report.render().utf8).write(to: page)
        let png = folder.appendingPathComponent("report.png")
        try chromium.screenshot(page: page, to: png, width: 1200, height: 2400)
        if let keep = ProcessInfo.processInfo.environment["SIDECAR_REPORT_KEEP"] {
            try? FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
            for file in [page, png] {
                let target = URL(fileURLWithPath: keep).appendingPathComponent(file.lastPathComponent)
                try? FileManager.default.removeItem(at: target)
                try FileManager.default.copyItem(at: file, to: target)
            }
        }

        // The picture: the whole window, not blank, with the head colours drawn.
        let image = try ImageDecoder.decode(file: png.path)
        XCTAssertEqual(image.width, 1200)
        XCTAssertEqual(image.height, 2400)
        var colours = Set<UInt32>()
        var nonWhite = 0
        var counts: [UInt32: Int] = [:]
        for i in 0..<(image.width * image.height) {
            let r = UInt32(image.pixels[3 * i]), g = UInt32(image.pixels[3 * i + 1]), b = UInt32(image.pixels[3 * i + 2])
            let rgb = r << 16 | g << 8 | b
            colours.insert(rgb)
            counts[rgb, default: 0] += 1
            if r < 245 || g < 245 || b < 245 { nonWhite += 1 }
        }
        let fraction = Double(nonWhite) / Double(image.width * image.height)
        print("report.png: \(colours.count) distinct colours, \(String(format: "%.1f", fraction * 100))% not white")
        XCTAssertGreaterThan(colours.count, 200, "the page looks blank or flat")
        XCTAssertGreaterThan(fraction, 0.03, "almost nothing drawn")
        XCTAssertLessThan(fraction, 0.9, "the page is not mostly white: a rendering failure?")
        func pixels(near rgb: [Int], tolerance: Int) -> Int {
            counts.filter { colour, _ in
                zip([Int(colour >> 16), Int(colour >> 8 & 0xFF), Int(colour & 0xFF)], rgb).allSatisfy { abs($0 - $1) <= tolerance }
            }.values.reduce(0, +)
        }
        func channels(_ hex: String) -> [Int] {
            let value = Int(hex.dropFirst(), radix: 16)!
            return [value >> 16, value >> 8 & 0xFF, value & 0xFF]
        }
        // Scatter dots are translucent on the white plot, so their inside has a colour of its own
        // (the solid swatches in legends and table do not count): each head must show up there.
        for head in Set(set.trials.filter { $0.status == .ok }.map(\.head)).sorted() {
            let blended = channels(report.color(of: head)).map { Int((Double($0) * HTMLReport.dotOpacity + 255 * (1 - HTMLReport.dotOpacity)).rounded()) }
            let found = pixels(near: blended, tolerance: 2)
            print("\(head): \(found) pixels of its scatter colour")
            XCTAssertGreaterThan(found, 40, "\(head)'s scatter points (\(blended)) are not in the screenshot")
        }
        // Learning curves: each of the five series' colours along its line, well beyond its legend key.
        for hex in HTMLReport.curvePalette.prefix(5) {
            let found = pixels(near: channels(hex), tolerance: 0)
            print("curve \(hex): \(found) pixels")
            XCTAssertGreaterThan(found, 120, "learning curve colour \(hex) is not drawn")
        }

        // The DOM Chromium built: one table row per trial, failed ones with their reason.
        let dom = try chromium.dumpDOM(page: page)
        XCTAssertTrue(dom.contains("<table class=\"board\">"), "no leaderboard in the DOM")
        let rows = dom.components(separatedBy: "<tr class=\"").dropFirst().map { $0.prefix(while: { $0 != "\"" }) }
        XCTAssertEqual(rows.filter { $0 == "ok" }.count, ids.count - failed.count)
        XCTAssertEqual(rows.filter { $0 == "failed" }.count, failed.count)
        for id in ids { XCTAssertEqual(dom.components(separatedBy: "data-trial=\"\(id)\"").count - 1, 1, "trial \(id) not once in the table") }
        XCTAssertTrue(dom.contains("layers [7] out of range: the cache holds layers 0-6"))
        XCTAssertEqual(dom.components(separatedBy: "<svg class=\"chart\"").count - 1, 4, "expected four charts")
    }
}
