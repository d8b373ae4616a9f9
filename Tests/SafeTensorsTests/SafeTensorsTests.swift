// The safetensors reader against a file written by the reference implementation, the writer's
// round trips and rounding, and one test per malformed-file fault.
import Foundation
import SafeTensors
import Testing
import TensorCore

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

func temporaryPath(_ name: String) -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.appendingPathComponent(name).path
}

/// Removes the folder `temporaryPath` made for `path`.
func removeTemporary(_ path: String) {
    try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
}

/// A file made of a header length, header text and data bytes, exactly as given.
func craft(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> String {
    let path = temporaryPath("crafted.safetensors")
    var bytes = [UInt8]()
    withUnsafeBytes(of: (declaredLength ?? UInt64(header.utf8.count)).littleEndian) { bytes += $0 }
    bytes += Array(header.utf8) + data
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

func expectFault(_ path: String, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
    expectFault(path, fragments: fragments, sourceLocation: sourceLocation)
}

func expectFault(_ path: String, fragments: [String], sourceLocation: SourceLocation) {
    do {
        _ = try SafeTensorsFile(path: path)
        Issue.record("opened a malformed file without error", sourceLocation: sourceLocation)
    } catch let error as SafeTensorsError {
        let message = error.description
        #expect(message.hasPrefix(path), "error does not name the file: \(message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(message.contains(fragment), "error \"\(message)\" does not mention \"\(fragment)\"", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
    }
}

/// `expectFault` on a file crafted from `header`, `data` and `declaredLength`, removed afterwards.
func expectCraftedFault(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil, _ fragments: String...,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    let path = craft(header: header, data: data, declaredLength: declaredLength)
    defer { removeTemporary(path) }
    expectFault(path, fragments: fragments, sourceLocation: sourceLocation)
}

@Suite struct SafeTensorsReaderTests {
    @Test func readsTheReferenceImplementationsFile() throws {
        let file = try SafeTensorsFile(path: fixtures.appendingPathComponent("reference.safetensors").path)
        let expected = try JSONDecoder().decode([String: [UInt32]].self, from: Data(contentsOf: fixtures.appendingPathComponent("expected.json")))
        #expect(file.metadata == ["format": "pt", "note": "fixture"])
        #expect(Set(file.names) == ["weights.f32", "weights.f16", "weights.bf16", "position_ids"])
        for (name, values) in expected {
            let tensor = try file.tensor(name)
            #expect(tensor.scalars.map(\.bitPattern) == values, "\(name)")
        }
        let bf16 = try file.info("weights.bf16"), ids = try file.info("position_ids")
        #expect(bf16.shape == [13, 1])
        #expect(ids.dtype == .i64)
        #expect(throws: SafeTensorsError.self) { try file.tensor("position_ids") }
        #expect(throws: SafeTensorsError.self) { try file.tensor("missing") }
        do {
            _ = try file.tensor("weights.f32", expectedShape: [13])
            Issue.record("shape mismatch accepted")
        } catch {
            #expect("\(error)".contains("weights.f32") && "\(error)".contains("[1, 13]") && "\(error)".contains("[13]"))
        }
    }

    /// Our Float32 → F16/BF16 rounding equals torch's on the same values (expected.json).
    @Test(arguments: [SafeTensorsWriter.StorageType.f16, .bf16])
    func writerRoundsLikeTheReference(storage: SafeTensorsWriter.StorageType) throws {
        let expected = try JSONDecoder().decode([String: [UInt32]].self, from: Data(contentsOf: fixtures.appendingPathComponent("expected.json")))
        let source = Tensor(shape: [13], scalars: expected["weights.f32"]!.map { Float(bitPattern: $0) })
        let path = temporaryPath("rounded.safetensors")
        defer { removeTemporary(path) }
        try SafeTensorsWriter.write([("x", source)], to: path, storage: storage)
        let back = try SafeTensorsFile(path: path).tensor("x")
        let reference = expected[storage == .f16 ? "weights.f16" : "weights.bf16"]!
        #expect(back.scalars.map(\.bitPattern) == reference)
    }

    @Test func roundTripKeepsOrderShapesAndMetadata() throws {
        var rng = SeededGenerator(seed: 1)
        let tensors: [(name: String, tensor: Tensor)] = [
            ("b.weight", Tensor.randomNormal([3, 5], using: &rng)), ("a.bias", Tensor.randomNormal([5], using: &rng)),
            ("empty", Tensor(zeros: [0, 4])), ("scalar", Tensor(scalar: 7)),
        ]
        let path = temporaryPath("model.safetensors")
        defer { removeTemporary(path) }
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(Set(file.names) == Set(tensors.map(\.name)))
        for (name, tensor) in tensors {
            let back = try file.tensor(name)
            #expect(back == tensor)
        }
        #expect(file.metadata == ["format": "pt"])
        // The data starts 8-byte aligned, as the reference writes it.
        let headerLength = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLength % 8 == 0)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(leftovers == ["model.safetensors"], "the atomic write left temporary files: \(leftovers)")
    }

    @Test func halfPrecisionEdgeCases() {
        #expect(HalfPrecision.floatFromFloat16(0x0001) == Float(5.9604645e-08))   // smallest subnormal
        #expect(HalfPrecision.floatFromFloat16(0x7C00) == .infinity)
        #expect(HalfPrecision.floatFromFloat16(0xFC00) == -.infinity)
        #expect(HalfPrecision.floatFromFloat16(0x7E00).isNaN)
        #expect(HalfPrecision.float16FromFloat(.nan) & 0x7C00 == 0x7C00 && HalfPrecision.float16FromFloat(.nan) & 0x3FF != 0)
        #expect(HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat(.nan)).isNaN)
        // Every half value survives half → float → half.
        for bits in UInt16(0)...UInt16.max where (bits & 0x7C00) != 0x7C00 {
            #expect(HalfPrecision.float16FromFloat(HalfPrecision.floatFromFloat16(bits)) == bits)
        }
    }
}

@Suite struct MalformedSafeTensorsTests {
    let goodHeader = #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func shortFile() {
        let path = temporaryPath("short.safetensors")
        defer { removeTemporary(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
        expectFault(path, "shorter than the 8-byte header length")
        let empty = temporaryPath("empty.safetensors")
        defer { removeTemporary(empty) }
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        expectFault(empty, "0 bytes")
    }

    /// A FIFO in the file's place had made the open wait for a writer forever; a folder was
    /// "cannot memory-map (No such device)".
    @Test func notARegularFile() throws {
        let fifo = temporaryPath("fifo.safetensors")
        defer { removeTemporary(fifo) }
        #expect(mkfifo(fifo, 0o600) == 0)
        expectFault(fifo, "is not a regular file (a FIFO, socket or device)")
        let folder = temporaryPath("folder.safetensors")
        defer { removeTemporary(folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        expectFault(folder, "is a folder, not a safetensors file")
    }

    @Test func headerLengthBeyondFile() {
        expectCraftedFault(header: goodHeader, data: [UInt8](repeating: 0, count: 8), declaredLength: 4096, "runs past the end")
        expectCraftedFault(header: goodHeader, declaredLength: UInt64.max, "over the")
        expectCraftedFault(header: goodHeader, declaredLength: UInt64(Int.max) - 3, "over the")
    }

    @Test func invalidJSON() {
        expectCraftedFault(header: #"{"t": {"dtype": "F32", "#, data: [], "not valid JSON")
        expectCraftedFault(header: "[1, 2]", "JSON object")
        expectCraftedFault(header: "\u{FF}garbage", "JSON object")
    }

    @Test func unknownDtypeAndWrongTypes() {
        expectCraftedFault(header: #"{"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), "\"t\"", "unknown dtype \"F33\"")
        expectCraftedFault(header: #"{"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), "dtype")
        expectCraftedFault(header: #"{"t":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, data: .init(repeating: 0, count: 4), "shape")
        expectCraftedFault(header: #"{"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), "shape")
        expectCraftedFault(header: #"{"t":{"dtype":"F32","shape":[2]}}"#, data: .init(repeating: 0, count: 8), "data_offsets")
        expectCraftedFault(header: #"{"t":[1,2]}"#, "not an object")
        expectCraftedFault(header: #"{"__metadata__":{"k":1}}"#, "__metadata__")
        expectCraftedFault(header: #"{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), "negative")
    }

    @Test func offsetsOutOfRangeOrOverlapping() {
        expectCraftedFault(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, data: .init(repeating: 0, count: 8), "\"t\"", "run past the 8-byte data buffer")
        expectCraftedFault(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: .init(repeating: 0, count: 8), "not an ordered pair")
        expectCraftedFault(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                           data: .init(repeating: 0, count: 12), "overlap")
        expectCraftedFault(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: .init(repeating: 0, count: 8), "belong to no tensor")
        expectCraftedFault(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: .init(repeating: 0, count: 8), "cover 4")
    }

    @Test func shapeBytesMismatch() {
        expectCraftedFault(header: #"{"w":{"dtype":"F32","shape":[5,6],"data_offsets":[0,100]}}"#, data: .init(repeating: 0, count: 100),
                           "\"w\"", "hold 100 bytes but F32 [5, 6] needs 120")
        expectCraftedFault(header: #"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), "overflows")
    }

    /// Every truncation of a valid file and random header corruption: an error or a valid file, never a crash.
    @Test func truncationsAndCorruptionNeverCrash() throws {
        let path = temporaryPath("valid.safetensors")
        defer { removeTemporary(path) }
        try SafeTensorsWriter.write([("a", Tensor(repeating: 1, shape: [3, 2])), ("b", Tensor(repeating: 2, shape: [4]))], metadata: ["k": "v"], to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let cut = temporaryPath("cut.safetensors")
        defer { removeTemporary(cut) }
        for length in 0..<bytes.count {
            _ = FileManager.default.createFile(atPath: cut, contents: Data(bytes[..<length]))
            #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(path: cut) }
        }
        var rng = SeededGenerator(seed: 99)
        let headerEnd = 8 + Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        for _ in 0..<2000 {
            var corrupted = bytes
            for _ in 0..<3 { corrupted[Int(rng.next() % UInt64(headerEnd))] = UInt8(truncatingIfNeeded: rng.next()) }
            _ = FileManager.default.createFile(atPath: cut, contents: Data(corrupted))
            if let file = try? SafeTensorsFile(path: cut) {
                for name in file.names { _ = try? file.tensor(name) }
            }
        }
    }
}

/// The in-memory path (a cache's blobs): the bytes `serialize` makes parse back with the file's
/// checks, and damaged bytes are refused with the source named.
@Suite struct InMemorySafeTensorsTests {
    @Test func serializedBytesParseBack() throws {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), b = Tensor(shape: [3], scalars: [-1, 0, 0.5])
        let bytes = try SafeTensorsWriter.serialize([("a", a), ("b", b)], metadata: ["k": "v"])
        let file = try SafeTensorsFile(bytes: bytes, source: "memory:test")
        #expect(file.names == ["a", "b"] && file.metadata == ["k": "v"])
        #expect(try file.tensor("a") == a && file.tensor("b") == b)
        do {
            _ = try SafeTensorsFile(bytes: Array(bytes.dropLast()), source: "memory:test")
            Issue.record("truncated bytes were accepted")
        } catch let error as SafeTensorsError {
            #expect(error.path == "memory:test")
        }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.serialize([("a", a), ("a", b)]) }
    }
}
