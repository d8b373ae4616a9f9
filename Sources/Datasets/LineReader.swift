// LineReader: a file read line by line through one fixed chunk buffer, so a 1 GB JSON Lines file
// costs a megabyte of memory, not a gigabyte. It hands out raw bytes; UTF-8 validation and
// parsing belong to the format readers. Deliberately not a general text-stream abstraction.

import Foundation

/// Reads a file's lines in order, without their terminators ("\n", "\r\n" or "\r").
///
/// The buffer grows only when one line is longer than it, up to `maximumLineLength`.
public final class LineReader {
    /// The path as given, for messages.
    public let path: String
    /// 1-based number of the line most recently returned (0 before the first).
    public private(set) var lineNumber = 0

    /// Read with read(2), which returns what has arrived: fread waited for a whole chunk, so
    /// lines piped in one at a time (`predict --input -`) were answered only at the end.
    private let descriptor: Int32
    private let maximumLineLength: Int
    private var buffer: [UInt8]
    /// The unconsumed bytes are `buffer[start..<end]`.
    private var start = 0
    private var end = 0
    private var reachedEndOfFile = false

    /// Opens `path` for reading in chunks of `chunkSize` bytes; "-" reads standard input (named
    /// "standard input" in messages).
    public init(path: String, chunkSize: Int = 1 << 20, maximumLineLength: Int = 1 << 26) throws(DatasetError) {
        precondition(chunkSize > 0 && maximumLineLength >= chunkSize, "chunk \(chunkSize), limit \(maximumLineLength)")
        // Standard input through a descriptor of its own, so that closing it leaves fd 0 open.
        let descriptor = path == "-" ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .cannotOpen(file: path == "-" ? "standard input" : path, reason: String(cString: strerror(errno)))
        }
        self.path = path == "-" ? "standard input" : path
        self.descriptor = descriptor
        self.maximumLineLength = maximumLineLength
        self.buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    deinit {
        close(descriptor)
    }

    /// The next line's bytes, or nil at the end of the file. Lines end as Python's universal
    /// newlines end them: "\n", "\r\n" or a lone "\r" (a file with old Mac line endings had been
    /// one line). A UTF-8 byte-order mark opening the first line is dropped.
    public func nextLine() throws(DatasetError) -> [UInt8]? {
        // Bytes of the pending line already searched for a line end, so a long line is scanned once.
        var searched = 0
        while true {
            let from = start + searched
            let (newline, carriageReturn) = buffer.withUnsafeBytes { raw -> (Int?, Int?) in
                guard from < end else { return (nil, nil) }
                let base = raw.baseAddress!
                let newline = memchr(base + from, 0x0A, end - from).map { base.distance(to: UnsafeRawPointer($0)) }
                let limit = newline ?? end
                let carriageReturn = memchr(base + from, 0x0D, limit - from).map { base.distance(to: UnsafeRawPointer($0)) }
                return (newline, carriageReturn)
            }
            if let cr = carriageReturn {
                // "\r\n" or a lone "\r"; which, the next byte says (read it first if not yet here).
                if cr + 1 < end || reachedEndOfFile {
                    let line = Array(buffer[start..<cr])
                    start = cr + 1 < end && buffer[cr + 1] == 0x0A ? cr + 2 : cr + 1
                    return finish(line)
                }
                searched = cr - start
                try refill()
                continue
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
        var count: Int
        repeat {
            count = buffer.withUnsafeMutableBytes { raw in read(descriptor, raw.baseAddress! + end, capacity) }
        } while count < 0 && errno == EINTR
        guard count >= 0 else { throw .readFailed(file: path, reason: String(cString: strerror(errno))) }
        // Only a read of nothing is the end: a pipe returns what has arrived so far.
        if count == 0 { reachedEndOfFile = true }
        end += count
    }

    private func finish(_ line: [UInt8]) -> [UInt8] {
        lineNumber += 1
        var line = line
        if lineNumber == 1, line.starts(with: [0xEF, 0xBB, 0xBF]) {
            line.removeFirst(3)
        }
        return line
    }
}
