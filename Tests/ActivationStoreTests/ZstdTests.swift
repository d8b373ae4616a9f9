// zstd round trips at several levels, and every fault (small destination, truncation, flipped
// bytes caught by the frame checksum, not zstd at all) reported as an error rather than a crash.
import ActivationStore
import Testing

@Suite struct ZstdTests {
    /// Compresses and decompresses `data`; returns the compressed size.
    func roundTrip(_ data: [UInt8], level: Int32) throws -> Int {
        let compressor = ZstdCompressor(level: level), decompressor = ZstdDecompressor()
        var compressed = [UInt8](repeating: 0, count: ZstdCompressor.compressBound(data.count))
        let size = try data.withUnsafeBytes { source in
            try compressed.withUnsafeMutableBytes { try compressor.compress(source, into: $0) }
        }
        var restoredBytes = [UInt8](repeating: 0, count: data.count)
        let restored = try compressed[..<size].withUnsafeBytes { source in
            #expect(ZstdDecompressor.contentSize(of: source) == data.count)
            return try restoredBytes.withUnsafeMutableBytes { try decompressor.decompress(source, into: $0) }
        }
        #expect(restored == data.count && restoredBytes == data)
        return size
    }

    func compressed(_ data: [UInt8]) throws -> [UInt8] {
        var compressed = [UInt8](repeating: 0, count: ZstdCompressor.compressBound(data.count))
        let size = try data.withUnsafeBytes { source in
            try compressed.withUnsafeMutableBytes { try ZstdCompressor().compress(source, into: $0) }
        }
        return Array(compressed[..<size])
    }

    @Test(arguments: [Int32(1), 3, 9, 19])
    func roundTrips(level: Int32) throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var random = [UInt8](repeating: 0, count: 50_000)
        for i in random.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            random[i] = UInt8(truncatingIfNeeded: state >> 56)
        }
        let repetitive = (0..<50_000).map { UInt8($0 % 7) }
        #expect(try roundTrip(random, level: level) <= ZstdCompressor.compressBound(random.count))
        #expect(try roundTrip(repetitive, level: level) < 1_000)
        _ = try roundTrip([], level: level)
        _ = try roundTrip([42], level: level)
    }

    @Test func aTooSmallDestinationIsAnError() throws {
        let data = (0..<10_000).map { UInt8($0 % 251) }
        let frame = try compressed(data)
        var tiny = [UInt8](repeating: 0, count: 10)
        do {
            _ = try data.withUnsafeBytes { source in try tiny.withUnsafeMutableBytes { try ZstdCompressor().compress(source, into: $0) } }
            Issue.record("compressed 10 KB into 10 bytes")
        } catch let error as ZstdError {
            #expect(error.description == "zstd compression failed: Destination buffer is too small")
        }
        var almost = [UInt8](repeating: 0, count: data.count - 1)
        #expect(throws: ZstdError.self) {
            try frame.withUnsafeBytes { source in try almost.withUnsafeMutableBytes { try ZstdDecompressor().decompress(source, into: $0) } }
        }
    }

    @Test func truncatedCorruptedAndForeignInputAreErrors() throws {
        let data = (0..<10_000).map { UInt8($0 % 251) }
        let frame = try compressed(data)
        let decompressor = ZstdDecompressor()
        var out = [UInt8](repeating: 0, count: data.count)
        func decompress(_ input: [UInt8]) throws -> Int {
            try input.withUnsafeBytes { source in try out.withUnsafeMutableBytes { try decompressor.decompress(source, into: $0) } }
        }
        for length in [0, 1, 4, frame.count / 2, frame.count - 4, frame.count - 1] {
            #expect(throws: ZstdError.self, "truncated to \(length) bytes") { try decompress(Array(frame[..<length])) }
        }
        // Flipped bytes anywhere: an error (the content checksum catches what the format does not).
        for position in frame.indices {
            var corrupted = frame
            corrupted[position] ^= 0x5A
            #expect(throws: ZstdError.self, "flipped byte \(position) went unnoticed") { try decompress(corrupted) }
        }
        let foreign = Array("not a zstd frame at all".utf8)
        #expect(throws: ZstdError.self) { try decompress(foreign) }
        #expect(foreign.withUnsafeBytes { ZstdDecompressor.contentSize(of: $0) } == nil)
        // The context stays usable after errors.
        #expect(try decompress(frame) == data.count && out == data)
        #expect(!ZstdDecompressor.version.isEmpty)
    }

    /// A decompressor told not to check content skips only the frame's final checksum: a frame
    /// whose last four bytes (that checksum) are wrong still gives the data, which the checking
    /// one refuses; a damaged block is still an error.
    @Test func withoutTheContentCheckOnlyTheChecksumIsSkipped() throws {
        let data = (0..<10_000).map { UInt8($0 % 251) }
        let frame = try compressed(data)
        var wrongSum = frame
        wrongSum[frame.count - 1] ^= 0x5A
        var out = [UInt8](repeating: 0, count: data.count)
        func decompress(_ input: [UInt8], _ decompressor: ZstdDecompressor) throws -> Int {
            try input.withUnsafeBytes { source in try out.withUnsafeMutableBytes { try decompressor.decompress(source, into: $0) } }
        }
        #expect(throws: ZstdError.self) { try decompress(wrongSum, ZstdDecompressor()) }
        out = [UInt8](repeating: 0, count: data.count)
        #expect(try decompress(wrongSum, ZstdDecompressor(checkingContent: false)) == data.count && out == data)
        #expect(throws: ZstdError.self) { try decompress(Array(frame[..<(frame.count / 2)]), ZstdDecompressor(checkingContent: false)) }
    }
}
