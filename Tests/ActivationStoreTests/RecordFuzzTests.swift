// Inputs found by `sidecar-fuzz record` (make fuzz) that crashed the record parser, kept as
// regressions: each must now be refused with a CorruptRecord naming the key and the fault.
import ActivationStore
import Testing

@Suite struct RecordFuzzTests {
    /// The fuzz target recomputes the header checksum before parsing (random bytes never match
    /// it); so does this, so the parser gets past the checksum to the fields behind it.
    func withHeaderChecksum(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        let blockCount = Int(bytes[16]) | Int(bytes[17]) << 8
        let headerSize = 20 + 24 * blockCount + 8
        let checksum = XXHash64.hash(Array(bytes[..<(headerSize - 8)]))
        withUnsafeBytes(of: checksum.littleEndian) { bytes.replaceSubrange((headerSize - 8)..<headerSize, with: $0) }
        return bytes
    }

    /// rows 0xF0C0FE03 × width 0x746553E0: the element count overflows Int, and `verify` trapped
    /// on the multiplication (a 28-byte record, no blocks).
    @Test func rowsTimesWidthOverflowIsAnError() throws {
        let input: [UInt8] = [
            0x53, 0x43, 0x52, 0x31, 0x03, 0x01, 0x00, 0x00, 0x03, 0xFE, 0xC0, 0xF0, 0xE0, 0x53, 0x65, 0x74,
            0x00, 0x00, 0x00, 0x80, 0xBE, 0x00, 0xBF, 0xBF, 0x98, 0x30, 0x7E, 0x00,
        ]
        let bytes = withHeaderChecksum(input)
        #expect(throws: CorruptRecord.self) {
            try bytes.withUnsafeBytes { _ = try RecordView($0, key: "0000000042") }
        }
        do {
            try bytes.withUnsafeBytes { raw in
                let record = try RecordView(raw, key: "0000000042")
                try record.verify(using: RecordDecoder())
            }
        } catch let error as CorruptRecord {
            #expect(error.key == "0000000042")
            #expect(error.description.contains("4039179779 rows × 1952797664 columns"), "\(error)")
        }
    }

    /// A size that fits in Int but is far past any real block is refused before anything is
    /// allocated for it: 2^20 rows × 2^20 columns of f32 is 4 TiB.
    @Test func aHugeBlockIsAnErrorNotAnAllocation() throws {
        var input: [UInt8] = Array("SCR1".utf8) + [0xFF, 0xFF, 0xFF, 0xFF] + [0, 0, 0x10, 0] + [0, 0, 0x10, 0] + [0, 0, 0, 0]
        input += [UInt8](repeating: 0, count: 8)
        let bytes = withHeaderChecksum(input)
        do {
            try bytes.withUnsafeBytes { _ = try RecordView($0, key: "big") }
            Issue.record("a 4 TiB block was accepted")
        } catch let error as CorruptRecord {
            #expect(error.description == "record big is damaged: 1048576 rows × 1048576 columns of f32 is over the 4294967296-byte block limit")
        }
    }

    /// The limit leaves real records alone: one written by the encoder parses and decodes.
    @Test func anEncodedRecordStillParses() throws {
        let values: [Float] = (0..<12).map { Float($0) / 4 }
        let encoder = RecordEncoder(storage: .f16)
        let bytes = try values.withUnsafeBufferPointer {
            try encoder.encode(key: "ok", label: 1, rows: 3, width: 4, blocks: [.init(layer: 2, values: $0)])
        }
        var decoded = [Float](repeating: -1, count: 12)
        try bytes.withUnsafeBytes { raw in
            let record = try RecordView(raw, key: "ok")
            #expect(record.rows == 3 && record.width == 4 && record.label == 1)
            try decoded.withUnsafeMutableBufferPointer { try RecordDecoder().decode(record, layer: 2, into: $0) }
        }
        #expect(decoded == values)
    }
}
