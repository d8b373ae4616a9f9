// The fuzz targets. Each feeds one input to a parser through its public API; thrown errors are
// the expected outcome for bad input, while traps, crashes and broken invariants (checked with
// `require`, which traps so libFuzzer records the input) are bugs.

import ActivationStore
import Datasets
import Encoders
import Foundation
import SafeTensors

struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void

    static let all: [FuzzTarget] = [
        FuzzTarget(name: "safetensors", run: fuzzSafeTensors),
        FuzzTarget(name: "tokenizer", run: fuzzTokenizer),
        FuzzTarget(name: "text", run: fuzzTextReader),
        FuzzTarget(name: "idx", run: fuzzIDX),
        FuzzTarget(name: "image", run: fuzzImage),
        FuzzTarget(name: "record", run: fuzzRecord),
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// An invariant of the parser's result; a violation traps so libFuzzer keeps the input.
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}

/// File-based readers get the input through one scratch file per process (in /dev/shm when there
/// is one, so the fuzz loop does not wait on a disk).
let scratchFile: String = {
    let folder = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return "\(folder)/sidecar-fuzz-\(getpid())"
}()

/// Removes the scratch files at exit (libFuzzer ends the process with exit()).
func removeScratchFilesAtExit() {
    atexit {
        for suffix in ["", ".idx", ".vocab.txt", ".gz"] { unlink(scratchFile + suffix) }
    }
}

func writeScratch(_ bytes: UnsafeRawBufferPointer, suffix: String = "") -> String {
    let path = scratchFile + suffix
    let file = fopen(path, "wb")!
    if bytes.count > 0 { require(fwrite(bytes.baseAddress!, 1, bytes.count, file) == bytes.count, "short write to \(path)") }
    fclose(file)
    return path
}

// MARK: safetensors

func fuzzSafeTensors(_ data: UnsafeRawBufferPointer) {
    // Borrowed, as a cache's blob is from LMDB's map, and one byte past an aligned start, as such
    // a blob can lie.
    let shifted = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count + 1, alignment: 16)
    defer { shifted.deallocate() }
    let input = UnsafeRawBufferPointer(rebasing: shifted[1...])
    if let base = data.baseAddress { shifted.baseAddress!.advanced(by: 1).copyMemory(from: base, byteCount: data.count) }
    _ = try? SafeTensorsFile.withBorrowed(input, source: "fuzz.safetensors") { checkSafeTensors($0, inputBytes: data.count) }
}

func checkSafeTensors(_ file: SafeTensorsFile, inputBytes: Int) {
    var covered = 0
    for name in file.names {
        guard let info = try? file.info(name) else { fatalError("listed tensor \(name) has no info") }
        let count = info.shape.reduce(1, *)
        require(info.byteRange.count == count * info.dtype.size, "\(name): \(info.byteRange) for \(info.dtype) \(info.shape)")
        covered += info.byteRange.count
        let stored = try? file.withRawBytes(name) { $0.count }
        require(stored == info.byteRange.count, "\(name): raw bytes \(String(describing: stored))")
        if let tensor = try? file.tensor(name) {
            require(tensor.shape == info.shape && tensor.count == count, "\(name): tensor \(tensor.shape)")
        }
    }
    require(covered <= inputBytes, "tensors cover \(covered) bytes of a \(inputBytes)-byte input")
}

// MARK: tokenizer

/// A small vocabulary with pieces, continuations, accents and CJK, so every path of WordPiece runs.
let fuzzVocabulary = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "a", "ab", "abc", "##c", "##bc",
    "x", "##x", "hello", "world", ",", "!", "b", "##b", "é", "e", "##e", "中", "文", "##s", "s", "'", "-",
]

let fixedTokenizers: [WordPieceTokenizer] = (0..<16).map { flags in
    try! WordPieceTokenizer(vocabulary: Vocabulary(tokens: fuzzVocabulary), configuration: configuration(flags: flags, wordLimit: 100))
}

func configuration(flags: Int, wordLimit: Int) -> TokenizerConfiguration {
    var configuration = TokenizerConfiguration.bertUncased
    configuration.lowercase = flags & 1 != 0
    configuration.stripAccents = flags & 2 != 0 ? nil : flags & 4 != 0
    configuration.tokenizeChineseCharacters = flags & 4 != 0
    configuration.cleanText = flags & 8 != 0
    configuration.maxInputCharactersPerWord = max(1, wordLimit)
    return configuration
}

/// Input: a settings byte, a word-limit byte, a max-length byte, then the text. With bit 4 of
/// the settings byte the text is `vocabulary file \0 text \0 pair` and the vocabulary file is
/// parsed too; otherwise it is `text \0 pair` over the fixed vocabulary (with the word-limit
/// byte applied only when bit 5 is set).
func fuzzTokenizer(_ data: UnsafeRawBufferPointer) {
    guard data.count >= 3 else { return }
    let flags = Int(data[0]), wordLimit = Int(data[1]), maxLength = 3 + Int(data[2])
    var parts = data[3...].split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map { Array($0) }
    let tokenizer: WordPieceTokenizer
    if flags & 16 != 0 {
        let vocabularyBytes = parts.removeFirst()
        let path = vocabularyBytes.withUnsafeBytes { writeScratch($0, suffix: ".vocab.txt") }
        guard let vocabulary = try? Vocabulary(contentsOf: URL(fileURLWithPath: path)),
              let built = try? WordPieceTokenizer(vocabulary: vocabulary, configuration: configuration(flags: flags, wordLimit: wordLimit))
        else { return }
        tokenizer = built
    } else {
        // Building the trie per input is slow; most inputs use one of the prebuilt tokenizers.
        tokenizer = flags & 32 == 0 ? fixedTokenizers[flags & 15]
            : try! WordPieceTokenizer(vocabulary: Vocabulary(tokens: fuzzVocabulary),
                                      configuration: configuration(flags: flags, wordLimit: wordLimit))
    }
    // Invalid UTF-8 is repaired with U+FFFD, as String(decoding:) does for every reader.
    let text = parts.isEmpty ? "" : String(decoding: parts[0], as: UTF8.self)
    let pair = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : nil
    let encoding = tokenizer.encode(text, pair: pair, maxLength: maxLength)
    let vocabularySize = tokenizer.vocabulary.count
    require(encoding.ids.count <= maxLength, "\(encoding.ids.count) ids over maxLength \(maxLength)")
    require(encoding.tokenTypeIds.count == encoding.ids.count && encoding.attentionMask.count == encoding.ids.count,
            "ids \(encoding.ids.count), types \(encoding.tokenTypeIds.count), mask \(encoding.attentionMask.count)")
    require(encoding.ids.allSatisfy { $0 >= 0 && $0 < vocabularySize }, "an id outside the \(vocabularySize)-token vocabulary")
    require(encoding.ids.first == tokenizer.classifierTokenId && encoding.ids.last == tokenizer.separatorTokenId,
            "not [CLS] ... [SEP]")
    let ids = tokenizer.tokenIds(text)
    require(Array(encoding.ids.dropFirst().prefix(min(ids.count, maxLength - 2))) == Array(ids.prefix(min(ids.count, maxLength - 2)))
            || pair != nil && !(pair!.isEmpty), "encode's first sequence is not a prefix of tokenIds")
    _ = tokenizer.basicTokenizer.words(text)
}

// MARK: JSON Lines, CSV, TSV

/// The input as a split file in each of the three formats, read to the end or the first error;
/// and through a LineReader with a tiny buffer, whose lines must reassemble the input.
func fuzzTextReader(_ data: UnsafeRawBufferPointer) {
    let path = writeScratch(data)
    for format in TextFormat.allCases {
        let columns = TextColumns()
        guard let reader = try? TextExampleReader(path: path, format: format, columns: columns) else { continue }
        var previousLine = 0
        while let example = try? reader.next() {
            require(example.line > previousLine, "\(format) line numbers not increasing: \(example.line) after \(previousLine)")
            previousLine = example.line
        }
    }

    let limit = 64
    guard let lines = try? LineReader(path: path, chunkSize: 5, maximumLineLength: limit) else { return }
    var read: [[UInt8]] = []
    var failed = false
    do {
        while let line = try lines.nextLine() { read.append(line) }
    } catch {
        failed = true
    }
    // The lines as Python's universal newlines split them ("\n", "\r\n", a lone "\r"), each with
    // whether a "\r" ended it (the reader holds that byte while it looks at the next).
    let bytes = Array(data)
    var raw: [(line: [UInt8], carriageReturn: Bool)] = [], current: [UInt8] = []
    var i = 0
    while i < bytes.count {
        if bytes[i] == 0x0A || bytes[i] == 0x0D {
            raw.append((current, bytes[i] == 0x0D))
            current = []
            if bytes[i] == 0x0D && i + 1 < bytes.count && bytes[i + 1] == 0x0A { i += 1 }
        } else {
            current.append(bytes[i])
        }
        i += 1
    }
    if !current.isEmpty { raw.append((current, false)) }
    var expected = raw.map(\.line)
    if expected.first?.starts(with: [0xEF, 0xBB, 0xBF]) == true { expected[0].removeFirst(3) }
    if failed {
        require(raw.contains { $0.line.count + ($0.carriageReturn ? 1 : 0) >= limit }, "lineTooLong without a line of \(limit) bytes")
    } else {
        require(read == expected, "LineReader returned \(read.count) lines, expected \(expected.count)")
    }
}

// MARK: IDX

func fuzzIDX(_ data: UnsafeRawBufferPointer) {
    let path = writeScratch(data, suffix: ".idx")
    for rank in [1, 3] {
        guard let array = try? IDXReader.read(path: path, rank: rank) else { continue }
        require(array.dimensions.count == rank, "rank \(array.dimensions.count), expected \(rank)")
        // Extents are 32-bit each, so their product can overflow Int; one zero extent makes it zero.
        let size = array.dimensions.contains(0) ? 0 : array.dimensions.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
        require(array.bytes.count == size, "\(array.bytes.count) bytes for \(array.dimensions)")
        if rank == 3, array.bytes.count > 0 {
            let images = GreyImages(count: array.dimensions[0], height: array.dimensions[1], width: array.dimensions[2], pixels: array.bytes)
            let image = images.rgbImage(at: images.count - 1)
            require(image.pixels.count == 3 * image.height * image.width, "grey → RGB: \(image.pixels.count) bytes")
        }
    }
}

// MARK: PNG and JPEG

func fuzzImage(_ data: UnsafeRawBufferPointer) {
    guard let image = try? ImageDecoder.decode(Array(data), name: "fuzz-image") else { return }
    require(image.height > 0 && image.width > 0, "decoded a \(image.height)×\(image.width) image")
    require(image.pixels.count == 3 * image.height * image.width, "\(image.pixels.count) bytes for \(image.height)×\(image.width)")
}

// MARK: cache records

/// Record headers and blocks carry xxHash64 checksums that random bytes never match; so that the
/// fuzzer reaches the fields behind them, the checksums are recomputed over the mutated bytes
/// unless the input's last byte is odd (which then exercises the checks themselves).
func fuzzRecord(_ data: UnsafeRawBufferPointer) {
    var bytes = Array(data)
    if let last = bytes.last, last & 1 == 0 { fixChecksums(&bytes) }
    bytes.withUnsafeBytes { raw in
        guard let record = try? RecordView(raw, key: recordKey) else { return }
        require(record.rows >= 0 && record.width >= 0, "rows \(record.rows), width \(record.width)")
        // Callers size the destination from the header; the fuzzer keeps that allocation small.
        let (count, overflow) = record.rows.multipliedReportingOverflow(by: record.width)
        if overflow || count.multipliedReportingOverflow(by: record.storage.size).overflow {
            // Sizes no caller can allocate must be refused with an error, not trap in arithmetic.
            try? record.verify(using: RecordDecoder())
            return
        }
        guard count <= 1 << 16, record.width <= 1 << 16 else { return }
        var scales: [Int: [Float]] = [:]
        for block in record.blocks { scales[block.layer] = [Float](repeating: 0.5, count: record.width) }
        let decoder = RecordDecoder(int8Scales: scales)
        var values = [Float](repeating: 0, count: count)
        for block in record.blocks {
            try? values.withUnsafeMutableBufferPointer { try decoder.decode(record, layer: block.layer, stream: block.stream, into: $0) }
        }
        try? record.verify(using: RecordDecoder())
    }
}

/// The key every fuzzed record is read under (a current record's header checksum is seeded with it).
let recordKey = "fuzz-record"

/// Rewrites the header checksum and each in-bounds block's checksum to match the bytes.
func fixChecksums(_ bytes: inout [UInt8]) {
    let boundToKey = bytes.starts(with: Array("SCR2".utf8))
    guard bytes.count >= 28, boundToKey || bytes.starts(with: Array("SCR1".utf8)) else { return }
    func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
    func store(_ value: UInt64, at offset: Int) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self) }
    }
    let blockCount = Int(load(16, UInt16.self))
    let headerSize = 20 + 24 * blockCount + 8
    guard bytes.count >= headerSize else { return }
    for i in 0..<blockCount {
        let base = 20 + 24 * i
        let offset = Int(load(base + 4, UInt32.self)), length = Int(load(base + 8, UInt32.self))
        if offset >= headerSize && offset + length <= bytes.count {
            store(XXHash64.hash(Array(bytes[offset..<(offset + length)])), at: base + 16)
        }
    }
    store(XXHash64.hash(Array(bytes[..<(headerSize - 8)]), seed: boundToKey ? RecordView.headerSeed(key: recordKey) : 0), at: headerSize - 8)
}
