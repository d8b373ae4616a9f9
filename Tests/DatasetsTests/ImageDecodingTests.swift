// PNG and JPEG decoding and ImageFolder trees, on images encoded in the test itself (libpng's
// simplified write API, tjCompress2) and on truncated or fake copies of them.

import CTurboJPEG
@testable import Datasets
import Foundation
import Testing

@Suite struct ImageDecodingTests {
    @Test func pngRGBGreyAndAlphaDecodeExactly() throws {
        let folder = try TemporaryFolder()
        let image = testImage(height: 9, width: 13)
        let rgb = try folder.write("rgb.png", encodePNG(image.pixels, height: 9, width: 13, channels: 3))
        #expect(try ImageDecoder.decode(file: rgb) == image)

        // Grey becomes three equal channels.
        let grey = (0..<(9 * 13)).map { UInt8($0 * 2 % 256) }
        let greyPath = try folder.write("grey.png", encodePNG(grey, height: 9, width: 13, channels: 1))
        #expect(try ImageDecoder.decode(file: greyPath) == RGBImage(grey: grey, height: 9, width: 13))

        // Alpha is dropped, not composited: even fully transparent pixels keep their colour.
        var rgba: [UInt8] = []
        for pixel in 0..<(9 * 13) {
            rgba += image.pixels[(3 * pixel)..<(3 * pixel + 3)] + [UInt8(pixel % 2 == 0 ? 0 : 128)]
        }
        let alphaPath = try folder.write("alpha.png", encodePNG(rgba, height: 9, width: 13, channels: 4))
        #expect(try ImageDecoder.decode(file: alphaPath) == image)

        // For a processor with do_convert_rgb, onto white: values from PIL's alpha_composite over
        // white (what transformers' convert_to_rgb runs), value and alpha pairs.
        let pairs: [(UInt8, UInt8)] = [(0, 128), (200, 1), (10, 254), (77, 77), (255, 0), (0, 0), (123, 255), (1, 2)]
        let composited: [UInt8] = [127, 255, 11, 201, 255, 255, 123, 253]
        let pairsPath = try folder.write("pairs.png", encodePNG(pairs.flatMap { [$0.0, $0.0, $0.0, $0.1] }, height: 1, width: 8, channels: 4))
        #expect(try ImageDecoder.decode(file: pairsPath, alphaOnWhite: true) == RGBImage(grey: composited, height: 1, width: 8))
        #expect(try ImageDecoder.decode(file: pairsPath) == RGBImage(grey: pairs.map(\.0), height: 1, width: 8))

        // An RGB file's tRNS colour key is left alone: PIL opens it as RGB, which convert_to_rgb
        // returns unchanged (the key colour here is the first pixel's).
        let plain = encodePNG(image.pixels, height: 9, width: 13, channels: 3)
        let key: [UInt8] = image.pixels[0..<3].flatMap { [UInt8(0), $0] }
        let keyed = try folder.write("keyed.png", Array(plain[0..<33]) + pngChunk("tRNS", key) + Array(plain[33...]))
        #expect(try ImageDecoder.decode(file: keyed, alphaOnWhite: true) == image)
    }

    /// A gAMA chunk is ignored, as PIL ignores it: libpng's simplified API had converted a gamma
    /// of 1.0 to sRGB (38 became 107).
    @Test func pngGammaIsIgnoredAsInPIL() throws {
        let folder = try TemporaryFolder()
        let image = testImage(height: 9, width: 13)
        let plain = encodePNG(image.pixels, height: 9, width: 13, channels: 3)
        // After the signature and IHDR (8 + 25 bytes): gAMA 100000 (1.0) and a cHRM of zeros.
        let gamma = Array(plain[0..<33]) + pngChunk("gAMA", [0, 1, 0x86, 0xA0]) + pngChunk("cHRM", [UInt8](repeating: 0, count: 32)) + Array(plain[33...])
        let path = try folder.write("gamma.png", gamma)
        #expect(try ImageDecoder.decode(file: path) == image)
        #expect(ImageDecoder.withoutGammaChunks(gamma) == plain)
        #expect(ImageDecoder.withoutGammaChunks(plain) == plain)

        // The copy without the chunks must live until libpng's read finishes. It had been freed
        // after its last use in Swift, and read (a crash, or "unknown compression method") in the
        // optimised build only: a debug build keeps it to the end of its scope, so this fails
        // only under `swift test -c release`, where it did at 200 and 600 pixels.
        for size in [20, 200, 600] {
            // Noise, so the image data does not compress to a few bytes.
            var state: UInt32 = 12345
            let noise = (0..<(size * size * 3)).map { _ in state = state &* 1_103_515_245 &+ 12345; return UInt8(truncatingIfNeeded: state >> 16) }
            let large = RGBImage(height: size, width: size, pixels: noise)
            let encoded = encodePNG(large.pixels, height: size, width: size, channels: 3)
            let withGamma = Array(encoded[0..<33]) + pngChunk("gAMA", [0, 0, 0xB1, 0x8F]) + Array(encoded[33...])
            #expect(try ImageDecoder.decode(withGamma, name: "gamma-\(size).png") == large, "\(size)×\(size)")
        }
    }

    @Test func jpegRGBGreyAndCMYKDecode() throws {
        let folder = try TemporaryFolder()
        let image = testImage(height: 16, width: 24)
        let path = try folder.write("a.jpg", encodeJPEG(image.pixels, height: 16, width: 24, pixelFormat: TJPF_RGB, quality: 100))
        let decoded = try ImageDecoder.decode(file: path)
        #expect(decoded.height == 16 && decoded.width == 24)
        let difference = zip(decoded.pixels, image.pixels).map { abs(Int($0) - Int($1)) }.max()!
        print("JPEG quality 100 round trip: max difference \(difference)")
        #expect(difference <= 12)

        let grey = [UInt8](repeating: 77, count: 8 * 8)
        let greyPath = try folder.write("grey.jpeg", encodeJPEG(grey, height: 8, width: 8, pixelFormat: TJPF_GRAY, subsampling: TJSAMP_GRAY))
        #expect(try ImageDecoder.decode(file: greyPath) == RGBImage(grey: grey, height: 8, width: 8))

        // CMYK is read with Adobe's inverted convention, as PIL reads it: red = c·k/255.
        let cmyk = [UInt8]([255, 128, 0, 255]) * 64
        let cmykPath = try folder.write("cmyk.jpg", encodeJPEG(cmyk, height: 8, width: 8, pixelFormat: TJPF_CMYK, quality: 100))
        let cmykDecoded = try ImageDecoder.decode(file: cmykPath)
        #expect(abs(Int(cmykDecoded[3, 3, 0]) - 255) <= 2)
        #expect(abs(Int(cmykDecoded[3, 3, 1]) - 128) <= 2)
        #expect(abs(Int(cmykDecoded[3, 3, 2]) - 0) <= 2)
    }

    @Test func jpegMatchesPILDecoding() throws {
        let fixture = try ResizeFixture.load()
        let decoded = try ImageDecoder.decode(hexBytes(fixture.jpeg.bytes), name: "fixture.jpg")
        let expected = hexBytes(fixture.jpeg.pixels)
        #expect(decoded.height == fixture.height && decoded.width == fixture.width)
        let difference = zip(decoded.pixels, expected).map { abs(Int($0) - Int($1)) }.max()!
        print("JPEG decode vs PIL \(fixture.versions["Pillow"] ?? "?"): max difference \(difference)")
        #expect(difference <= 1)
    }

    @Test func brokenImagesNameTheFile() throws {
        let folder = try TemporaryFolder()
        let image = testImage(height: 32, width: 32)
        let png = encodePNG(image.pixels, height: 32, width: 32, channels: 3)
        let jpeg = encodeJPEG(image.pixels, height: 32, width: 32, pixelFormat: TJPF_RGB)

        let cases: [(String, [UInt8])] = [
            ("truncated.png", Array(png.prefix(png.count / 2))),
            ("header-only.png", Array(png.prefix(20))),
            ("truncated.jpg", Array(jpeg.prefix(jpeg.count / 2))),
            ("header-only.jpg", Array(jpeg.prefix(4))),
            ("text.png", Array("this is not an image\n".utf8)),
            ("empty.jpg", []),
        ]
        for (name, bytes) in cases {
            let path = try folder.write(name, bytes)
            do {
                _ = try ImageDecoder.decode(file: path)
                Issue.record("\(name): decoded without error")
            } catch {
                guard case .brokenImage(let file, let detail) = error else {
                    Issue.record("\(name): unexpected \(error)")
                    continue
                }
                #expect(file == path)
                #expect("\(error)".hasPrefix(path))
                print("\(name): \(detail)")
            }
        }
        let missing = folder.file("missing.png")
        #expect(throws: DatasetError.cannotOpen(file: missing, reason: "No such file or directory")) {
            _ = try ImageDecoder.decode(file: missing)
        }
    }

    @Test func imageFolderTree() throws {
        let folder = try TemporaryFolder()
        let image = testImage(height: 4, width: 5)
        let png = encodePNG(image.pixels, height: 4, width: 5, channels: 3)
        let jpeg = encodeJPEG(image.pixels, height: 4, width: 5, pixelFormat: TJPF_RGB)
        try folder.write("train/dog/b.png", png)
        try folder.write("train/dog/a.JPG", jpeg)
        try folder.write("train/dog/notes.txt", "not an image")
        try folder.write("train/dog/.hidden.png", png)
        try folder.write("train/cat/x.jpeg", jpeg)
        try folder.write("train/cat/nested/y.png", png)
        try folder.write("val/dog/c.png", png)
        try folder.write("README", "ignored")

        let source = try ImageFolderSource(directory: folder.path)
        #expect(source.labels.names == ["cat", "dog"])
        #expect(source.splits == [.train, .validation])
        let items = try source.items(.train)
        #expect(items.map(\.label) == ["cat", "cat", "dog", "dog"])
        #expect(items.map(\.labelID) == [0, 0, 1, 1])
        #expect(items.map { ($0.path as NSString).lastPathComponent } == ["y.png", "x.jpeg", "a.JPG", "b.png"])
        #expect(items.map(\.index) == [0, 1, 2, 3])
        #expect(try items[3].load() == image)
        #expect(try source.items(.validation).map(\.labelID) == [1])
        // What is left out is listed (the hidden file and the README outside the classes are not).
        #expect(try source.listing(.train).skipped == [folder.file("train/dog/notes.txt")])
        #expect(try source.listing(.validation).skipped.isEmpty)

        // A class folder that is a link is walked where it leads, as torchvision follows links.
        try folder.write("elsewhere/owl/o.png", png)
        try FileManager.default.createSymbolicLink(atPath: folder.file("val/owl"), withDestinationPath: folder.file("elsewhere/owl"))
        try folder.write("train/owl/o.png", png)
        let linked = try ImageFolderSource(directory: folder.path)
        #expect(try linked.items(.validation).map { ($0.path as NSString).lastPathComponent } == ["c.png", "o.png"])
        try FileManager.default.removeItem(atPath: folder.file("val/owl"))
        try FileManager.default.removeItem(atPath: folder.file("train/owl"))

        // A class folder unknown to train/ in val/.
        try folder.write("val/bird/d.png", png)
        expectError(.unknownClass(directory: folder.file("val/bird"), className: "bird", known: ["cat", "dog"]),
                    mentions: "val/bird") {
            _ = try source.items(.validation)
        }
        // A train class without images.
        try folder.makeFolder("train/emu")
        let withEmpty = try ImageFolderSource(directory: folder.path)
        expectError(.emptyClass(directory: folder.file("train/emu")), mentions: "train/emu") {
            _ = try withEmpty.items(.train)
        }
    }

    @Test func imageFolderWithoutTrain() throws {
        let folder = try TemporaryFolder()
        try folder.makeFolder("val/cat")
        expectError(.missingTrainSplit(directory: folder.path, lookedFor: ["train/"]), mentions: folder.path) {
            _ = try ImageFolderSource(directory: folder.path)
        }
        try folder.makeFolder("train")
        expectError(.emptySplit(file: folder.file("train")), mentions: "train") {
            _ = try ImageFolderSource(directory: folder.path)
        }
    }
}

private func * (pattern: [UInt8], count: Int) -> [UInt8] {
    Array([[UInt8]](repeating: pattern, count: count).joined())
}

/// A PNG chunk: length, type, data and CRC-32.
func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let body = Array(type.utf8) + data
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in body {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    crc ^= 0xFFFF_FFFF
    let be = { (v: UInt32) in [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    return be(UInt32(data.count)) + body + be(crc)
}
