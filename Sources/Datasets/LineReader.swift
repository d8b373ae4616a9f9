// LineReader: a file read line by line through one fixed chunk buffer, so a 1 GB JSON Lines file
// costs a megabyte of memory, not a gigabyte. It hands out raw bytes; UTF-8 validation and
// parsing belong to the format readers. Deliberately not a general text-stream abstraction.

import Foundation

/// Reads a file's lines in order, without their terminators ("\n", or "\r\n").
///
/// The buffer grows only when one line is longer than it, up to `maximumLineLength`.
public final class LineReader {
    /// The path as given, for messages.
    public let path: String
    /// 1-based number of the line most recently returned (0 before the first).
    public private(set) var lineNumber = 0

    private let file: UnsafeMutablePointer<FILE>
    private let maximumLineLength: Int
    private var buffer: [UInt8]
    /// The unconsumed bytes are `buffer[start..<end]`.
    private var start = 0
    private var end = 0
    private var reachedEndOfFile = false

    /// Opens `path` for reading in chunks of `chunkSize` bytes.
    public init(path: String, chunkSize: Int = 1 << 20, maximumLineLength: Int = 1 << 26) throws(DatasetError) {
        precondition(chunkSize > 0 && maximumLineLength >= chunkSize, "chunk \(chunkSize), limit \(maximumLineLength)")
        guard let file = fopen(path, "rb") else {
            throw .cannotOpen(file: path, reason: String(cString: strerror(errno)))
        }
        self.path = path
        self.file = file
        self.maximumLineLength = maximumLineLength
        self.buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    deinit {
        fclose(file)
    }

    /// The next line's bytes, or nil at the end of the file. A UTF-8 byte-order mark opening the
    /// first line is dropped, as is a final "\r".
    public func nextLine() throws(DatasetError) -> [UInt8]? {
        // Bytes of the pending line already searched for "\n", so a long line is scanned once.
        var searched = 0
        while true {
            let newline = buffer.withUnsafeBytes { raw -> Int? in
                let from = start + searched
                guard from < end, let found = memchr(raw.baseAddress! + from, 0x0A, end - from) else { return nil }
                return raw.baseAddress!.distance(to: UnsafeRawPointer(found))
            }
            if let newline {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return finish(line)
            }
            if reachedEndOfFile {
                guard start < end else { return nil }
                let line = Array(buffer[start..<end])
                start = end
                return finish(line)
            }
            searched = end - start
            try refill()
        }
    }

    /// Moves the pending bytes to the front, grows the buffer if one line fills it, and reads.
    private func refill() throws(DatasetError) {
        if start > 0 {
            let pending = end - start
            buffer.withUnsafeMutableBytes { raw in
                _ = memmove(raw.baseAddress!, raw.baseAddress! + start, pending)
            }
            start = 0
            end = pending
        }
        if end == buffer.count {
            guard buffer.count < maximumLineLength else {
                throw .lineTooLong(file: path, line: lineNumber + 1, limit: maximumLineLength)
            }
            buffer.append(contentsOf: repeatElement(0, count: min(buffer.count, maximumLineLength - buffer.count)))
        }
        let capacity = buffer.count - end
        let count = buffer.withUnsafeMutableBytes { raw in
            fread(raw.baseAddress! + end, 1, capacity, file)
        }
        if count < capacity {
            if ferror(file) != 0 {
                throw .readFailed(file: path, reason: String(cString: strerror(errno)))
            }
            reachedEndOfFile = true
        }
        end += count
    }

    private func finish(_ line: [UInt8]) -> [UInt8] {
        lineNumber += 1
        var line = line
        if line.last == 0x0D {
            line.removeLast()
        }
        if lineNumber == 1, line.starts(with: [0xEF, 0xBB, 0xBF]) {
            line.removeFirst(3)
        }
        return line
    }
}
