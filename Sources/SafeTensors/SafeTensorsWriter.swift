// Writes safetensors files the way the reference implementation lays them out: a JSON header
// padded with spaces so the data starts 8-byte aligned, then the tensors in the order given. The
// file is written beside its destination and renamed into place, so a crash never leaves a
// half-written file under the final name.
import Foundation
import TensorCore

public enum SafeTensorsWriter {
    /// The storage dtypes the writer produces from Float32.
    public enum StorageType: String, Sendable { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    /// Writes `tensors` (names unique, order kept) and `metadata` to `path`, atomically.
    public static func write(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
        to path: String, storage: StorageType = .f32
    ) throws {
        let file = Data(try serialize(tensors, metadata: metadata, storage: storage, source: path))
        do {
            // .atomic writes a temporary file in the same folder and renames it over `path`.
            try file.write(to: URL(userPath: path), options: .atomic)
        } catch {
            throw SafeTensorsError(path: path, "cannot write (\(error.localizedDescription))")
        }
    }

    /// The bytes of a safetensors file holding `tensors` and `metadata`, laid out as `write` lays
    /// them (for storing one inside another container, e.g. a cache's blobs); `source` names it in errors.
    public static func serialize(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
        storage: StorageType = .f32, source: String = "<memory>"
    ) throws -> [UInt8] {
        var seen = Set<String>()
        for (name, _) in tensors {
            guard name != "__metadata__", seen.insert(name).inserted else {
                throw SafeTensorsError(path: source, tensor: name, "duplicate or reserved tensor name")
            }
        }
        let elementSize = storage == .f32 ? 4 : 2
        var header: [String: Any] = [:]
        var offset = 0
        for (name, tensor) in tensors {
            let bytes = tensor.count * elementSize
            header[name] = ["dtype": storage.rawValue, "shape": tensor.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: UInt8(ascii: " "), count: (8 - json.count % 8) % 8))

        var file = [UInt8]()
        file.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: json)
        for (_, tensor) in tensors {
            switch storage {
            case .f32:
                tensor.withUnsafeBufferPointer { file.append(contentsOf: UnsafeRawBufferPointer($0)) }
            case .f16, .bf16:
                var halves = [UInt16](repeating: 0, count: tensor.count)
                for i in 0..<tensor.count {
                    let v = tensor.scalars[i]
                    halves[i] = (storage == .f16 ? HalfPrecision.float16FromFloat(v) : HalfPrecision.bfloat16FromFloat(v)).littleEndian
                }
                halves.withUnsafeBytes { file.append(contentsOf: $0) }
            }
        }
        return file
    }
}
