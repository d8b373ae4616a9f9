// `sidecar-fuzz write-seeds DIR`: the seed corpora, one folder per target, made by the real
// writers (SafeTensorsWriter, RecordEncoder, libpng, TurboJPEG, zlib) so every seed is valid
// input and the fuzzer starts from the parsers' success paths. Kept small: libFuzzer mutates them.

import ActivationStore
import CPNG
import CTurboJPEG
import CZlib
import Foundation
import SafeTensors
import TensorCore

func writeSeeds(to directory: String) throws {
    var seeds: [String: [(String, [UInt8])]] = [:]

    let small = Tensor(shape: [2, 3], scalars: [1, -2, 0.5, 3, 1e-3, -0])
    for storage in [SafeTensorsWriter.StorageType.f32, .f16, .bf16] {
        seeds["safetensors", default: []].append((
            "two-tensors-\(storage.rawValue)",
            try SafeTensorsWriter.serialize([("w", small), ("b", Tensor(shape: [3], scalars: [0, 1, 2]))],
                                            metadata: ["format": "pt"], storage: storage)))
    }
    seeds["safetensors", default: []].append(("empty-tensor", try SafeTensorsWriter.serialize([("e", Tensor(shape: [0, 4], scalars: []))])))

    seeds["tokenizer"] = [
        ("plain", [0x0B, 100, 125] + Array("Hello, world! unaffable abcbc".utf8)),
        ("pair", [0x2F, 100, 5] + Array("Ünaffable café\u{0}中文 text's [SEP] x-x".utf8)),
        ("vocabulary", [0x1F, 8, 20] + Array("[PAD]\n[UNK]\r\n[CLS]\r[SEP]\n[MASK]\nab\n##c\n\u{0}abc abcc\u{0}ab".utf8)),
        ("controls", [0x09, 2, 0] + [0x61, 0x00, 0x62, 0xC3, 0x28, 0x09, 0xE2, 0x80, 0x8B, 0x0D, 0x7F]),
    ]

    seeds["text"] = [
        ("jsonl", Array("{\"text\": \"first\", \"label\": \"a\"}\n{\"text\": \"second \\u00e9\", \"text_pair\": \"p\", \"label\": 2}\n".utf8)),
        ("csv", Array("text,label,text_pair\n\"quoted, with comma\",a,\n\"line\nbreak \"\"q\"\"\",b,pair\r\n".utf8)),
        ("tsv", Array("\u{FEFF}label\ttext\nx\tone\ny\ttwo\n".utf8)),
    ]

    seeds["idx"] = [
        ("images", [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3] + (0..<12).map { UInt8($0 * 20) }),
        ("labels", [0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 2, 1]),
        ("labels-gzip", gzip([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])),
    ]

    let pixels = (0..<(6 * 5 * 4)).map { UInt8(($0 * 37) & 0xFF) }
    seeds["image"] = [
        ("grey.png", encodePNG(pixels, height: 6, width: 5, channels: 1)),
        ("grey-alpha.png", encodePNG(pixels, height: 6, width: 5, channels: 2)),
        ("rgb.png", encodePNG(pixels, height: 6, width: 5, channels: 3)),
        ("rgba.png", encodePNG(pixels, height: 6, width: 5, channels: 4)),
        ("rgb.jpg", encodeJPEG(Array(pixels.prefix(6 * 5 * 3)), height: 6, width: 5, format: TJPF_RGB, subsampling: TJSAMP_420)),
        ("grey.jpg", encodeJPEG(Array(pixels.prefix(6 * 5)), height: 6, width: 5, format: TJPF_GRAY, subsampling: TJSAMP_GRAY)),
        ("cmyk.jpg", encodeJPEG(pixels, height: 6, width: 5, format: TJPF_CMYK, subsampling: TJSAMP_444)),
    ]

    let values = (0..<12).map { Float($0) * 0.25 - 1 }
    for storage in StorageType.allCases {
        for shuffle in [false, true] where storage == .f32 || shuffle {
            let encoder = RecordEncoder(storage: storage, shuffle: shuffle, int8Scales: [0: [0.5, 0.5, 0.5, 0.5], 1: [1, 1, 1, 1]])
            var record = try values.withUnsafeBufferPointer { first in
                try values.reversed().withUnsafeBufferPointer { second in
                    try encoder.encode(key: recordKey, label: 3, rows: 3, width: 4, blocks: [
                        .init(layer: 0, values: first), .init(layer: 1, stream: Stream.allCases.last!, values: second),
                    ])
                }
            }
            // The target recomputes checksums for inputs that end in an even byte.
            record.append(0)
            seeds["record", default: []].append(("\(storage.rawValue)\(shuffle ? "-shuffled" : "")", record))
            if storage == .f32 && !shuffle {
                // The format before records were bound to their keys, still read.
                record.replaceSubrange(0..<4, with: Array("SCR1".utf8))
                seeds["record", default: []].append(("f32-scr1", record))
            }
        }
    }

    for (target, files) in seeds {
        let folder = directory + "/" + target
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (name, bytes) in files {
            try Data(bytes).write(to: URL(fileURLWithPath: folder + "/" + name))
        }
        print("\(folder): \(files.count) seeds")
    }
}

func gzip(_ bytes: [UInt8]) -> [UInt8] {
    let path = scratchFile + ".gz"
    defer { unlink(path) }
    let file = gzopen(path, "wb")!
    _ = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
    gzclose(file)
    return Array(FileManager.default.contents(atPath: path)!)
}

/// Interleaved 8-bit pixels (`channels` 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as PNG.
func encodePNG(_ pixels: [UInt8], height: Int, width: Int, channels: Int) -> [UInt8] {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    image.width = UInt32(width)
    image.height = UInt32(height)
    image.format = (channels >= 3 ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0) | (channels % 2 == 0 ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
    var size: png_alloc_size_t = 0
    precondition(pixels.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil) } != 0)
    var encoded = [UInt8](repeating: 0, count: Int(size))
    let written = encoded.withUnsafeMutableBytes { target in
        pixels.withUnsafeBytes { png_image_write_to_memory(&image, target.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
    }
    precondition(written != 0, "png_image_write_to_memory failed")
    return Array(encoded.prefix(Int(size)))
}

/// Interleaved pixels of `format` as JPEG.
func encodeJPEG(_ pixels: [UInt8], height: Int, width: Int, format: TJPF, subsampling: TJSAMP) -> [UInt8] {
    let handle = tjInitCompress()!
    defer { tjDestroy(handle) }
    var buffer: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let status = pixels.withUnsafeBufferPointer {
        tjCompress2(handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(format.rawValue), &buffer, &size,
                    Int32(subsampling.rawValue), 90, 0)
    }
    precondition(status == 0, "tjCompress2: \(String(cString: tjGetErrorStr2(handle)))")
    defer { tjFree(buffer) }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
}
