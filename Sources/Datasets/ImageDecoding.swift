// PNG and JPEG files decoded to 8-bit RGB, [height, width, 3], through libpng's simplified API and
// TurboJPEG: both report errors by return code, where libjpeg's setjmp/longjmp cannot safely cross
// Swift frames. Grey becomes three equal channels and alpha is dropped, as PIL's convert("RGB")
// does, or composited onto white for processors with do_convert_rgb (CLIP's). Deliberately no
// other formats, no EXIF rotation and no colour management (as in PIL, a PNG's gamma is ignored).

import CPNG
import CTurboJPEG
import Foundation

/// An 8-bit RGB image, row-major with interleaved channels: `pixels` is [height, width, 3].
public struct RGBImage: Sendable, Equatable {
    public let height: Int
    public let width: Int
    public var pixels: [UInt8]

    public init(height: Int, width: Int, pixels: [UInt8]) {
        precondition(height >= 0 && width >= 0 && pixels.count == height * width * 3,
                     "RGB image [\(height), \(width), 3] needs \(height * width * 3) bytes, got \(pixels.count)")
        self.height = height
        self.width = width
        self.pixels = pixels
    }

    /// A grey image, [height, width], as three equal channels.
    public init(grey: some Collection<UInt8>, height: Int, width: Int) {
        precondition(grey.count == height * width, "grey image [\(height), \(width)] needs \(height * width) bytes, got \(grey.count)")
        var pixels = [UInt8](repeating: 0, count: height * width * 3)
        for (index, value) in grey.enumerated() {
            pixels[3 * index] = value
            pixels[3 * index + 1] = value
            pixels[3 * index + 2] = value
        }
        self.init(height: height, width: width, pixels: pixels)
    }

    /// Channel `channel` of the pixel in row `y`, column `x`.
    public subscript(y: Int, x: Int, channel: Int) -> UInt8 {
        pixels[(y * width + x) * 3 + channel]
    }
}

/// Decodes PNG and JPEG files, telling them apart by their first bytes, not their names.
public enum ImageDecoder {
    /// Images with more pixels are refused before any allocation (PIL's own bomb limit is
    /// ~179 million pixels); a damaged header can claim 4 billion by 4 billion.
    public static let maximumPixelCount = 1 << 28

    /// Reads and decodes the image at `path`; with `alphaOnWhite`, a transparent PNG is composited
    /// onto white (a processor's `do_convert_rgb`), else its alpha is dropped.
    public static func decode(file path: String, alphaOnWhite: Bool = false) throws(DatasetError) -> RGBImage {
        try decode(readWholeFile(path), name: path, alphaOnWhite: alphaOnWhite)
    }

    /// Decodes an encoded PNG or JPEG; `name` is used in messages.
    public static func decode(_ bytes: [UInt8], name: String, alphaOnWhite: Bool = false) throws(DatasetError) -> RGBImage {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            return try decodePNG(bytes, name: name, alphaOnWhite: alphaOnWhite)
        }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            return try decodeJPEG(bytes, name: name)
        }
        throw .brokenImage(file: name, detail: bytes.isEmpty ? "the file is empty" : "neither a PNG nor a JPEG (unrecognised first bytes)")
    }

    private static func decodePNG(_ file: [UInt8], name: String, alphaOnWhite: Bool) throws(DatasetError) -> RGBImage {
        // libpng keeps the pointer it is given until the read finishes: the whole read happens
        // inside one withUnsafeBytes. The stripped copy of a file with gAMA had been freed after
        // its last use in Swift, before png_image_finish_read read it (a crash, or "unknown
        // compression method").
        let result = withoutGammaChunks(file).withUnsafeBytes { bytes in
            Result { () throws(DatasetError) in try decodePNG(bytes, name: name, alphaOnWhite: alphaOnWhite) }
        }
        return try result.get()
    }

    private static func decodePNG(_ bytes: UnsafeRawBufferPointer, name: String, alphaOnWhite: Bool) throws(DatasetError) -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let begun = png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count)
        guard begun != 0 else {
            throw .brokenImage(file: name, detail: "PNG: \(message(of: image))")
        }
        let height = Int(image.height)
        let width = Int(image.width)
        try checkSize(height: height, width: width, name: name)
        // 16-bit files without gamma information are taken as sRGB (as PIL does), not linear.
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        let hasAlpha = image.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        // An RGB file's tRNS colour key reads as alpha here, but PIL opens it as plain RGB, which
        // convert_to_rgb leaves alone; grey and palette keys it does composite. IHDR's colour type
        // is byte 25.
        let keyedRGB = bytes.count > 25 && bytes[25] == 2
        // With alpha, read RGBA and drop it ourselves: libpng would composite onto a background.
        // (Swift does not import PNG_FORMAT_RGBA, a macro built from other macros.)
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR) | (hasAlpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
        let channels = hasAlpha ? 4 : 3
        var decoded = [UInt8](repeating: 0, count: height * width * channels)
        let finished = decoded.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard finished != 0 else {
            throw .brokenImage(file: name, detail: "PNG: \(message(of: image))")
        }
        if hasAlpha {
            var rgb = [UInt8](repeating: 0, count: height * width * 3)
            for pixel in 0..<(height * width) {
                let alpha = UInt32(decoded[4 * pixel + 3])
                for channel in 0..<3 {
                    let value = decoded[4 * pixel + channel]
                    rgb[3 * pixel + channel] = alphaOnWhite && !keyedRGB ? onWhite(value, alpha: alpha) : value
                }
            }
            decoded = rgb
        }
        return RGBImage(height: height, width: width, pixels: decoded)
    }

    /// `value` with opacity `alpha` over opaque white, in PIL's integer arithmetic (its
    /// alpha_composite with 7 bits of extra precision, the division by 255 as two shifts), which is
    /// what transformers' convert_to_rgb runs.
    static func onWhite(_ value: UInt8, alpha: UInt32) -> UInt8 {
        if alpha == 0 { return 255 }
        let (sourceWeight, whiteWeight) = (alpha << 7, (255 - alpha) << 7)
        let sum = UInt32(value) * sourceWeight + 255 * whiteWeight + (0x80 << 7)
        return UInt8((((sum >> 8) + sum) >> 8) >> 7)
    }

    /// The PNG without its gAMA and cHRM chunks. libpng's simplified API converts a file whose
    /// gamma is not sRGB's to sRGB (a gamma of 1.0 turned 38 into 107); PIL, whose pixels the
    /// backbones' processors see, ignores both. Files without them come back as they are.
    static func withoutGammaChunks(_ png: [UInt8]) -> [UInt8] {
        func isGamma(_ at: Int) -> Bool {
            png[at..<at + 4].elementsEqual("gAMA".utf8) || png[at..<at + 4].elementsEqual("cHRM".utf8)
        }
        var chunks: [Range<Int>] = []
        var at = 8
        while at + 12 <= png.count {
            let length = png[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
            let end = at + 12 + length
            guard end <= png.count else { break }
            chunks.append(at..<end)
            if png[at + 4..<at + 8].elementsEqual("IEND".utf8) { break }
            at = end
        }
        guard chunks.contains(where: { isGamma($0.lowerBound + 4) }) else { return png }
        var out = Array(png[0..<8])
        for chunk in chunks where !isGamma(chunk.lowerBound + 4) { out += png[chunk] }
        // Whatever follows the last whole chunk (a damaged tail) is left for libpng to judge.
        out += png[(chunks.last?.upperBound ?? 8)...]
        return out
    }

    private static func message(of image: png_image) -> String {
        withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private static func decodeJPEG(_ bytes: [UInt8], name: String) throws(DatasetError) -> RGBImage {
        guard let handle = tjInitDecompress() else {
            throw .brokenImage(file: name, detail: "JPEG: cannot start TurboJPEG")
        }
        defer { tjDestroy(handle) }
        func failure(_ step: String) -> DatasetError {
            let kind = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) ? " (warning; the data is damaged)" : ""
            return .brokenImage(file: name, detail: "JPEG \(step): \(String(cString: tjGetErrorStr2(handle)))\(kind)")
        }
        var width: Int32 = 0
        var height: Int32 = 0
        var subsampling: Int32 = 0
        var colorspace: Int32 = 0
        let headerStatus = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &width, &height, &subsampling, &colorspace)
        }
        guard headerStatus == 0 else { throw failure("header") }
        try checkSize(height: Int(height), width: Int(width), name: name)
        // CMYK cannot be converted to RGB by libjpeg; decode it raw and convert below.
        let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let channels = isCMYK ? 4 : 3
        let pixelFormat = isCMYK ? TJPF_CMYK : TJPF_RGB
        var decoded = [UInt8](repeating: 0, count: Int(height) * Int(width) * channels)
        // Default flags: accurate integer IDCT and smooth chroma upsampling, PIL's defaults too.
        // Warnings (a truncated file decodes to grey) count as errors.
        let status = bytes.withUnsafeBufferPointer { source in
            decoded.withUnsafeMutableBufferPointer { target in
                tjDecompress2(handle, source.baseAddress, UInt(source.count), target.baseAddress,
                              width, 0, height, Int32(pixelFormat.rawValue), 0)
            }
        }
        guard status == 0 else { throw failure("data") }
        if isCMYK {
            decoded = rgbFromAdobeCMYK(decoded, pixelCount: Int(height) * Int(width))
        }
        return RGBImage(height: Int(height), width: Int(width), pixels: decoded)
    }

    /// CMYK as Adobe applications store it in JPEGs (inverted: 255 is no ink) to RGB the way PIL
    /// converts it: red = c·k/255, rounded, and likewise for green (m) and blue (y).
    private static func rgbFromAdobeCMYK(_ cmyk: [UInt8], pixelCount: Int) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: pixelCount * 3)
        for pixel in 0..<pixelCount {
            let k = Int(cmyk[4 * pixel + 3])
            for channel in 0..<3 {
                rgb[3 * pixel + channel] = UInt8((Int(cmyk[4 * pixel + channel]) * k + 127) / 255)
            }
        }
        return rgb
    }

    private static func checkSize(height: Int, width: Int, name: String) throws(DatasetError) {
        guard height > 0, width > 0 else {
            throw .brokenImage(file: name, detail: "no pixels (\(width)×\(height)): the header is truncated or damaged")
        }
        guard height * width <= maximumPixelCount else {
            throw .brokenImage(file: name, detail: "\(width)×\(height) exceeds the limit of \(maximumPixelCount) pixels")
        }
    }
}

/// The whole content of a (small) file.
func readWholeFile(_ path: String) throws(DatasetError) -> [UInt8] {
    guard let file = fopen(path, "rb") else {
        throw .cannotOpen(file: path, reason: String(cString: strerror(errno)))
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        bytes.append(contentsOf: chunk[0..<count])
        if count < chunk.count {
            if ferror(file) != 0 {
                throw .readFailed(file: path, reason: String(cString: strerror(errno)))
            }
            return bytes
        }
    }
}
