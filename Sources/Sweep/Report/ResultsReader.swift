// Reads a sweep's results folder: every `*.jsonl` in it (one per shard), merged into one list with
// one record per trial id. It never writes, and it does not look into sub-folders.
//
// Policy for damaged input. Writers append one line per write, so a killed run leaves at most one
// torn line, at the end of a file, without its newline: that line is skipped with a warning. Any
// other line that is not a valid record stops the read with an error naming file:line and the
// fault, because a report that silently drops trials from the middle of a file looks complete and
// is not. Blank lines are ignored.
import Foundation
import TensorCore
import Training

/// What went wrong reading results; each message names the folder, or the file and line.
public enum ReportError: Error, CustomStringConvertible, LocalizedError {
    case missingFolder(String)
    case notAFolder(String)
    case unreadable(String, String)
    case noResultsFiles(String)
    case noTrials(String, files: Int)
    case malformedLine(file: String, line: Int, fault: String)
    case cannotWrite(String, String)
    /// Trials that ran on different caches (their lines' cache manifest hashes).
    case mixedCaches(folder: String, first: (hash: String, file: String), other: (hash: String, file: String))

    public var description: String {
        switch self {
        case .missingFolder(let path):
            return "results folder \(path) does not exist (give the --results folder that sidecar sweep wrote)"
        case .notAFolder(let path):
            return "\(path) is not a folder (give the --results folder that sidecar sweep wrote, not a file in it)"
        case .unreadable(let path, let why):
            return "cannot read \(path): \(why)"
        case .noResultsFiles(let path):
            return "\(path) holds no results files (*.jsonl); has the sweep written any trial yet?"
        case .noTrials(let path, let files):
            return "\(path): \(files) results file\(files == 1 ? "" : "s") but no trials in them; nothing to report"
        case .malformedLine(let file, let line, let fault):
            return "\(file):\(line): \(fault) (fix or delete that line; only a torn last line is skipped)"
        case .cannotWrite(let path, let why):
            return "cannot write \(path): \(why)"
        case .mixedCaches(let folder, let first, let other):
            return "\(folder) holds trials run on different caches (manifest \(first.hash) in \(first.file), \(other.hash) in \(other.file)); "
                + "a trial id names the same trial on either, so one result would hide the other: report each cache's results from their own folder"
        }
    }

    public var errorDescription: String? { description }
}

/// The merged trials of a results folder.
public struct ResultsSet: Sendable {
    /// One record per trial id, in the order ids first appeared.
    public var trials: [ReportedTrial]
    /// The results files read, in reading order.
    public var files: [String]
    /// Lines that held a record (before merging).
    public var recordsRead: Int
    /// Records dropped because another record of the same trial won.
    public var duplicatesDropped: Int
    /// Torn lines skipped, as messages naming file and line.
    public var warnings: [String]
}

public enum ResultsReader {
    /// Reads and merges every `*.jsonl` file in `folder`. Files are read in natural order of their
    /// names (trials-2-of-12 before trials-10-of-12), so "the last record wins" is well defined.
    public static func read(folder: String) throws(ReportError) -> ResultsSet {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else { throw .missingFolder(folder) }
        guard isDirectory.boolValue else { throw .notAFolder(folder) }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw .unreadable(folder, error.localizedDescription)
        }
        let files = resultsFiles(names, in: folder)
        guard !files.isEmpty else { throw .noResultsFiles(folder) }

        var records: [ReportedTrial] = []
        var warnings: [String] = []
        // As sweep refuses to resume on another cache, the report refuses to rank across caches.
        var cache: (hash: String, file: String)?
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw .unreadable(file, "permission denied or not a regular file") }
            let parsed = try parse(data, name: file)
            for record in parsed.records {
                guard case .object(let fields) = record.raw, case .string(let hash) = fields["cache_manifest_hash"] else { continue }
                if let first = cache, first.hash != hash { throw .mixedCaches(folder: folder, first: first, other: (hash, file)) }
                cache = cache ?? (hash, file)
            }
            records += parsed.records
            warnings += parsed.warnings
        }
        let merged = merge(records)
        guard !merged.isEmpty else { throw .noTrials(folder, files: files.count) }
        // A finished trial whose folder lost its head: its metrics stand, but nothing can be
        // scored or exported from it (the sweep trains such a trial again on its next run).
        let lost = merged.filter { $0.status == .ok && SweepRunner.lostHead(SweepRunner.trialFolder(folder, $0.trial)) }.map(\.trial)
        if !lost.isEmpty {
            warnings.append(SweepRunner.lostHeadsWarning(lost, results: folder, then: "(the same sweep again trains them anew)"))
        }
        return ResultsSet(trials: merged, files: files, recordsRead: records.count,
                          duplicatesDropped: records.count - merged.count, warnings: warnings)
    }

    /// The results files among a folder's entries: every `*.jsonl` file that is not hidden, in
    /// natural order. The sweep resumes from the same files the report reads.
    public static func resultsFiles(_ names: [String], in folder: String) -> [String] {
        names.filter { $0.hasSuffix(".jsonl") && !$0.hasPrefix(".") }.sorted(by: naturalFileOrder)
            .map { URL(userPath: folder).appendingPathComponent($0).path }
            .filter { path in
                var isDir: ObjCBool = false
                return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && !isDir.boolValue
            }
    }

    /// Parses one results file's bytes; `name` goes into messages.
    public static func parse(_ data: Data, name: String) throws(ReportError) -> (records: [ReportedTrial], warnings: [String]) {
        var records: [ReportedTrial] = []
        var warnings: [String] = []
        let decoder = JSONDecoder()
        for line in ResultsLines.read(data) {
            do {
                let lineData = Data(line.bytes)
                var record = try decoder.decode(ReportedTrial.self, from: lineData)
                record.raw = try decoder.decode(JSONValue.self, from: lineData)
                record.source = "\(name):\(line.number)"
                records.append(record)
            } catch {
                if line.torn {
                    warnings.append("\(name):\(line.number): skipped a torn last line (\(line.bytes.count) bytes without a newline; "
                                    + "a run killed mid-write leaves one)")
                } else {
                    throw .malformedLine(file: name, line: line.number, fault: describe(error, line: Data(line.bytes)) {
                        (try? decoder.decode(ReportedTrial.self, from: $0)) != nil
                    })
                }
            }
        }
        return (records, warnings)
    }

    /// One record per trial id: a record with status "ok" wins over "failed"; among equals the
    /// later one wins. Keeps the order in which ids first appeared.
    public static func merge(_ records: [ReportedTrial]) -> [ReportedTrial] {
        var merged: [ReportedTrial] = []
        var index: [String: Int] = [:]
        for record in records {
            if let i = index[record.trial] {
                if !(merged[i].status == .ok && record.status == .failed) { merged[i] = record }
            } else {
                index[record.trial] = merged.count
                merged.append(record)
            }
        }
        return merged
    }

    /// A decoding error as one phrase: the key path and what was wrong there. `line`, the text
    /// decoded, tells a number its field cannot hold from text that is not JSON, and `decodes`,
    /// which number it is.
    static func describe(_ error: any Error, line: Data? = nil, decodes: (Data) -> Bool = { _ in false }) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
        }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?:
            let parent = path(context.codingPath)
            return "missing key \"\(parent.isEmpty ? "" : parent + ".")\(key.stringValue)\""
        case .typeMismatch(_, let context)? where context.codingPath.isEmpty:
            return "not a JSON object (each line holds one trial as {\"trial\": ..., \"status\": ..., ...})"
        case .typeMismatch(let type, let context)?:
            return "\(path(context.codingPath)): expected \(typeName(type)), found something else"
        case .valueNotFound(let type, let context)?:
            return "\(path(context.codingPath)): expected \(typeName(type)), found null"
        case .dataCorrupted(let context)?:
            // Foundation's decoder says a number its field cannot hold (1155.5 or 1e20 for a
            // count, 1e400 anywhere) is not valid JSON, and names no key.
            if context.codingPath.isEmpty, let line, (try? JSONSerialization.jsonObject(with: line)) != nil {
                return (refusedNumber(in: line, decodes: decodes).map { "the JSON is valid, but \($0.path) holds \($0.value), out of range for that field" }
                        ?? "the JSON is valid, but a number is out of range for its field")
                    + " (a fraction or a number past 2^63 where a whole number is kept)"
            }
            if context.codingPath.isEmpty {
                return "not a JSON object on one line (\(context.underlyingError.map { "\($0)" } ?? context.debugDescription))"
            }
            return "\(path(context.codingPath)): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") || name.hasSuffix("Metrics") || name.hasSuffix("Epoch") { return "an object" }
            return name
        }
    }
}

/// Names compared with digit runs as numbers: "trials-2" < "trials-10".
func naturalFileOrder(_ a: String, _ b: String) -> Bool {
    func chunks(_ s: String) -> [(isNumber: Bool, text: String)] {
        var result: [(Bool, String)] = []
        for ch in s {
            let digit = ch.isASCII && ch.isNumber
            if let last = result.last, last.0 == digit { result[result.count - 1].1.append(ch) } else { result.append((digit, String(ch))) }
        }
        return result
    }
    let x = chunks(a), y = chunks(b)
    for (p, q) in zip(x, y) where p.text != q.text {
        if p.isNumber && q.isNumber {
            let pn = p.text.drop { $0 == "0" }, qn = q.text.drop { $0 == "0" }
            if pn.count != qn.count { return pn.count < qn.count }
            if pn != qn { return pn < qn }
        } else {
            return p.text < q.text
        }
    }
    if x.count != y.count { return x.count < y.count }
    return a < b
}
