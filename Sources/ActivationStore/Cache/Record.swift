// One cache record: the activations of one example, one independently compressed and checksummed
// block per (layer, stream), so a reader that needs three layers decompresses three. Grouping an
// example's layers in one LMDB value keeps values large (LMDB stores values over ~2 KB on whole
// overflow pages, so many mid-sized values waste up to a page each).
//
// Layout, little-endian:
//   0  "SCR2"                      magic and format version ("SCR1": caches from before the key
//                                  was bound into the header checksum, still read)
//   4  u32 label id                (UInt32.max: unlabelled)
//   8  u32 rows                    rows per block (tokens, or 1–2 pooled vectors)
//  12  u32 width                   values per row
//  16  u16 block count
//  18  u8  storage                 0 f32, 1 f16, 2 bf16, 3 int8 (scales in the manifest database)
//  19  u8  flags                   bit 0: bytes shuffled before compression
//  20  blocks × 24 bytes: u16 layer, u16 stream, u32 offset, u32 length, u32 reserved, u64 XXH64 of the stored bytes
//  then u64 XXH64 of every header byte before it, seeded with the XXH64 of the record's key
//  ("train:17"), then the blocks: when shuffled, one zstd frame per byte plane (records written
//  before the planes were split hold one frame per block; both decode alike), else one frame.
//  The seed ties the record to its key: LMDB has no checksums of its own, and a damaged page
//  pointer had served one record's intact bytes as another's.
import Foundation
import TensorCore

/// How activations are stored.
public enum StorageType: String, Codable, Sendable, CaseIterable {
    case f32, f16, bf16
    /// Symmetric int8 with one scale per layer and channel for the whole cache (in the meta database).
    case int8

    var code: UInt8 { switch self { case .f32: 0; case .f16: 1; case .bf16: 2; case .int8: 3 } }
    init?(code: UInt8) {
        switch code {
        case 0: self = .f32
        case 1: self = .f16
        case 2: self = .bf16
        case 3: self = .int8
        default: return nil
        }
    }
    /// Bytes per stored value.
    public var size: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .int8: 1
        }
    }
}

/// Which tensor of a layer a block holds.
public enum Stream: UInt16, Codable, Sendable, CaseIterable {
    /// z_l, the hidden state after block l (0: embedding output).
    case hidden = 0
    /// A_l: block l's attention branch after its output projection, before the residual add and
    /// any LayerNorm (layers 1...L). Post-LN BERT's states cannot give it back, so it is stored.
    case attention = 1
    /// M_l: block l's FFN output projection, before the residual add and any LayerNorm (1...L).
    case mlp = 2

    /// The name used on the command line and in the manifest ("hidden", "attn", "mlp").
    public var name: String {
        switch self {
        case .hidden: "hidden"
        case .attention: "attn"
        case .mlp: "mlp"
        }
    }

    public init?(name: String) {
        guard let stream = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = stream
    }
}

/// A stored record that failed a check; never silently used.
public struct CorruptRecord: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let fault: String
    public var description: String { "record \(key) is damaged: \(fault)" }
    public init(key: String, fault: String) {
        self.key = key
        self.fault = fault
    }
}

/// Encodes records. Holds a compressor and scratch space: one per writer thread.
public final class RecordEncoder {
    public let storage: StorageType
    public let shuffle: Bool
    /// Per layer, one scale per channel (int8 only).
    let int8Scales: [Int: [Float]]
    private let compressor: ZstdCompressor
    /// Whether blocks are byte-shuffled: asked for, and more than one byte per value.
    private var shuffles: Bool { shuffle && storage.size > 1 }
    private var converted: [UInt8] = []
    private var frame: [UInt8] = []

    public init(storage: StorageType, zstdLevel: Int32 = 1, shuffle: Bool = true, int8Scales: [Int: [Float]] = [:]) {
        precondition(storage != .int8 || !int8Scales.isEmpty, "int8 records need per-layer scales")
        self.storage = storage
        self.shuffle = shuffle
        self.int8Scales = int8Scales
        // A shuffled plane of activations holds few repeats longer than a few bytes: matches of 3–6
        // bytes cost the reader more to decode than they save. On MiniLM's bf16 states at level 1,
        // leaving them out made blocks 3% smaller and decoding 1.35× faster (at 3 and 9, 3–5%
        // smaller; at 19 the same). zstd's negative levels code no literals, so there matches are
        // all that saves anything: they keep their own. (Level 0 is zstd's default, 3.)
        compressor = ZstdCompressor(level: zstdLevel, minimumMatch: zstdLevel >= 0 ? 7 : nil)
    }

    /// One block to encode: `values` holds rows × width floats.
    public struct Block {
        public var layer: Int
        public var stream: Stream
        public var values: UnsafeBufferPointer<Float>
        public init(layer: Int, stream: Stream = .hidden, values: UnsafeBufferPointer<Float>) {
            self.layer = layer
            self.stream = stream
            self.values = values
        }
    }

    /// The record bytes for one example, to be stored under the key named `key` ("train:17",
    /// `ActivationCache.keyName`).
    public func encode(key: String, label: Int?, rows: Int, width: Int, blocks: [Block]) throws -> [UInt8] {
        precondition(blocks.allSatisfy { $0.values.count == rows * width }, "record blocks must each hold rows × width values")
        let headerSize = 20 + 24 * blocks.count + 8
        var out = [UInt8](repeating: 0, count: headerSize)
        var table: [(layer: Int, stream: Stream, offset: Int, length: Int, checksum: UInt64)] = []
        for block in blocks {
            convert(block.values, scales: int8Scales[block.layer], width: width)
            // A shuffled block is one frame per byte plane (Blosc's "split" mode): each plane gets
            // its own Huffman table, where one frame's table, shared by the near-random low
            // mantissa bytes and the repetitive exponent bytes, fitted neither. zstd then stores the
            // low plane raw. On MiniLM's bf16 states: blocks 11% smaller, decoded 1.5× faster.
            // Readers need no change: zstd decodes concatenated frames into one buffer, in order.
            let planes = shuffles ? storage.size : 1
            let planeBytes = converted.count / planes
            let bound = planes * ZstdCompressor.compressBound(planeBytes)
            // Scratch buffers only grow: an encoder writes millions of blocks of similar size.
            if frame.count < bound { frame = [UInt8](repeating: 0, count: bound) }
            var length = 0
            try converted.withUnsafeBytes { src in
                try frame.withUnsafeMutableBytes { dst in
                    for plane in 0..<planes {
                        length += try compressor.compress(UnsafeRawBufferPointer(rebasing: src[(plane * planeBytes)..<((plane + 1) * planeBytes)]),
                                                          into: UnsafeMutableRawBufferPointer(rebasing: dst[length..<bound]))
                    }
                }
            }
            let checksum = frame.withUnsafeBytes { XXHash64.hash(UnsafeRawBufferPointer(rebasing: $0[..<length])) }
            table.append((block.layer, block.stream, out.count, length, checksum))
            out.append(contentsOf: frame[..<length])
        }
        out.withUnsafeMutableBytes { header in
            func store<T: FixedWidthInteger>(_ value: T, at offset: Int) { header.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
            header.copyBytes(from: Array("SCR2".utf8))
            store(UInt32(label ?? Int(UInt32.max)), at: 4)
            store(UInt32(rows), at: 8)
            store(UInt32(width), at: 12)
            store(UInt16(blocks.count), at: 16)
            header[18] = storage.code
            header[19] = shuffles ? 1 : 0
            for (i, entry) in table.enumerated() {
                let base = 20 + 24 * i
                store(UInt16(entry.layer), at: base)
                store(entry.stream.rawValue, at: base + 2)
                store(UInt32(entry.offset), at: base + 4)
                store(UInt32(entry.length), at: base + 8)
                store(UInt64(entry.checksum), at: base + 16)
            }
            store(XXHash64.hash(UnsafeRawBufferPointer(rebasing: header[..<(headerSize - 8)]), seed: RecordView.headerSeed(key: key)),
                  at: headerSize - 8)
        }
        return out
    }

    /// Converts to the storage type into `converted`, byte-shuffled in the same pass when asked:
    /// byte k of element i goes to k·count + i (all first bytes, then all second bytes, …), which
    /// lets zstd find the redundancy in exponents and high mantissa bits.
    private func convert(_ values: UnsafeBufferPointer<Float>, scales: [Float]?, width: Int) {
        let count = values.count, size = storage.size
        if converted.count != count * size { converted = [UInt8](repeating: 0, count: count * size) }
        converted.withUnsafeMutableBytes { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            switch storage {
            case .int8:
                guard let scales else { preconditionFailure("no int8 scales for a block") }
                for i in 0..<count {
                    let q = (values[i] / scales[i % width]).rounded()
                    out[i] = UInt8(bitPattern: Int8(max(-127, min(127, q))))
                }
            case .f32:
                if !shuffles {
                    raw.copyMemory(from: UnsafeRawBufferPointer(values))
                    return
                }
                for i in 0..<count {
                    let bits = values[i].bitPattern
                    out[i] = UInt8(truncatingIfNeeded: bits)
                    out[count + i] = UInt8(truncatingIfNeeded: bits >> 8)
                    out[2 * count + i] = UInt8(truncatingIfNeeded: bits >> 16)
                    out[3 * count + i] = UInt8(truncatingIfNeeded: bits >> 24)
                }
            case .f16, .bf16:
                let half = storage == .f16
                for i in 0..<count {
                    let bits = half ? HalfPrecision.float16FromFloat(values[i]) : HalfPrecision.bfloat16FromFloat(values[i])
                    let (low, high) = (UInt8(truncatingIfNeeded: bits), UInt8(truncatingIfNeeded: bits >> 8))
                    if shuffles {
                        out[i] = low
                        out[count + i] = high
                    } else {
                        out[2 * i] = low
                        out[2 * i + 1] = high
                    }
                }
            }
        }
    }
}

/// A parsed, validated view of a stored record (valid while its bytes are).
public struct RecordView {
    public struct BlockEntry: Sendable, Equatable {
        public let layer: Int
        public let stream: Stream
        let offset: Int, length: Int
        let checksum: UInt64
    }

    public let key: String
    public let label: Int?
    public let rows: Int
    public let width: Int
    public let storage: StorageType
    public let shuffled: Bool
    public let blocks: [BlockEntry]
    let bytes: UnsafeRawBufferPointer

    /// Largest decoded block accepted (4 GiB); real blocks are a few megabytes.
    public static let maximumBlockBytes = 1 << 32

    /// The header checksum's seed in a current (SCR2) record: the XXH64 of its key's name. Hashed
    /// in place: an array per record read is a cost the read path notices.
    public static func headerSeed(key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { XXHash64.hash(UnsafeRawBufferPointer($0)) }
    }

    /// Parses and checks the header (magic, header checksum, block bounds).
    public init(_ bytes: UnsafeRawBufferPointer, key: String) throws {
        func fail(_ fault: String) -> CorruptRecord { CorruptRecord(key: key, fault: fault) }
        // Byte by byte: `starts(with: Array("SCR1".utf8))` allocated an array per record read (7%
        // of a linear probe's epoch).
        guard bytes.count >= 28, bytes[0] == UInt8(ascii: "S"), bytes[1] == UInt8(ascii: "C"), bytes[2] == UInt8(ascii: "R"),
              bytes[3] == UInt8(ascii: "1") || bytes[3] == UInt8(ascii: "2") else {
            throw fail("no record header (too short or wrong magic)")
        }
        let boundToKey = bytes[3] == UInt8(ascii: "2")
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        let blockCount = Int(load(16, UInt16.self))
        let headerSize = 20 + 24 * blockCount + 8
        guard bytes.count >= headerSize else { throw fail("header of \(blockCount) blocks is longer than the record") }
        let seed = boundToKey ? Self.headerSeed(key: key) : 0
        guard load(headerSize - 8, UInt64.self) == XXHash64.hash(UnsafeRawBufferPointer(rebasing: bytes[..<(headerSize - 8)]), seed: seed) else {
            // For a current record, a damaged header or another key's record.
            throw fail("header checksum mismatch")
        }
        guard let storage = StorageType(code: bytes[18]) else { throw fail("unknown storage code \(bytes[18])") }
        let labelValue = load(4, UInt32.self)
        self.key = key
        self.label = labelValue == UInt32.max ? nil : Int(labelValue)
        self.rows = Int(load(8, UInt32.self))
        self.width = Int(load(12, UInt32.self))
        // Two 32-bit extents can multiply past Int.max; decoding sizes its buffers from them.
        let (elements, overflow) = rows.multipliedReportingOverflow(by: width)
        guard !overflow, elements <= Self.maximumBlockBytes / storage.size else {
            throw fail("\(rows) rows × \(width) columns of \(storage.rawValue) is over the \(Self.maximumBlockBytes)-byte block limit")
        }
        self.storage = storage
        self.shuffled = bytes[19] & 1 == 1
        self.bytes = bytes
        var blocks: [BlockEntry] = []
        blocks.reserveCapacity(blockCount)
        for i in 0..<blockCount {
            let base = 20 + 24 * i
            let offset = Int(load(base + 4, UInt32.self)), length = Int(load(base + 8, UInt32.self))
            guard let stream = Stream(rawValue: load(base + 2, UInt16.self)), offset >= headerSize, offset + length <= bytes.count else {
                throw fail("block \(i) points outside the record")
            }
            blocks.append(BlockEntry(layer: Int(load(base, UInt16.self)), stream: stream, offset: offset, length: length,
                                     checksum: load(base + 16, UInt64.self)))
        }
        self.blocks = blocks
    }

    /// Decodes one block into `destination` (rows × width floats), after checking its checksum.
    public func decode(layer: Int, stream: Stream = .hidden, into destination: UnsafeMutableBufferPointer<Float>,
                       using decompressor: ZstdDecompressor, scratch: inout [UInt8], int8Scales: [Float]? = nil) throws {
        if storage == .int8 && int8Scales?.count != width {
            throw CorruptRecord(key: key, fault: "an int8 record, but the cache has no scales for layer \(layer)")
        }
        guard let block = blocks.first(where: { $0.layer == layer && $0.stream == stream }) else {
            throw CorruptRecord(key: key, fault: "no block for layer \(layer) (\(stream))")
        }
        precondition(destination.count == rows * width, "decode: destination holds \(destination.count), record block holds \(rows) × \(width)")
        let stored = UnsafeRawBufferPointer(rebasing: bytes[block.offset..<(block.offset + block.length)])
        guard XXHash64.hash(stored) == block.checksum else {
            throw CorruptRecord(key: key, fault: "checksum mismatch in \(Self.blockName(layer, stream))")
        }
        let expected = rows * width * storage.size
        if scratch.count < expected { scratch = [UInt8](repeating: 0, count: expected) }
        let written: Int
        do {
            written = try scratch.withUnsafeMutableBytes { try decompressor.decompress(stored, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<expected])) }
        } catch {
            throw CorruptRecord(key: key, fault: "\(Self.blockName(layer, stream)): \(error)")
        }
        guard written == expected else { throw CorruptRecord(key: key, fault: "\(Self.blockName(layer, stream)) holds \(written) bytes, expected \(expected)") }
        // Un-shuffle and convert in one pass: this is stage two's inner decode loop.
        scratch.withUnsafeBytes { raw in
            let source = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let count = rows * width
            let lanes = shuffled && storage.size > 1
            switch storage {
            case .f32:
                if !lanes {
                    UnsafeMutableRawBufferPointer(destination).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[..<expected]))
                    return
                }
                for i in 0..<count {
                    let bits = UInt32(source[i]) | UInt32(source[count + i]) << 8
                        | UInt32(source[2 * count + i]) << 16 | UInt32(source[3 * count + i]) << 24
                    destination[i] = Float(bitPattern: bits)
                }
            case .bf16 where lanes:
                // The stage-two cache's usual form.
                HalfPrecision.floatsFromBFloat16Planes(low: source, high: source + count, into: destination.baseAddress!, count: count)
            case .f16 where lanes:
                HalfPrecision.floatsFromFloat16Planes(low: source, high: source + count, into: destination.baseAddress!, count: count)
            case .f16, .bf16:
                // Unshuffled: each value's two bytes side by side.
                let half = storage == .f16
                for i in 0..<count {
                    let bits = UInt16(source[2 * i]) | UInt16(source[2 * i + 1]) << 8
                    destination[i] = half ? HalfPrecision.floatFromFloat16(bits) : HalfPrecision.floatFromBFloat16(bits)
                }
            case .int8:
                // Row by row: a channel's scale by `i % width` cost a division per value.
                int8Scales!.withUnsafeBufferPointer { scales in
                    let codes = UnsafeRawPointer(source).assumingMemoryBound(to: Int8.self)
                    for row in 0..<rows {
                        let (from, to) = (codes + row * width, destination.baseAddress! + row * width)
                        for j in 0..<width { to[j] = Float(from[j]) * scales[j] }
                    }
                }
            }
        }
    }

    /// Checks every block's checksum over its stored bytes, without decompressing (for copies).
    public func checkChecksums() throws {
        for block in blocks where XXHash64.hash(UnsafeRawBufferPointer(rebasing: bytes[block.offset..<(block.offset + block.length)])) != block.checksum {
            throw CorruptRecord(key: key, fault: "checksum mismatch in \(Self.blockName(block.layer, block.stream))")
        }
    }

    /// A block as a message names it: "layer 6" for the hidden state, "layer 6's attn stream" for
    /// the others (a damaged stream block had been reported as the layer's hidden state).
    static func blockName(_ layer: Int, _ stream: Stream) -> String {
        stream == .hidden ? "layer \(layer)" : "layer \(layer)'s \(stream.name) stream"
    }

    /// Checks every block's checksum and that it decompresses (for `inspect --verify`).
    public func verify(using decoder: RecordDecoder) throws {
        var values = [Float](repeating: 0, count: rows * width)
        for block in blocks {
            try values.withUnsafeMutableBufferPointer { try decoder.decode(self, layer: block.layer, stream: block.stream, into: $0) }
        }
    }
}

/// Decodes blocks of one cache's records: holds the decompressor, scratch space and the cache's
/// int8 scales. One per thread.
public final class RecordDecoder {
    let decompressor: ZstdDecompressor
    var scratch: [UInt8] = []
    let int8Scales: [Int: [Float]]

    /// `checkingContent: false` leaves out zstd's own checksum of the decompressed bytes: every
    /// block's stored bytes are checked against the record's XXH64 before they are decompressed
    /// either way, and the second hash, over the decompressed bytes, is for training's reads a cost
    /// with nothing left to catch. `inspect --verify` keeps both.
    public init(int8Scales: [Int: [Float]] = [:], checkingContent: Bool = true) {
        self.int8Scales = int8Scales
        decompressor = ZstdDecompressor(checkingContent: checkingContent)
    }

    /// Decodes one block of `record` into `destination` (rows × width floats).
    public func decode(_ record: RecordView, layer: Int, stream: Stream = .hidden, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try record.decode(layer: layer, stream: stream, into: destination, using: decompressor, scratch: &scratch, int8Scales: int8Scales[layer])
    }
}
