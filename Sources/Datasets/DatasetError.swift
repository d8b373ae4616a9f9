// DatasetError: every fault a reader in this target reports about the user's files. Each message
// names the file (and the 1-based line for text formats) and the fault, and where useful what to do.
// Deliberately one flat enum: callers print it; tests match its cases.

/// A fault in a dataset's files or settings, found while reading them.
public enum DatasetError: Error, Equatable, Sendable, CustomStringConvertible {
    // Layout of a dataset folder.
    /// The folder has no train split file (or, for an image tree, no train/ folder).
    case missingTrainSplit(directory: String, lookedFor: [String])
    /// More than one train file (e.g. train.jsonl and train.csv) and no format was chosen.
    case ambiguousFormat(directory: String, candidates: [String])
    /// A val or test file in another format than the train file (e.g. val.csv beside train.jsonl),
    /// which would otherwise be passed over.
    case mixedFormats(file: String, trainFile: String)
    /// A split file or folder holds no examples.
    case emptySplit(file: String)
    /// A file or folder could not be opened or listed.
    case cannotOpen(file: String, reason: String)
    /// Reading an opened file failed part-way.
    case readFailed(file: String, reason: String)

    // Text formats.
    /// A line (or CSV record) is not valid UTF-8.
    case invalidUTF8(file: String, line: Int)
    /// A line longer than the reader's limit; almost always a binary file or a missing newline.
    case lineTooLong(file: String, line: Int, limit: Int)
    /// A JSON Lines line that is not valid JSON, or valid JSON that is not an object.
    case invalidJSON(file: String, line: Int, detail: String)
    /// A required key (JSON Lines) is absent, or a required field (CSV/TSV) is empty.
    case missingKey(file: String, line: Int, key: String)
    /// A key holds a value of the wrong type, e.g. a number where text is expected.
    case wrongType(file: String, line: Int, key: String, expected: String, found: String)
    /// A CSV/TSV row whose field count differs from the header's.
    case wrongFieldCount(file: String, line: Int, expected: Int, found: Int)
    /// A CSV record that breaks RFC 4180 quoting.
    case malformedCSV(file: String, line: Int, detail: String)
    /// A column named in the settings is absent from the header row.
    case missingColumn(file: String, column: String, available: [String])
    /// A column the settings name appears more than once in the header row.
    case duplicateColumn(file: String, column: String)
    /// A label in a validation or test split that the train split never uses.
    case unknownLabel(file: String, line: Int, label: String, known: [String])

    // Images.
    /// A class folder in val/ or test/ with no counterpart in train/.
    case unknownClass(directory: String, className: String, known: [String])
    /// A class folder in train/ without a single image.
    case emptyClass(directory: String)
    /// A file that is not a PNG or JPEG, or one that is damaged or truncated.
    case brokenImage(file: String, detail: String)
    /// An IDX file with a wrong magic, wrong rank, or a size that disagrees with its header.
    case invalidIDX(file: String, detail: String)
    /// An IDX images file and labels file that disagree.
    case mismatchedIDX(imagesFile: String, labelsFile: String, detail: String)

    // Settings.
    /// A preprocessor_config.json that lacks a needed key or holds an unusable value.
    case invalidPreprocessorConfig(file: String, detail: String)

    public var description: String {
        switch self {
        case .missingTrainSplit(let directory, let lookedFor):
            return "\(directory): no train split (looked for \(lookedFor.joined(separator: ", ")))"
        case .ambiguousFormat(let directory, let candidates):
            return "\(directory): several train files (\(candidates.joined(separator: ", "))); "
                + "choose one with --format jsonl, csv or tsv"
        case .mixedFormats(let file, let trainFile):
            return "\(file): not in the train file's format (\(trainFile)); give every split in one format"
        case .emptySplit(let file):
            return "\(file): the split holds no examples"
        case .cannotOpen(let file, let reason):
            return "\(file): cannot open: \(reason)"
        case .readFailed(let file, let reason):
            return "\(file): read failed: \(reason)"
        case .invalidUTF8(let file, let line):
            return "\(file):\(line): not valid UTF-8; re-encode the file as UTF-8"
        case .lineTooLong(let file, let line, let limit):
            return "\(file):\(line): line longer than \(limit) bytes; is this a text file?"
        case .invalidJSON(let file, let line, let detail):
            return "\(file):\(line): invalid JSON: \(detail)"
        case .missingKey(let file, let line, let key):
            return "\(file):\(line): missing \"\(key)\""
        case .wrongType(let file, let line, let key, let expected, let found):
            return "\(file):\(line): \"\(key)\" must be \(expected), found \(found)"
        case .wrongFieldCount(let file, let line, let expected, let found):
            return "\(file):\(line): \(found) fields, but the header has \(expected)"
        case .malformedCSV(let file, let line, let detail):
            return "\(file):\(line): malformed CSV: \(detail)"
        case .missingColumn(let file, let column, let available):
            return "\(file):1: no column \"\(column)\" in the header (columns: "
                + "\(available.map { "\"\($0)\"" }.joined(separator: ", ")))"
        case .duplicateColumn(let file, let column):
            return "\(file):1: the header names column \"\(column)\" more than once; rename all but one"
        case .unknownLabel(let file, let line, let label, let known):
            return "\(file):\(line): label \"\(label)\" does not occur in the train split "
                + "(known: \(Self.abbreviated(known)))"
        case .unknownClass(let directory, let className, let known):
            return "\(directory): class folder \"\(className)\" has no counterpart in train/ "
                + "(known: \(Self.abbreviated(known)))"
        case .emptyClass(let directory):
            return "\(directory): class folder holds no .png, .jpg or .jpeg files"
        case .brokenImage(let file, let detail):
            return "\(file): cannot decode image: \(detail)"
        case .invalidIDX(let file, let detail):
            return "\(file): invalid IDX file: \(detail)"
        case .mismatchedIDX(let imagesFile, let labelsFile, let detail):
            return "\(imagesFile) and \(labelsFile): \(detail)"
        case .invalidPreprocessorConfig(let file, let detail):
            return "\(file): \(detail)"
        }
    }

    /// The first few names of a long list, so a message stays one readable line.
    private static func abbreviated(_ names: [String]) -> String {
        let shown = names.prefix(10).map { "\"\($0)\"" }.joined(separator: ", ")
        return names.count > 10 ? shown + ", … (\(names.count) in all)" : shown
    }
}
