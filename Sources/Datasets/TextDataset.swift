// Text datasets: a folder holding train.jsonl (or .csv, .tsv) and optionally val.* and test.*,
// read one example at a time. Deliberately no tokenization, no shuffling and no caching here:
// the extractor streams examples straight into the encoder.

import Foundation

/// One of a dataset's three splits; its file is named after `fileStem`.
public enum Split: String, Sendable, CaseIterable, Codable {
    case train
    case validation = "val"
    case test

    /// The file or folder name without extension: "train", "val" or "test".
    public var fileStem: String { rawValue }
}

/// How a text dataset's files are written.
public enum TextFormat: String, Sendable, CaseIterable, Codable {
    /// One JSON object per line.
    case jsonLines = "jsonl"
    /// Comma-separated values with a header row and RFC 4180 quoting.
    case csv
    /// Tab-separated values with a header row; fields are split on every tab, without quoting.
    case tsv

    /// The file extension, without the dot.
    public var fileExtension: String { rawValue }
}

/// The keys (JSON Lines) or header names (CSV/TSV) that hold each part of an example.
public struct TextColumns: Sendable, Equatable, Codable {
    /// The default name of the optional second text.
    public static let defaultTextPair = "text_pair"

    /// The text to classify.
    public var text: String
    /// The label: a string or, in JSON Lines, an integer.
    public var label: String
    /// An optional second text (for sentence-pair tasks). Under its default name it may be
    /// absent; a name chosen by the user must exist in a CSV/TSV header. Nil: never read one.
    public var textPair: String?

    public init(text: String = "text", label: String = "label", textPair: String? = TextColumns.defaultTextPair) {
        self.text = text
        self.label = label
        self.textPair = textPair
    }
}

/// One labelled text read from a split file.
public struct TextExample: Sendable, Equatable {
    /// 0-based position of the example in its split.
    public var index: Int
    /// 1-based line of the file where the example starts, for messages.
    public var line: Int
    public var text: String
    public var textPair: String?
    /// The label's string form (an integer label 3 becomes "3").
    public var label: String
    /// The label's id in the `LabelMap` the reader was opened with; nil when it had none.
    public var labelID: Int?

    public init(index: Int, line: Int, text: String, textPair: String? = nil, label: String, labelID: Int? = nil) {
        self.index = index
        self.line = line
        self.text = text
        self.textPair = textPair
        self.label = label
        self.labelID = labelID
    }
}

/// A text dataset folder: which split files exist, in which format, and how to read them.
public struct TextDatasetSource: Sendable, Equatable {
    public let directory: String
    public let format: TextFormat
    public let columns: TextColumns
    /// The splits whose files exist, in the order train, val, test; train is always present.
    public let splits: [Split]

    /// Finds the split files in `directory`. Without a `format`, the train file's extension
    /// decides it; val and test files must then have the same extension.
    public init(directory: String, format: TextFormat? = nil, columns: TextColumns = TextColumns()) throws(DatasetError) {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .cannotOpen(file: directory, reason: "no such folder")
        }
        let formats = format.map { [$0] } ?? TextFormat.allCases
        let trainFiles = formats.map { "train.\($0.fileExtension)" }
        let found = formats.filter { fileManager.fileExists(atPath: Self.join(directory, "train.\($0.fileExtension)")) }
        guard let chosen = found.first else {
            throw .missingTrainSplit(directory: directory, lookedFor: trainFiles)
        }
        guard found.count == 1 else {
            throw .ambiguousFormat(directory: directory, candidates: found.map { "train.\($0.fileExtension)" })
        }
        self.directory = directory
        self.format = chosen
        self.columns = columns
        self.splits = Split.allCases.filter {
            fileManager.fileExists(atPath: Self.join(directory, "\($0.fileStem).\(chosen.fileExtension)"))
        }
        // Found by the train file's extension, a val.csv beside train.jsonl would be passed over
        // in silence; a format chosen explicitly says which files are meant.
        for split in Split.allCases where format == nil && !splits.contains(split) {
            for other in TextFormat.allCases where other.fileExtension != chosen.fileExtension {
                let file = Self.join(directory, "\(split.fileStem).\(other.fileExtension)")
                if fileManager.fileExists(atPath: file) {
                    throw .mixedFormats(file: file, trainFile: Self.join(directory, "train.\(chosen.fileExtension)"))
                }
            }
        }
    }

    /// Files beside the splits that look like one but are not read: another common name for a
    /// split ("validation.jsonl", "dev.jsonl") or a split's name in other case ("Test.jsonl"), in
    /// the train file's format. They had been passed over in silence.
    public var overlookedFiles: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let read = Set(splits.map { "\($0.fileStem).\(format.fileExtension)" })
        let likeSplits: Set<String> = ["train", "training", "val", "valid", "validation", "dev", "eval", "test", "testing"]
        return names.filter { name in
            let url = URL(fileURLWithPath: name)
            return url.pathExtension.lowercased() == format.fileExtension && !read.contains(name)
                && likeSplits.contains(url.deletingPathExtension().lastPathComponent.lowercased())
        }.sorted()
    }

    /// The path of a split's file (whether or not it exists).
    public func path(of split: Split) -> String {
        Self.join(directory, "\(split.fileStem).\(format.fileExtension)")
    }

    /// Opens a split for reading. With `labels`, each example gets its `labelID`, and a label
    /// missing from the map is an error.
    public func reader(for split: Split, labels: LabelMap? = nil) throws(DatasetError) -> TextExampleReader {
        // Another split's JSON labels must have the train file's type: val's "1" is not train's 1.
        var labelKind: LabelKind? = nil
        if format == .jsonLines && split != .train {
            let train = try TextExampleReader(path: path(of: .train), format: format, columns: columns)
            _ = try train.next()
            labelKind = train.labelKind
        }
        return try TextExampleReader(path: path(of: split), format: format, columns: columns, labels: labels, labelKind: labelKind)
    }

    /// Every example of a split, in file order. For small datasets; large ones use `reader(for:)`.
    public func examples(_ split: Split, labels: LabelMap? = nil) throws(DatasetError) -> [TextExample] {
        let reader = try reader(for: split, labels: labels)
        var examples: [TextExample] = []
        while let example = try reader.next() {
            examples.append(example)
        }
        return examples
    }

    /// The label map of the train split: its distinct labels in `LabelMap.sorted` order.
    public func labelMap() throws(DatasetError) -> LabelMap {
        let reader = try reader(for: .train)
        var names: [String] = [], seen = Set<[UInt8]>()
        while let example = try reader.next() {
            if seen.insert(Array(example.label.utf8)).inserted { names.append(example.label) }
        }
        return LabelMap(names: LabelMap.sorted(names))
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}

/// A cursor over one split file's examples.
public final class TextExampleReader {
    /// The file being read.
    public let file: String
    /// Examples returned so far.
    public private(set) var count = 0

    private let lines: LineReader
    private let labels: LabelMap?
    private let parser: RecordParser

    private enum RecordParser {
        case jsonLines(JSONLinesParser)
        case delimited(DelimitedTextParser)
    }

    /// Opens `path`; a CSV/TSV header is read and checked here. JSON labels must be of
    /// `labelKind`'s type when it is given (the train file's, for another split).
    public convenience init(path: String, format: TextFormat, columns: TextColumns, labels: LabelMap? = nil,
                            labelKind: LabelKind? = nil) throws(DatasetError) {
        try self.init(lines: LineReader(path: path), format: format, columns: columns, labels: labels, labelKind: labelKind)
    }

    init(lines: LineReader, format: TextFormat, columns: TextColumns, labels: LabelMap?, labelKind: LabelKind? = nil) throws(DatasetError) {
        self.file = lines.path
        self.lines = lines
        self.labels = labels
        switch format {
        case .jsonLines:
            parser = .jsonLines(JSONLinesParser(file: lines.path, columns: columns, labelKind: labelKind))
        case .csv, .tsv:
            parser = .delimited(try DelimitedTextParser(lines: lines, delimiter: format == .csv ? .comma : .tab, columns: columns))
        }
    }

    /// The type of a JSON Lines file's labels, once one has been read (nil for CSV and TSV).
    public var labelKind: LabelKind? {
        if case .jsonLines(let parser) = parser { parser.labelKind } else { nil }
    }

    /// The next example, or nil after the last. A split without a single example is an error.
    public func next() throws(DatasetError) -> TextExample? {
        let parsed: ParsedExample?
        switch parser {
        case .jsonLines(let jsonParser):
            parsed = try jsonParser.next(from: lines)
        case .delimited(let delimitedParser):
            parsed = try delimitedParser.next(from: lines)
        }
        guard let parsed else {
            if count == 0 {
                throw .emptySplit(file: file)
            }
            return nil
        }
        var labelID: Int?
        if let labels {
            guard let id = labels.id(of: parsed.label) else {
                throw .unknownLabel(file: file, line: parsed.line, label: parsed.label, known: labels.names)
            }
            labelID = id
        }
        let example = TextExample(
            index: count, line: parsed.line, text: parsed.text, textPair: parsed.textPair,
            label: parsed.label, labelID: labelID)
        count += 1
        return example
    }
}

/// What a format parser extracts from one record, before ids are attached.
struct ParsedExample {
    var line: Int
    var text: String
    var textPair: String?
    var label: String
}
