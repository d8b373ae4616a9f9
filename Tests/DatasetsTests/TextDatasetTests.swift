// Text datasets: JSON Lines, CSV and TSV folders written to temporary folders, read back, and every
// error the brief lists provoked once, checking the message names the file and the line.

@testable import Datasets
import Foundation
import Testing

@Suite struct TextDatasetTests {
    @Test func readsJSONLinesWithStringAndIntegerLabels() throws {
        let folder = try TemporaryFolder()
        try folder.write("train.jsonl", """
            {"text": "first", "label": "b"}
            {"text": "second", "label": "a", "text_pair": "pair", "extra": [1, 2]}

            {"text": "third", "label": "b", "text_pair": null}

            """)
        try folder.write("test.jsonl", "{\"text\": \"x\", \"label\": \"7\"}\n")
        let source = try TextDatasetSource(directory: folder.path)
        #expect(source.format == .jsonLines)
        #expect(source.splits == [.train, .test])
        let examples = try source.examples(.train)
        #expect(examples == [
            TextExample(index: 0, line: 1, text: "first", label: "b"),
            TextExample(index: 1, line: 2, text: "second", textPair: "pair", label: "a"),
            TextExample(index: 2, line: 4, text: "third", label: "b"),
        ])
        #expect(try source.examples(.test).map(\.label) == ["7"])
        let labels = try source.labelMap()
        #expect(labels.names == ["a", "b"])
        #expect(try source.examples(.train, labels: labels).map(\.labelID) == [1, 0, 1])
        // Integer labels read as their decimal names.
        let integers = try TemporaryFolder()
        try integers.write("train.jsonl", "{\"text\": \"x\", \"label\": 7}\n{\"text\": \"y\", \"label\": 10}\n")
        try integers.write("test.jsonl", "{\"text\": \"x\", \"label\": 7}\n")
        let numbered = try TextDatasetSource(directory: integers.path)
        #expect(try numbered.labelMap().names == ["7", "10"])
        #expect(try numbered.examples(.test, labels: try numbered.labelMap()).map(\.labelID) == [0])
    }

    @Test func labelOrderIsNumericForIntegersAndCodePointOtherwise() {
        #expect(LabelMap(collecting: ["10", "2", "0", "1", "2"]).names == ["0", "1", "2", "10"])
        #expect(LabelMap(collecting: ["b", "B", "a", "é", "10", "9"]).names == ["10", "9", "B", "a", "b", "é"])
        let map = LabelMap(names: ["x", "y"])
        #expect(map.id(of: "y") == 1 && map.id(of: "z") == nil && map.name(of: 0) == "x")
        // Labels are told apart by their code points, as Python does: Swift's String equality
        // had merged canonically equivalent ones into one class.
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}", angstrom = "\u{212B}", ring = "\u{C5}"
        let exact = LabelMap(collecting: [composed, decomposed, angstrom, ring, composed])
        #expect(exact.names.map { Array($0.unicodeScalars) } == [decomposed, composed, ring, angstrom].map { Array($0.unicodeScalars) })
        #expect(exact.id(of: decomposed) == 0 && exact.id(of: composed) == 1 && exact.id(of: angstrom) == 3)
    }

    @Test func readsTheCommittedTinyDataset() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../datasets/tiny").standardized.path
        let source = try TextDatasetSource(directory: directory)
        #expect(source.splits == [.train, .validation, .test])
        let labels = try source.labelMap()
        #expect(labels.names == ["animals", "food", "weather"])
        #expect(try source.examples(.train, labels: labels).count == 40)
        #expect(try source.examples(.validation, labels: labels).count == 10)
        #expect(try source.examples(.test, labels: labels).count == 10)
    }

    @Test func readsCSVWithRFC4180Quoting() throws {
        let folder = try TemporaryFolder()
        // A BOM, CRLF line ends, quoted commas, doubled quotes, a quoted line break, a literal
        // quote inside an unquoted field, an empty field and a trailing blank line.
        let csv = "\u{FEFF}id,label,text\r\n"
            + "1,pos,\"hello, world\"\r\n"
            + "2,neg,\"she said \"\"no\"\"\"\r\n"
            + "3,pos,\"two\r\nlines\"\r\n"
            + "4,neg,a 5\" screen\r\n"
            + "5,pos,\r\n"
            + "\r\n"
        try folder.write("train.csv", csv)
        let source = try TextDatasetSource(directory: folder.path)
        #expect(source.format == .csv)
        let examples = try source.examples(.train)
        #expect(examples.map(\.text) == ["hello, world", "she said \"no\"", "two\nlines", "a 5\" screen", ""])
        #expect(examples.map(\.line) == [2, 3, 4, 6, 7])
        #expect(examples.allSatisfy { $0.textPair == nil })
    }

    @Test func readsTSVWithChosenColumns() throws {
        let folder = try TemporaryFolder()
        try folder.write("train.tsv", "sentence1\tsentence2\tgold\nA man.\tA person.\tentailment\n\"q\"\tb\tneutral\n")
        try folder.write("val.tsv", "sentence1\tsentence2\tgold\nx\ty\tentailment\n")
        let columns = TextColumns(text: "sentence1", label: "gold", textPair: "sentence2")
        let source = try TextDatasetSource(directory: folder.path, columns: columns)
        #expect(source.format == .tsv && source.splits == [.train, .validation])
        let examples = try source.examples(.train)
        #expect(examples.map(\.text) == ["A man.", "\"q\""])
        #expect(examples.map(\.textPair) == ["A person.", "b"])
        #expect(examples.map(\.label) == ["entailment", "neutral"])
    }

    @Test func streamsAcrossChunkBoundaries() throws {
        let folder = try TemporaryFolder()
        var text = ""
        for index in 0..<200 {
            text += "{\"text\": \"\(String(repeating: "word ", count: index % 13))\(index)\", \"label\": \(index % 3)}\n"
        }
        let path = try folder.write("train.jsonl", text)
        // A 7-byte chunk forces refills mid-line and buffer growth for every line.
        let reader = try TextExampleReader(
            lines: LineReader(path: path, chunkSize: 7, maximumLineLength: 1 << 12), format: .jsonLines,
            columns: TextColumns(), labels: nil)
        var count = 0
        while let example = try reader.next() {
            #expect(example.text.hasSuffix(String(example.index)))
            #expect(example.line == example.index + 1)
            count += 1
        }
        #expect(count == 200)
        // The last line without a newline is still read.
        let unterminated = try folder.write("last.txt", "a\nbc")
        let lines = try LineReader(path: unterminated, chunkSize: 1, maximumLineLength: 16)
        #expect(try lines.nextLine() == Array("a".utf8))
        #expect(try lines.nextLine() == Array("bc".utf8))
        #expect(try lines.nextLine() == nil)
    }

    /// Lines end as Python's universal newlines end them: "\n", "\r\n" and a lone "\r" (old Mac
    /// files had been one line), whatever chunk boundary falls between a "\r" and its "\n".
    @Test func linesEndAtLineFeedsCarriageReturnsAndBoth() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("mixed.txt", "\u{FEFF}a\r\nbc\rdef\n\r\nlast\r")
        for chunk in [1, 2, 3, 4, 64] {
            let lines = try LineReader(path: path, chunkSize: chunk, maximumLineLength: 64)
            var read: [String] = []
            while let line = try lines.nextLine() { read.append(String(decoding: line, as: UTF8.self)) }
            #expect(read == ["a", "bc", "def", "", "last"], "chunk \(chunk)")
            #expect(lines.lineNumber == 5)
        }
    }

    // MARK: - Errors

    @Test func missingTrainSplitAndAmbiguousFormat() throws {
        let folder = try TemporaryFolder()
        try folder.write("val.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n")
        expectError(.missingTrainSplit(directory: folder.path, lookedFor: ["train.jsonl", "train.csv", "train.tsv"]),
                    mentions: folder.path) {
            _ = try TextDatasetSource(directory: folder.path)
        }
        try folder.write("train.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n")
        try folder.write("train.csv", "text,label\na,x\n")
        expectError(.ambiguousFormat(directory: folder.path, candidates: ["train.jsonl", "train.csv"]),
                    mentions: "train.csv") {
            _ = try TextDatasetSource(directory: folder.path)
        }
        #expect(try TextDatasetSource(directory: folder.path, format: .csv).format == .csv)

        // A split in another format than the train file, found by extension, is named.
        let mixed = try TemporaryFolder()
        try mixed.write("train.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n")
        try mixed.write("val.csv", "text,label\na,x\n")
        expectError(.mixedFormats(file: mixed.path + "/val.csv", trainFile: mixed.path + "/train.jsonl"), mentions: "val.csv") {
            _ = try TextDatasetSource(directory: mixed.path)
        }
    }

    /// Files named like a split but not read are listed (extract notes them): a validation.jsonl
    /// had left a cache without a val split, and no word of it.
    @Test func filesNamedLikeSplitsButNotReadAreListed() throws {
        let folder = try TemporaryFolder()
        for name in ["train.jsonl", "test.jsonl", "validation.jsonl", "Test.jsonl", "dev.jsonl", "notes.jsonl", "validation.txt"] {
            try folder.write(name, "{\"text\": \"a\", \"label\": \"x\"}\n")
        }
        let source = try TextDatasetSource(directory: folder.path)
        #expect(source.splits == [.train, .test])
        // "Test.jsonl" and "test.jsonl" are two files only where the file system tells case apart.
        let caseSensitive = try FileManager.default.contentsOfDirectory(atPath: folder.path).contains("Test.jsonl")
            && FileManager.default.contentsOfDirectory(atPath: folder.path).contains("test.jsonl")
        #expect(source.overlookedFiles == (caseSensitive ? ["Test.jsonl", "dev.jsonl", "validation.jsonl"] : ["dev.jsonl", "validation.jsonl"]))
    }

    @Test func emptySplit() throws {
        let folder = try TemporaryFolder()
        let train = try folder.write("train.jsonl", "\n  \n")
        expectError(.emptySplit(file: train), mentions: train) {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        let csvFolder = try TemporaryFolder()
        let header = try csvFolder.write("train.csv", "text,label\n")
        expectError(.emptySplit(file: header), mentions: header) {
            _ = try TextDatasetSource(directory: csvFolder.path).examples(.train)
        }
    }

    @Test func invalidUTF8() throws {
        let folder = try TemporaryFolder()
        let bytes = Array("{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"".utf8) + [0xC3, 0x28]
            + Array("\", \"label\": \"a\"}\n".utf8)
        let train = try folder.write("train.jsonl", bytes)
        expectError(.invalidUTF8(file: train, line: 2), mentions: "train.jsonl:2") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        let csvFolder = try TemporaryFolder()
        let csv = try csvFolder.write("train.csv", Array("text,label\n".utf8) + [0xFF] + Array(",a\n".utf8))
        expectError(.invalidUTF8(file: csv, line: 2), mentions: "train.csv:2") {
            _ = try TextDatasetSource(directory: csvFolder.path).examples(.train)
        }
    }

    @Test func invalidJSON() throws {
        let folder = try TemporaryFolder()
        let train = try folder.write("train.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"oops\", \"label\": }\n")
        do {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
            Issue.record("no error")
        } catch {
            guard case .invalidJSON(let file, let line, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(file == train && line == 2)
            #expect("\(error)".contains("train.jsonl:2: invalid JSON"))
        }
        // A column named twice: JSONDecoder keeps the first value, Python's json the last.
        let ambiguous = "\"text\" appears twice in the object; which value is meant is ambiguous"
        for object in [#"{"text": "a", "label": "x", "text": "b"}"#, #"{"te\u0078t": "a", "label": "x", "text": "b"}"#] {
            try folder.write("train.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n" + object + "\n")
            expectError(.invalidJSON(file: train, line: 2, detail: ambiguous), mentions: "train.jsonl:2") {
                _ = try TextDatasetSource(directory: folder.path).examples(.train)
            }
        }
        // The same key inside a nested value, or an unread key twice, is not a repeated column.
        try folder.write("train.jsonl", #"{"text": "a", "meta": {"text": "b", "x": [{"label": 1}]}, "label": "x", "id": 1, "id": 2}"# + "\n")
        #expect(try TextDatasetSource(directory: folder.path).examples(.train).map(\.text) == ["a"])
        try folder.write("train.jsonl", "[\"text\", \"label\"]\n")
        expectError(.invalidJSON(file: train, line: 1, detail: "expected an object {…}, found another JSON value"),
                    mentions: "train.jsonl:1") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
    }

    @Test func aKeyRepeatedAtAnyDepthIsFound() {
        func repeated(_ json: String) -> String? { JSONObjectKeys.repeatedAnywhere(in: Array(json.utf8)) }
        #expect(repeated(#"[{"head": "a", "set": {"x": 1, "y": [1, {"z": 2}], "x": 3}}]"#) == "x")
        #expect(repeated(#"[{"head": "a"}, {"h\u0065ad": "b", "head": "c"}]"#) == "head")
        #expect(repeated(#"{"a": {"b": [{"c": 1, "c": 2}]}}"#) == "c")
        // Keys repeated across objects, strings that look like keys or hold quotes and braces,
        // and array items are not repeats.
        #expect(repeated(#"[{"head": "a", "set": {"head": "b"}}, {"head": "c"}]"#) == nil)
        #expect(repeated(#"{"a": "{\"a\": 1}", "b": ["a", "a"], "c": "}, \"b\""}"#) == nil)
    }

    @Test func missingAndWrongTypedKeys() throws {
        let folder = try TemporaryFolder()
        let train = folder.file("train.jsonl")
        let cases: [(String, DatasetError)] = [
            ("{\"label\": \"a\"}", .missingKey(file: train, line: 1, key: "text")),
            ("{\"text\": \"a\"}", .missingKey(file: train, line: 1, key: "label")),
            ("{\"text\": 5, \"label\": \"a\"}",
             .wrongType(file: train, line: 1, key: "text", expected: "a string", found: "the number 5")),
            ("{\"text\": \"a\", \"label\": true}",
             .wrongType(file: train, line: 1, key: "label", expected: "a non-empty string or an integer", found: "true")),
            ("{\"text\": \"a\", \"label\": 1.5}",
             .wrongType(file: train, line: 1, key: "label", expected: "a non-empty string or an integer", found: "the number 1.5")),
            ("{\"text\": \"a\", \"label\": \"\"}",
             .wrongType(file: train, line: 1, key: "label", expected: "a non-empty string or an integer", found: "an empty string")),
            ("{\"text\": \"a\", \"label\": \"x\", \"text_pair\": [1]}",
             .wrongType(file: train, line: 1, key: "text_pair", expected: "a string or null", found: "an array or object")),
            // A raw tab in a string: it had been called an array or object.
            ("{\"text\": \"a\tb\", \"label\": \"x\"}",
             .wrongType(file: train, line: 1, key: "text", expected: "a string", found: "a value JSON does not allow (a raw control character "
                        + "or a lone surrogate escape in a string, or a number out of range)")),
        ]
        for (line, expected) in cases {
            try folder.write("train.jsonl", line + "\n")
            expectError(expected, mentions: "train.jsonl:1") {
                _ = try TextDatasetSource(directory: folder.path).examples(.train)
            }
        }
        // Labels that mix integers and strings: 1 and "1" would be one class without a word.
        try folder.write("train.jsonl", "{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"b\", \"label\": \"1\"}\n")
        expectError(.wrongType(file: train, line: 3, key: "label", expected: "an integer, as on line 1", found: "a string"), mentions: "train.jsonl:3") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        // And across files: val's "1" is not train's 1 (it had been read as that class).
        try folder.write("train.jsonl", "\n{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 2}\n")
        let val = try folder.write("val.jsonl", "{\"text\": \"a\", \"label\": 2}\n{\"text\": \"c\", \"label\": \"1\"}\n")
        let source = try TextDatasetSource(directory: folder.path)
        expectError(.wrongType(file: val, line: 2, key: "label", expected: "an integer, as in \(train):2", found: "a string"), mentions: "val.jsonl:2") {
            _ = try source.examples(.validation, labels: try source.labelMap())
        }
    }

    @Test func csvFieldCountQuotingAndColumns() throws {
        let folder = try TemporaryFolder()
        let train = try folder.write("train.csv", "text,label\na,x\nb,y,extra\n")
        expectError(.wrongFieldCount(file: train, line: 3, expected: 2, found: 3), mentions: "train.csv:3") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        try folder.write("train.csv", "text,label\n\"never closed,x\nmore\n")
        expectError(.malformedCSV(file: train, line: 2, detail: "a quoted field opened here is never closed"),
                    mentions: "train.csv:2") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        try folder.write("train.csv", "text,label\n\"closed\"x,y\n")
        expectError(.malformedCSV(file: train, line: 2,
                                  detail: "text after a closing quote; quote the whole field and double inner quotes"),
                    mentions: "train.csv:2") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        try folder.write("train.csv", "sentence,label\na,x\n")
        expectError(.missingColumn(file: train, column: "text", available: ["sentence", "label"]),
                    mentions: "train.csv:1") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        // A pair column named by the user must exist; the default one may be absent.
        let columns = TextColumns(text: "sentence", textPair: "second")
        expectError(.missingColumn(file: train, column: "second", available: ["sentence", "label"]),
                    mentions: "\"second\"") {
            _ = try TextDatasetSource(directory: folder.path, columns: columns).examples(.train)
        }
        // Two columns of the name used: which one is meant cannot be told.
        try folder.write("train.csv", "text,label,label\na,x,y\n")
        expectError(.duplicateColumn(file: train, column: "label"), mentions: "train.csv:1") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
        try folder.write("train.csv", "text,label\na,\n")
        expectError(.wrongType(file: train, line: 2, key: "label", expected: "a non-empty string", found: "an empty field"),
                    mentions: "train.csv:2") {
            _ = try TextDatasetSource(directory: folder.path).examples(.train)
        }
    }

    @Test func unknownLabelInValidationOrTest() throws {
        let folder = try TemporaryFolder()
        try folder.write("train.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n")
        let val = try folder.write("val.jsonl", "{\"text\": \"c\", \"label\": \"x\"}\n{\"text\": \"d\", \"label\": \"z\"}\n")
        let source = try TextDatasetSource(directory: folder.path)
        let labels = try source.labelMap()
        expectError(.unknownLabel(file: val, line: 2, label: "z", known: ["x", "y"]), mentions: "val.jsonl:2") {
            _ = try source.examples(.validation, labels: labels)
        }
        // Without a label map the reader does not judge labels.
        #expect(try source.examples(.validation).map(\.label) == ["x", "z"])
    }

    @Test func lineTooLong() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("train.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n" + String(repeating: "x", count: 100))
        let lines = try LineReader(path: path, chunkSize: 8, maximumLineLength: 64)
        _ = try lines.nextLine()
        expectError(.lineTooLong(file: path, line: 2, limit: 64), mentions: "train.jsonl:2") {
            _ = try lines.nextLine()
        }
    }
}
