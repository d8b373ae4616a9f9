// CSV and TSV records: a header row names the columns; CSV follows RFC 4180 quoting (a quoted field
// may hold commas, doubled quotes and line breaks), TSV splits on every tab. Deliberately lenient in
// one place, as Python's csv module is: a quote inside an unquoted field is kept as a character.

/// Turns a CSV or TSV file's records into examples, picking columns by header name.
struct DelimitedTextParser {
    enum Delimiter: UInt8 {
        case comma = 0x2C
        case tab = 0x09
    }

    let file: String
    let delimiter: Delimiter
    /// Field count of the header; every row must have as many.
    let fieldCount: Int
    let textIndex: Int
    let labelIndex: Int
    let textPairIndex: Int?
    let columns: TextColumns

    /// Reads the header row and locates the columns.
    init(lines: LineReader, delimiter: Delimiter, columns: TextColumns) throws(DatasetError) {
        self.file = lines.path
        self.delimiter = delimiter
        self.columns = columns
        guard let header = try Self.nextRecord(from: lines, file: lines.path, delimiter: delimiter) else {
            throw .emptySplit(file: lines.path)
        }
        func index(of column: String) throws(DatasetError) -> Int {
            guard let index = header.fields.firstIndex(of: column) else {
                throw .missingColumn(file: lines.path, column: column, available: header.fields)
            }
            // Which of two same-named columns is meant cannot be told; taking the first is a guess.
            guard header.fields.lastIndex(of: column) == index else { throw .duplicateColumn(file: lines.path, column: column) }
            return index
        }
        fieldCount = header.fields.count
        textIndex = try index(of: columns.text)
        labelIndex = try index(of: columns.label)
        if let pair = columns.textPair {
            // The default pair column is optional; one the user named must exist.
            textPairIndex = pair == TextColumns.defaultTextPair && !header.fields.contains(pair) ? nil : try index(of: pair)
        } else {
            textPairIndex = nil
        }
    }

    /// The next row's example, or nil at the end of the file.
    func next(from lines: LineReader) throws(DatasetError) -> ParsedExample? {
        guard let record = try Self.nextRecord(from: lines, file: file, delimiter: delimiter) else { return nil }
        guard record.fields.count == fieldCount else {
            throw .wrongFieldCount(file: file, line: record.line, expected: fieldCount, found: record.fields.count)
        }
        let label = record.fields[labelIndex]
        guard !label.isEmpty else {
            throw .wrongType(
                file: file, line: record.line, key: columns.label, expected: "a non-empty string", found: "an empty field")
        }
        return ParsedExample(
            line: record.line,
            text: record.fields[textIndex],
            textPair: textPairIndex.map { record.fields[$0] },
            label: label)
    }

    /// The next non-empty record's fields and the line it starts on, or nil at the end of the file.
    static func nextRecord(
        from lines: LineReader, file: String, delimiter: Delimiter
    ) throws(DatasetError) -> (fields: [String], line: Int)? {
        var bytes: [UInt8] = []
        repeat {
            guard let next = try lines.nextLine() else { return nil }
            bytes = next
        } while bytes.isEmpty
        let line = lines.lineNumber
        let rawFields: [[UInt8]]
        switch delimiter {
        case .tab:
            rawFields = bytes.split(separator: delimiter.rawValue, omittingEmptySubsequences: false).map(Array.init)
        case .comma:
            rawFields = try splitCSV(first: bytes, line: line, lines: lines, file: file)
        }
        var fields: [String] = []
        fields.reserveCapacity(rawFields.count)
        for raw in rawFields {
            guard let field = String(validating: raw, as: UTF8.self) else {
                throw .invalidUTF8(file: file, line: line)
            }
            fields.append(field)
        }
        return (fields, line)
    }

    private enum QuoteState {
        /// At the start of a field.
        case fieldStart
        /// Inside a field that did not open with a quote.
        case unquoted
        /// Inside a quoted field.
        case quoted
        /// Just after a quote inside a quoted field: a second quote is a literal quote, a
        /// delimiter or the line's end closes the field, anything else is malformed.
        case quoteInQuoted
    }

    /// Splits one CSV record into raw fields; a quoted field that runs past the line's end
    /// continues on the next line, joined by "\n".
    private static func splitCSV(
        first: [UInt8], line: Int, lines: LineReader, file: String
    ) throws(DatasetError) -> [[UInt8]] {
        let quote: UInt8 = 0x22
        let comma = Delimiter.comma.rawValue
        var fields: [[UInt8]] = []
        var field: [UInt8] = []
        var state = QuoteState.fieldStart
        var bytes = first
        while true {
            for byte in bytes {
                switch state {
                case .fieldStart:
                    if byte == quote {
                        state = .quoted
                    } else if byte == comma {
                        fields.append(field)
                        field = []
                    } else {
                        field.append(byte)
                        state = .unquoted
                    }
                case .unquoted:
                    if byte == comma {
                        fields.append(field)
                        field = []
                        state = .fieldStart
                    } else {
                        field.append(byte)
                    }
                case .quoted:
                    if byte == quote {
                        state = .quoteInQuoted
                    } else {
                        field.append(byte)
                    }
                case .quoteInQuoted:
                    if byte == quote {
                        field.append(quote)
                        state = .quoted
                    } else if byte == comma {
                        fields.append(field)
                        field = []
                        state = .fieldStart
                    } else {
                        throw .malformedCSV(
                            file: file, line: lines.lineNumber,
                            detail: "text after a closing quote; quote the whole field and double inner quotes")
                    }
                }
            }
            guard state == .quoted else { break }
            guard let next = try lines.nextLine() else {
                throw .malformedCSV(file: file, line: line, detail: "a quoted field opened here is never closed")
            }
            field.append(0x0A)
            bytes = next
        }
        fields.append(field)
        return fields
    }
}

/// The rows of a CSV or TSV file with a header, for inputs that carry no label (`predict`): the
/// text column and an optional pair column, by name, read as the dataset reader reads them.
public final class DelimitedInputs {
    private let lines: LineReader
    private let parser: DelimitedTextParser

    /// Reads the header of `path` (tab-separated when `tab`) and locates `text` and `pair`; a pair
    /// column under the default name may be absent, as in a dataset.
    public init(path: String, tab: Bool, text: String, pair: String?) throws(DatasetError) {
        lines = try LineReader(path: path)
        // The label column is not read: it is looked up as the text column.
        parser = try DelimitedTextParser(lines: lines, delimiter: tab ? .tab : .comma,
                                         columns: TextColumns(text: text, label: text, textPair: pair))
    }

    /// The next row's line, text and pair text, or nil at the end of the file.
    public func next() throws(DatasetError) -> (line: Int, text: String, pair: String?)? {
        guard let record = try DelimitedTextParser.nextRecord(from: lines, file: parser.file, delimiter: parser.delimiter) else { return nil }
        guard record.fields.count == parser.fieldCount else {
            throw .wrongFieldCount(file: parser.file, line: record.line, expected: parser.fieldCount, found: record.fields.count)
        }
        return (record.line, record.fields[parser.textIndex], parser.textPairIndex.map { record.fields[$0] })
    }
}
