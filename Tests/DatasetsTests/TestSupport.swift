// Helpers for the Datasets tests: a temporary folder that removes itself, and writers for the
// files the readers take (PNG through libpng's simplified write API, JPEG through tjCompress2,
// gzip through zlib), so every test reads real files.

import CPNG
import CTurboJPEG
import CZlib
import Datasets
import Foundation
import Testing

/// A fresh folder under the system's temporary directory, deleted when the value goes away.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("sidecar-datasets-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The path of `name` inside the folder.
    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `name`, creating intermediate folders; returns the path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, Array(text.utf8))
    }

    /// Writes `bytes` to `name`, creating intermediate folders; returns the path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let target = file(name)
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: target))
        return target
    }

    func makeFolder(_ name: String) throws {
        try FileManager.default.createDirectory(atPath: file(name), withIntermediateDirectories: true)
    }
}

/// Runs `body`, expects it to throw exactly `expected`, and checks the message names `mentions`
/// (the file, usually with ":line").
func expectError(
    _ expected: DatasetError, mentions: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected \(expected), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as DatasetError {
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect("\(error)".contains(mentions), "message: \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(expected), got \(error)", sourceLocation: sourceLocation)
    }
}

/// A deterministic test image: smooth ramps in red and green, blocks in blue.
func testImage(height: Int, width: Int) -> RGBImage {
    var pixels: [UInt8] = []
    for y in 0..<height {
        for x in 0..<width {
            pixels.append(UInt8((x * 255) / max(width - 1, 1)))
            pixels.append(UInt8((y * 255) / max(height - 1, 1)))
            pixels.append((x / 4 + y / 4) % 2 == 0 ? 40 : 200)
        }
    }
    return RGBImage(height: height, width: width, pixels: pixels)
}

/// Encodes interleaved 8-bit pixels (`channels` 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as PNG.
func encodePNG(_ pixels: [UInt8], height: Int, width: Int, channels: Int) -> [UInt8] {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    image.width = UInt32(width)
    image.height = UInt32(height)
    let color = channels >= 3 ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0
    let alpha = channels % 2 == 0 ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0
    image.format = color | alpha
    var size: png_alloc_size_t = 0
    let measured = pixels.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil) }
    precondition(measured != 0, "png_image_write_to_memory failed to measure")
    var encoded = [UInt8](repeating: 0, count: Int(size))
    let written = encoded.withUnsafeMutableBytes { target in
        pixels.withUnsafeBytes { png_image_write_to_memory(&image, target.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
    }
    precondition(written != 0, "png_image_write_to_memory failed")
    return Array(encoded.prefix(Int(size)))
}

/// Encodes interleaved pixels of `pixelFormat` (TJPF_RGB, TJPF_GRAY, TJPF_CMYK) as JPEG.
func encodeJPEG(_ pixels: [UInt8], height: Int, width: Int, pixelFormat: TJPF, quality: Int32 = 95,
                subsampling: TJSAMP = TJSAMP_444) -> [UInt8] {
    let handle = tjInitCompress()!
    defer { tjDestroy(handle) }
    var buffer: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let status = pixels.withUnsafeBufferPointer {
        tjCompress2(handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(pixelFormat.rawValue),
                    &buffer, &size, Int32(subsampling.rawValue), quality, 0)
    }
    precondition(status == 0, "tjCompress2: \(String(cString: tjGetErrorStr2(handle)))")
    defer { tjFree(buffer) }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
}

/// Writes `bytes` gzip-compressed to `path`.
func writeGzip(_ path: String, _ bytes: [UInt8]) {
    let file = gzopen(path, "wb")!
    let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
    precondition(Int(written) == bytes.count, "gzwrite wrote \(written) of \(bytes.count)")
    gzclose(file)
}

/// An IDX file's bytes: magic 00 00 08 rank, big-endian extents, data.
func idxBytes(dimensions: [Int], data: [UInt8], typeCode: UInt8 = 0x08) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, typeCode, UInt8(dimensions.count)]
    for extent in dimensions {
        bytes += [UInt8(extent >> 24 & 0xFF), UInt8(extent >> 16 & 0xFF), UInt8(extent >> 8 & 0xFF), UInt8(extent & 0xFF)]
    }
    return bytes + data
}
