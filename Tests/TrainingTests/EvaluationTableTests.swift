// `sidecar eval`'s table shows labels as input: a tab or line break in one may not split a row.
import Foundation
import Testing
import Training

@Suite struct EvaluationTableTests {
    @Test func labelsWithControlCharactersKeepOneRowEach() throws {
        let labels = ["a\tb", "line\nbreak", "\u{1B}[31mred"]
        let metrics = ClassificationMetrics(predictions: [0, 1, 2, 2], labels: [0, 1, 2, 1], classes: 3, loss: 0.5)
        let scores = labels.map { #"{"label": \#(String(decoding: try! JSONEncoder().encode($0), as: UTF8.self)), "precision": 1, "recall": 1, "f1": 1, "support": 1}"# }
        let json = #"{"split": "test", "labels": \#(String(decoding: try JSONEncoder().encode(labels), as: UTF8.self)), "#
            + #""metrics": \#(String(decoding: try JSONEncoder().encode(metrics), as: UTF8.self)), "#
            + #""per_class": [\#(scores.joined(separator: ", "))], "logits": []}"#
        let table = try JSONDecoder().decode(Evaluation.self, from: Data(json.utf8)).table()
        let lines = table.split(separator: "\n", omittingEmptySubsequences: false)
        // Title, blank, header, three classes, blank, caption, three confusion rows.
        #expect(lines.count == 11, "\(table)")
        #expect(!table.unicodeScalars.contains { $0 == "\t" || $0 == "\u{1B}" }, "\(table)")
        #expect(lines[3].hasPrefix("a\u{FFFD}b ") && lines[4].hasPrefix("line\u{FFFD}break ") && lines[9].hasPrefix("line\u{FFFD}break "))
    }
}
