// Writes Float32 arrays as NumPy .npy files (format 1.0), so stored activations can be checked
// against another implementation with numpy.load.
import Foundation
import TensorCore

public enum NumpyFile {
    /// Writes `values` with `shape` (C order, little-endian float32) to `path`.
    public static func write(_ values: [Float], shape: [Int], to path: String) throws {
        precondition(values.count == shape.reduce(1, *), "npy: \(values.count) values for shape \(shape)")
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(dims), }"
        // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        do {
            try data.write(to: URL(userPath: path), options: .atomic)
        } catch {
            throw CacheError("\(path): cannot write (\(error.localizedDescription))")
        }
    }
}
