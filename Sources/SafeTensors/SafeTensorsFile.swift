// Safetensors reader: of a file through a memory map, of bytes in memory (copied), or of bytes
// borrowed for one call (a cache's blob in LMDB's map). The whole header is parsed and checked on
// open (offsets, overlaps, holes, sizes), so every later read is in bounds by construction; tensor
// data is read where it lies. Not a writer (see SafeTensorsWriter.swift) and not a lazy parser.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

/// A safetensors file opened read-only: through a memory map, a copy, or borrowed bytes.
public final class SafeTensorsFile: @unchecked Sendable {
    /// What the header says about one tensor.
    public struct Info: Sendable, Equatable {
        public let dtype: DType
        public let shape: [Int]
        /// Byte range within the data buffer.
        public let byteRange: Range<Int>
    }

    public let path: String
    /// Tensor names in file order (by data offset).
    public let names: [String]
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    private let infos: [String: Info]
    private let base: UnsafeRawPointer
    private let length: Int
    private let storage: Storage
    private let dataStart: Int

    /// Where `base` points, and so what deinit gives back.
    private enum Storage {
        /// A file map of `length` bytes.
        case mapped
        /// A heap copy (bytes parsed in memory).
        case copy
        /// Bytes the caller owns, valid for one call of `withBorrowed`.
        case borrowed
    }

    /// Largest header accepted, as in the reference implementation.
    public static let maximumHeaderLength = 100_000_000

    /// Opens and validates `path`; throws `SafeTensorsError` naming the fault.
    public convenience init(path: String) throws {
        // Non-blocking, so that a FIFO in the file's place is refused below: a plain open waited
        // for a writer forever.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw SafeTensorsError(path: path, "cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw SafeTensorsError(path: path, "cannot stat (\(String(cString: strerror(errno))))") }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw SafeTensorsError(path: path, status.st_mode & S_IFMT == S_IFDIR ? "is a folder, not a safetensors file"
                                                                                  : "is not a regular file (a FIFO, socket or device)")
        }
        let size = Int(status.st_size)
        guard size >= 8 else { throw SafeTensorsError(path: path, "file is \(size) bytes, shorter than the 8-byte header length") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw SafeTensorsError(path: path, "cannot memory-map (\(String(cString: strerror(errno))))")
        }
        do {
            try self.init(base: UnsafeRawPointer(map), length: size, storage: .mapped, source: path)
        } catch {
            munmap(map, size)
            throw error
        }
    }

    /// Parses safetensors bytes held in memory (copied), with the same checks as a file; `source`
    /// names them in errors.
    public convenience init(bytes: [UInt8], source: String) throws {
        guard bytes.count >= 8 else { throw SafeTensorsError(path: source, "\(bytes.count) bytes, shorter than the 8-byte header length") }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        do {
            try self.init(base: UnsafeRawPointer(copy), length: bytes.count, storage: .copy, source: source)
        } catch {
            copy.deallocate()
            throw error
        }
    }

    /// Calls `body` with the safetensors bytes `bytes` parsed where they lie, with the same checks
    /// as a file (`source` names them in errors, e.g. "cache/blob:lst.r8"): a blob in a cache's
    /// memory map is read without a copy of its own (two copies of the top blocks' blob had been
    /// most of a linear probe's peak memory). The file must not be used after `body` returns.
    public static func withBorrowed<R>(_ bytes: UnsafeRawBufferPointer, source: String, _ body: (SafeTensorsFile) throws -> R) throws -> R {
        guard bytes.count >= 8 else { throw SafeTensorsError(path: source, "\(bytes.count) bytes, shorter than the 8-byte header length") }
        var file = try SafeTensorsFile(base: bytes.baseAddress!, length: bytes.count, storage: .borrowed, source: source)
        let result = try body(file)
        precondition(isKnownUniquelyReferenced(&file), "a borrowed SafeTensorsFile (\(source)) outlived withBorrowed")
        return result
    }

    private init(base: UnsafeRawPointer, length: Int, storage: Storage, source: String) throws {
        let parsed = try Self.parseHeader(base: base, size: length, path: source)
        path = source
        self.base = base
        self.length = length
        self.storage = storage
        dataStart = parsed.dataStart
        infos = parsed.infos
        metadata = parsed.metadata
        names = parsed.infos.sorted { ($0.value.byteRange.lowerBound, $0.key) < ($1.value.byteRange.lowerBound, $1.key) }.map(\.key)
    }

    deinit {
        switch storage {
        case .mapped: munmap(UnsafeMutableRawPointer(mutating: base), length)
        case .copy: UnsafeMutableRawPointer(mutating: base).deallocate()
        case .borrowed: break
        }
    }

    /// Dtype, shape and byte range of a tensor.
    public func info(_ name: String) throws -> Info {
        guard let info = infos[name] else { throw SafeTensorsError(path: path, tensor: name, "no such tensor in the file") }
        return info
    }

    /// Calls `body` with the tensor's stored bytes (valid only inside `body`).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(name)
        return try body(UnsafeRawBufferPointer(start: base + dataStart + info.byteRange.lowerBound, count: info.byteRange.count))
    }

    /// The tensor converted to Float32 (from F32, F16, BF16 or F64).
    public func tensor(_ name: String) throws -> Tensor {
        let info = try info(name)
        let count = Tensor.elementCount(info.shape)
        let source = base + dataStart + info.byteRange.lowerBound
        var scalars = [Float](repeating: 0, count: count)
        scalars.withUnsafeMutableBufferPointer { out in
            switch info.dtype {
            case .f32:
                if count > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: source, byteCount: count * 4) }
            case .f16:
                for i in 0..<count { out[i] = HalfPrecision.floatFromFloat16(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .bf16:
                for i in 0..<count { out[i] = HalfPrecision.floatFromBFloat16(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .f64:
                for i in 0..<count { out[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            default:
                break
            }
        }
        guard [.f32, .f16, .bf16, .f64].contains(info.dtype) else {
            throw SafeTensorsError(path: path, tensor: name, "dtype \(info.dtype.rawValue) cannot be read as floating point")
        }
        return Tensor(shape: info.shape, scalars: scalars)
    }

    /// The tensor as Float32, after checking its shape: the error names the key and both shapes.
    public func tensor(_ name: String, expectedShape: [Int]) throws -> Tensor {
        let info = try info(name)
        guard info.shape == expectedShape else {
            throw SafeTensorsError(path: path, tensor: name, "shape \(info.shape), expected \(expectedShape)")
        }
        return try tensor(name)
    }

    // MARK: Header

    private struct Entry: Decodable {
        let dtype: String
        let shape: [Int]
        let data_offsets: [Int]
    }

    private static func parseHeader(base: UnsafeRawPointer, size: Int, path: String) throws
        -> (infos: [String: Info], metadata: [String: String], dataStart: Int)
    {
        let declared = base.loadUnaligned(as: UInt64.self).littleEndian
        guard declared <= UInt64(maximumHeaderLength) else {
            throw SafeTensorsError(path: path, "header length \(declared) is over the \(maximumHeaderLength)-byte limit")
        }
        let headerLength = Int(declared)
        guard headerLength <= size - 8 else {
            throw SafeTensorsError(path: path, "header length \(headerLength) runs past the end of the \(size)-byte file")
        }
        let headerBytes = UnsafeRawBufferPointer(start: base + 8, count: headerLength)
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw SafeTensorsError(path: path, "header does not start with a JSON object")
        }
        let json: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any] else {
                throw SafeTensorsError(path: path, "header is not a JSON object")
            }
            json = object
        } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw SafeTensorsError(path: path, "header is not valid JSON")
        }
        let dataLength = size - 8 - headerLength
        var infos: [String: Info] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in json {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw SafeTensorsError(path: path, "__metadata__ is not an object of strings")
                }
                for (key, entry) in map {
                    guard let text = entry as? String else {
                        throw SafeTensorsError(path: path, "__metadata__ entry \"\(key)\" is not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            infos[name] = try parseEntry(name, value, dataLength: dataLength, path: path)
        }
        // Tensors must tile the data buffer exactly: no overlaps, no holes, nothing past the end.
        var cursor = 0
        for (name, info) in infos.sorted(by: { ($0.value.byteRange.lowerBound, $0.value.byteRange.upperBound) < ($1.value.byteRange.lowerBound, $1.value.byteRange.upperBound) }) {
            if info.byteRange.lowerBound < cursor {
                throw SafeTensorsError(path: path, tensor: name, "data_offsets [\(info.byteRange.lowerBound), \(info.byteRange.upperBound)] overlap another tensor's bytes")
            }
            if info.byteRange.lowerBound > cursor {
                throw SafeTensorsError(path: path, "bytes \(cursor)..<\(info.byteRange.lowerBound) of the data buffer belong to no tensor")
            }
            cursor = info.byteRange.upperBound
        }
        if cursor != dataLength {
            throw SafeTensorsError(path: path, "the data buffer holds \(dataLength) bytes but the tensors cover \(cursor)")
        }
        return (infos, metadata, 8 + headerLength)
    }

    private static func parseEntry(_ name: String, _ value: Any, dataLength: Int, path: String) throws -> Info {
        guard let entry = value as? [String: Any] else {
            throw SafeTensorsError(path: path, tensor: name, "header entry is not an object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw SafeTensorsError(path: path, tensor: name, "missing or non-string \"dtype\"")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw SafeTensorsError(path: path, tensor: name, "unknown dtype \"\(dtypeName)\"")
        }
        guard let shape = integers(entry["shape"]) else {
            throw SafeTensorsError(path: path, tensor: name, "\"shape\" is not an array of integers")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw SafeTensorsError(path: path, tensor: name, "negative dimension in shape \(shape)")
        }
        guard let offsets = integers(entry["data_offsets"]), offsets.count == 2 else {
            throw SafeTensorsError(path: path, tensor: name, "\"data_offsets\" is not a pair of integers")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin >= 0, begin <= end else {
            throw SafeTensorsError(path: path, tensor: name, "data_offsets [\(begin), \(end)] are not an ordered pair of non-negative offsets")
        }
        guard end <= dataLength else {
            throw SafeTensorsError(path: path, tensor: name, "data_offsets [\(begin), \(end)] run past the \(dataLength)-byte data buffer")
        }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw SafeTensorsError(path: path, tensor: name, "shape \(shape) overflows") }
            elements = product
        }
        let (needed, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, needed == end - begin else {
            throw SafeTensorsError(path: path, tensor: name,
                                   "data_offsets [\(begin), \(end)] hold \(end - begin) bytes but \(dtype.rawValue) \(shape) needs \(overflow ? "more than Int.max" : String(needed))")
        }
        return Info(dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    /// An array of JSON integers (not booleans, not fractions), or nil.
    private static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var out: [Int] = []
        for element in array {
            // Foundation hands JSON booleans and fractions over as NSNumber too; its type code
            // tells them apart ("c" for booleans, "d" for doubles).
            guard let number = element as? NSNumber, !(number is NSDecimalNumber),
                  "islqISLQ".contains(String(cString: number.objCType))
            else { return nil }
            out.append(number.intValue)
        }
        return out
    }
}
