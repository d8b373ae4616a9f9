// What a record's block decodes to, for every float storage type with and without the byte
// shuffle: the value rounded to the storage type, bit for bit, including the signs of zero,
// infinities, NaN and subnormals, and on a count that is not a multiple of the decoder's lanes.
import ActivationStore
import Testing
import TensorCore

@Suite struct RecordRoundTripTests {
    static let values: [Float] = {
        var rng = SeededGenerator(seed: 5)
        let specials: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 1e-40, -1e-40, .greatestFiniteMagnitude, 3.140625, -65504]
        return specials + (0..<(7 * 37 - specials.count)).map { _ in rng.nextNormal() * 4 }
    }()

    static func rounded(_ value: Float, to storage: StorageType) -> Float {
        switch storage {
        case .f32: value
        case .f16: HalfPrecision.floatFromFloat16(HalfPrecision.float16FromFloat(value))
        case .bf16: HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat(value))
        case .int8: preconditionFailure("int8 is scaled, not rounded")
        }
    }

    @Test(arguments: [StorageType.f32, .f16, .bf16], [true, false])
    func aBlockDecodesToItsRoundedValues(storage: StorageType, shuffle: Bool) throws {
        let values = Self.values, rows = 7, width = 37
        let bytes = try values.withUnsafeBufferPointer {
            try RecordEncoder(storage: storage, shuffle: shuffle).encode(key: "k", label: 0, rows: rows, width: width, blocks: [.init(layer: 1, values: $0)])
        }
        var decoded = [Float](repeating: -1, count: values.count)
        try bytes.withUnsafeBytes { raw in
            let record = try RecordView(raw, key: "k")
            try decoded.withUnsafeMutableBufferPointer { try RecordDecoder(checkingContent: false).decode(record, layer: 1, into: $0) }
        }
        for (i, value) in values.enumerated() {
            let expected = Self.rounded(value, to: storage)
            #expect(decoded[i].bitPattern == expected.bitPattern || (decoded[i].isNaN && expected.isNaN),
                    "value \(i): \(value) decoded as \(decoded[i]), expected \(expected)")
        }
    }
    /// The f16 plane decoder, branch-free for its loop to vectorise, gives every one of the 65,536
    /// bit patterns the scalar conversion's bits (subnormals, signed zeros, infinities, NaN payloads).
    @Test func everyFloat16PatternDecodesFromPlanesAsOneByOne() {
        let patterns = (0...UInt16.max).map { $0 }
        let low = patterns.map { UInt8(truncatingIfNeeded: $0) }, high = patterns.map { UInt8(truncatingIfNeeded: $0 >> 8) }
        var decoded = [Float](repeating: 0, count: patterns.count)
        decoded.withUnsafeMutableBufferPointer { HalfPrecision.floatsFromFloat16Planes(low: low, high: high, into: $0.baseAddress!, count: patterns.count) }
        let mismatches = patterns.filter { decoded[Int($0)].bitPattern != HalfPrecision.floatFromFloat16($0).bitPattern }
        #expect(mismatches.isEmpty, "first mismatch: \(mismatches.first.map { String($0, radix: 16) } ?? "")")
    }

    /// A shuffled block holds one zstd frame per byte plane, which on activations is smaller than
    /// one frame for all planes; a block written as one frame (by versions before the split)
    /// decodes to the same values.
    @Test(arguments: [StorageType.f32, .f16, .bf16])
    func aShuffledBlockStoresEachPlaneInItsOwnFrame(storage: StorageType) throws {
        var rng = SeededGenerator(seed: 9)
        let rows = 64, width = 384, key = "train:3"
        let values = (0..<(rows * width)).map { _ in rng.nextNormal() * 0.5 }
        let bytes = try values.withUnsafeBufferPointer {
            try RecordEncoder(storage: storage).encode(key: key, label: 2, rows: rows, width: width, blocks: [.init(layer: 4, values: $0)])
        }
        let headerSize = 20 + 24 + 8, planeBytes = rows * width
        let stored = Array(bytes[headerSize...])
        // The first frame holds the low bytes alone.
        #expect(stored.withUnsafeBytes { ZstdDecompressor.contentSize(of: $0) } == planeBytes)
        var planes = [UInt8](repeating: 0, count: storage.size * planeBytes)
        _ = try stored.withUnsafeBytes { src in try planes.withUnsafeMutableBytes { try ZstdDecompressor().decompress(src, into: $0) } }
        var single = [UInt8](repeating: 0, count: ZstdCompressor.compressBound(planes.count))
        let singleCount = try planes.withUnsafeBytes { src in try single.withUnsafeMutableBytes { try ZstdCompressor().compress(src, into: $0) } }
        #expect(stored.count < singleCount, "split \(stored.count) bytes, one frame \(singleCount)")

        // The same record with its block as one frame, its table and header checksums redone.
        var old = Array(bytes[..<headerSize]) + single[..<singleCount]
        func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { old.replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: $0) }
        }
        store(UInt32(singleCount), at: 28)
        store(XXHash64.hash(Array(single[..<singleCount])), at: 36)
        store(XXHash64.hash(Array(old[..<(headerSize - 8)]), seed: RecordView.headerSeed(key: key)), at: headerSize - 8)
        func decoded(_ record: [UInt8]) throws -> [Float] {
            var out = [Float](repeating: .nan, count: values.count)
            try record.withUnsafeBytes { raw in
                let view = try RecordView(raw, key: key)
                try out.withUnsafeMutableBufferPointer { try RecordDecoder().decode(view, layer: 4, into: $0) }
            }
            return out
        }
        let expected = values.map { Self.rounded($0, to: storage) }
        #expect(try decoded(bytes) == expected)
        #expect(try decoded(old) == expected)
    }

    /// A damaged block of a stream is named by its stream: it had been reported as the layer's
    /// hidden state, which then decoded without fault.
    @Test func aDamagedStreamBlockIsNamedByItsStream() throws {
        let values: [Float] = (0..<8).map(Float.init)
        var bytes = try values.withUnsafeBufferPointer {
            try RecordEncoder(storage: .f32).encode(key: "train:3", label: 1, rows: 2, width: 4,
                                                   blocks: [.init(layer: 6, values: $0), .init(layer: 6, stream: .attention, values: $0)])
        }
        bytes[bytes.count - 1] ^= 0xFF  // the last block's bytes: the attention stream's
        try bytes.withUnsafeBytes { raw in
            let view = try RecordView(raw, key: "train:3")
            var out = [Float](repeating: 0, count: 8)
            try out.withUnsafeMutableBufferPointer { try RecordDecoder().decode(view, layer: 6, into: $0) }
            #expect(out == values)
            #expect(throws: CorruptRecord(key: "train:3", fault: "checksum mismatch in layer 6's attn stream")) {
                try out.withUnsafeMutableBufferPointer { try RecordDecoder().decode(view, layer: 6, stream: .attention, into: $0) }
            }
            #expect(throws: CorruptRecord(key: "train:3", fault: "checksum mismatch in layer 6's attn stream")) { try view.checkChecksums() }
        }
    }

    /// A record's header checksum is seeded with its key: intact bytes served under another key (a
    /// damaged LMDB page pointer) are refused. Records from before (SCR1, unseeded) still read.
    @Test func aRecordReadUnderAnotherKeyIsRefused() throws {
        let values: [Float] = (0..<8).map(Float.init)
        var bytes = try values.withUnsafeBufferPointer {
            try RecordEncoder(storage: .f32).encode(key: "train:17", label: 1, rows: 2, width: 4, blocks: [.init(layer: 0, values: $0)])
        }
        #expect(try bytes.withUnsafeBytes { try RecordView($0, key: "train:17").label } == 1)
        #expect(throws: CorruptRecord(key: "train:18", fault: "header checksum mismatch")) {
            try bytes.withUnsafeBytes { _ = try RecordView($0, key: "train:18") }
        }
        // The same header as an SCR1 record: checksum unseeded, read under any key.
        let headerSize = 20 + 24 + 8
        bytes.replaceSubrange(0..<4, with: Array("SCR1".utf8))
        let sum = bytes.withUnsafeBytes { XXHash64.hash(UnsafeRawBufferPointer(rebasing: $0[..<(headerSize - 8)])) }
        withUnsafeBytes(of: sum.littleEndian) { bytes.replaceSubrange((headerSize - 8)..<headerSize, with: $0) }
        #expect(try bytes.withUnsafeBytes { try RecordView($0, key: "train:18").label } == 1)
    }
}
