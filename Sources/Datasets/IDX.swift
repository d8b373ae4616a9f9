// IDX files (LeCun's MNIST format, also Fashion-MNIST's), plain or gzip-compressed, read through
// zlib's gzread, which passes plain files through unchanged. Only unsigned-byte data, the one type
// image and label files use. Deliberately strict: the header must describe the file exactly.

import CZlib
import Foundation

/// The content of an IDX file: its dimensions and its bytes in row-major order.
public struct IDXArray: Sendable, Equatable {
    public let dimensions: [Int]
    public let bytes: [UInt8]
}

/// Reads IDX files.
public enum IDXReader {
    /// The type code of unsigned bytes, the third byte of the magic number.
    static let unsignedByteType: UInt8 = 0x08
    /// A header claiming more data than this is refused rather than believed.
    static let maximumByteCount = 1 << 36

    /// Reads an IDX file of `rank` dimensions (3 for images, 1 for labels), gzip-compressed or not.
    ///
    /// Layout, all integers big-endian: the magic `00 00 08 rank`, then `rank` 32-bit extents,
    /// then the product of the extents in bytes.
    public static func read(path: String, rank: Int) throws(DatasetError) -> IDXArray {
        guard let file = gzopen(path, "rb") else {
            throw .cannotOpen(file: path, reason: String(cString: strerror(errno)))
        }
        defer { gzclose(file) }
        gzbuffer(file, 1 << 17)

        let magic = try readBytes(file, count: 4, path: path)
        guard magic.count == 4, magic[0] == 0, magic[1] == 0 else {
            throw .invalidIDX(file: path, detail: "wrong magic \(hex(magic)), expected 00 00 08 0\(rank)")
        }
        guard magic[2] == unsignedByteType else {
            throw .invalidIDX(file: path, detail: "data type 0x\(hex([magic[2]])) is not supported (only 0x08, unsigned bytes)")
        }
        guard Int(magic[3]) == rank else {
            throw .invalidIDX(file: path, detail: "\(magic[3]) dimensions, expected \(rank)")
        }
        let header = try readBytes(file, count: 4 * rank, path: path)
        guard header.count == 4 * rank else {
            throw .invalidIDX(file: path, detail: "the header ends after \(4 + header.count) bytes, expected \(4 + 4 * rank)")
        }
        let dimensions = (0..<rank).map { axis in
            header[(4 * axis)..<(4 * axis + 4)].reduce(0) { $0 << 8 | Int($1) }
        }
        let expected = dimensions.reduce(1) { product, extent in
            let (bytes, overflow) = product.multipliedReportingOverflow(by: extent)
            return overflow ? maximumByteCount + 1 : min(bytes, maximumByteCount + 1)
        }
        guard expected <= maximumByteCount else {
            throw .invalidIDX(file: path, detail: "dimensions \(dimensions) describe more than \(maximumByteCount) bytes")
        }
        let bytes = try readBytes(file, count: expected, path: path)
        guard bytes.count == expected else {
            throw .invalidIDX(
                file: path,
                detail: "dimensions \(dimensions) need \(expected) bytes of data, the file holds \(bytes.count)")
        }
        guard try readBytes(file, count: 1, path: path).isEmpty else {
            throw .invalidIDX(file: path, detail: "data continues past the \(expected) bytes its dimensions \(dimensions) describe")
        }
        return IDXArray(dimensions: dimensions, bytes: bytes)
    }

    /// Up to `count` bytes; fewer only at the end of the data. Memory grows with what arrives, so
    /// a header that lies about its size cannot trigger a huge allocation.
    private static func readBytes(_ file: gzFile, count: Int, path: String) throws(DatasetError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(count, 1 << 24))
        var chunk = [UInt8](repeating: 0, count: min(count, 1 << 24))
        while bytes.count < count {
            let wanted = min(chunk.count, count - bytes.count)
            let got = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32(wanted)) }
            if got < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown zlib error"
                throw .readFailed(file: path, reason: "gzip: \(message)")
            }
            bytes.append(contentsOf: chunk[0..<Int(got)])
            if got == 0 {
                break
            }
        }
        return bytes
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: " ")
    }
}

/// Grey images of one size, [count, height, width], as MNIST stores them.
public struct GreyImages: Sendable, Equatable {
    public let count: Int
    public let height: Int
    public let width: Int
    public let pixels: [UInt8]

    public init(count: Int, height: Int, width: Int, pixels: [UInt8]) {
        precondition(pixels.count == count * height * width, "grey images [\(count), \(height), \(width)] need \(count * height * width) bytes, got \(pixels.count)")
        self.count = count
        self.height = height
        self.width = width
        self.pixels = pixels
    }

    /// Image `index`, its grey value copied to three channels.
    public func rgbImage(at index: Int) -> RGBImage {
        precondition(index >= 0 && index < count, "image \(index) outside 0..<\(count)")
        let size = height * width
        return RGBImage(grey: pixels[(index * size)..<((index + 1) * size)], height: height, width: width)
    }
}

/// One split of an IDX dataset: its images and each image's label id.
public struct IDXSplit: Sendable, Equatable {
    public let images: GreyImages
    /// `labelIDs[i]` is image i's id in the dataset's `LabelMap`.
    public let labelIDs: [Int]
}

/// A folder of IDX file pairs, `{split}-images-idx3-ubyte[.gz]` and `{split}-labels-idx1-ubyte[.gz]`
/// for split train, val, test (MNIST's own `t10k` is accepted for test), and optionally
/// `classes.txt`, one class name per line, line i naming label value i.
public struct IDXDatasetSource: Sendable, Equatable {
    public let directory: String
    /// The splits whose two files exist, train first.
    public let splits: [Split]
    /// With classes.txt, its names, and label value v has id v. Without, the distinct label
    /// values of the train split in numeric order, named by their decimal digits.
    public let labels: LabelMap
    /// Whether `labels` came from classes.txt (then ids equal label values).
    public let namedByClassesFile: Bool

    public init(directory: String) throws(DatasetError) {
        self.directory = directory
        var splits: [Split] = []
        for split in Split.allCases where Self.files(directory, split) != nil {
            splits.append(split)
        }
        guard splits.first == .train else {
            // One file of the pair alone had been reported as no train split at all.
            let images = Self.existing(directory, "train-images-idx3-ubyte"), labels = Self.existing(directory, "train-labels-idx1-ubyte")
            if let images, labels == nil {
                throw .cannotOpen(file: TextDatasetSource.join(directory, "train-labels-idx1-ubyte[.gz]"),
                                  reason: "no such file, and the images file \((images as NSString).lastPathComponent) needs it")
            }
            if let labels, images == nil {
                throw .cannotOpen(file: TextDatasetSource.join(directory, "train-images-idx3-ubyte[.gz]"),
                                  reason: "no such file, and the labels file \((labels as NSString).lastPathComponent) needs it")
            }
            throw .missingTrainSplit(
                directory: directory,
                lookedFor: ["train-images-idx3-ubyte[.gz]", "train-labels-idx1-ubyte[.gz]"])
        }
        self.splits = splits
        let classesFile = TextDatasetSource.join(directory, "classes.txt")
        if FileManager.default.fileExists(atPath: classesFile) {
            labels = try Self.readClassNames(classesFile)
            namedByClassesFile = true
        } else {
            let (_, labelsPath) = Self.files(directory, .train)!
            let values = try IDXReader.read(path: labelsPath, rank: 1).bytes
            labels = LabelMap(names: Set(values).sorted().map { String($0) })
            namedByClassesFile = false
        }
    }

    /// The images and labels files of a split, or nil when either is missing.
    public func files(of split: Split) -> (images: String, labels: String)? {
        Self.files(directory, split)
    }

    /// Reads a split: the two files must agree on the count, and every label must have an id.
    public func load(_ split: Split) throws(DatasetError) -> IDXSplit {
        guard let (imagesPath, labelsPath) = files(of: split) else {
            throw .cannotOpen(file: TextDatasetSource.join(directory, "\(split.fileStem)-images-idx3-ubyte"), reason: "no such split")
        }
        let images = try IDXReader.read(path: imagesPath, rank: 3)
        let labelValues = try IDXReader.read(path: labelsPath, rank: 1).bytes
        let count = images.dimensions[0]
        guard labelValues.count == count else {
            throw .mismatchedIDX(
                imagesFile: imagesPath, labelsFile: labelsPath,
                detail: "\(count) images but \(labelValues.count) labels")
        }
        guard count > 0 else {
            throw .emptySplit(file: imagesPath)
        }
        // A zero extent makes the data empty whatever the others claim, so the reader accepts it.
        guard images.dimensions[1] > 0, images.dimensions[2] > 0 else {
            throw .invalidIDX(
                file: imagesPath,
                detail: "images of \(images.dimensions[1])×\(images.dimensions[2]) pixels: an image needs at least one")
        }
        var labelIDs: [Int] = []
        labelIDs.reserveCapacity(count)
        for (index, value) in labelValues.enumerated() {
            let id = namedByClassesFile ? (Int(value) < labels.count ? Int(value) : nil) : labels.id(of: String(value))
            guard let id else {
                throw .invalidIDX(
                    file: labelsPath,
                    detail: "label \(value) of item \(index) has no class (\(labels.count) known: \(labels.names.joined(separator: ", ")))")
            }
            labelIDs.append(id)
        }
        let greyImages = GreyImages(
            count: count, height: images.dimensions[1], width: images.dimensions[2], pixels: images.bytes)
        return IDXSplit(images: greyImages, labelIDs: labelIDs)
    }

    /// `name` or `name.gz` in `directory`, whichever exists.
    private static func existing(_ directory: String, _ name: String) -> String? {
        ["", ".gz"].map { TextDatasetSource.join(directory, name + $0) }.first { FileManager.default.fileExists(atPath: $0) }
    }

    private static func files(_ directory: String, _ split: Split) -> (images: String, labels: String)? {
        let prefixes = split == .test ? ["test", "t10k"] : [split.fileStem]
        // Each file compressed or not on its own: one of the pair gunzipped is still the pair.
        for prefix in prefixes {
            if let images = existing(directory, "\(prefix)-images-idx3-ubyte"), let labels = existing(directory, "\(prefix)-labels-idx1-ubyte") {
                return (images, labels)
            }
        }
        return nil
    }

    /// One name per line, line i naming label value i; blank lines may only trail.
    private static func readClassNames(_ path: String) throws(DatasetError) -> LabelMap {
        let lines = try LineReader(path: path)
        var names: [String] = []
        var firstBlankLine: Int?
        while let bytes = try lines.nextLine() {
            guard let line = String(validating: bytes, as: UTF8.self) else {
                throw .invalidUTF8(file: path, line: lines.lineNumber)
            }
            let name = line.trimmingCharacters(in: .whitespaces)
            if name.isEmpty {
                firstBlankLine = firstBlankLine ?? lines.lineNumber
                continue
            }
            if let blank = firstBlankLine {
                throw .invalidIDX(file: path, detail: "line \(blank) is blank, which would shift every later class's label value")
            }
            // By bytes, as the label map tells names apart.
            guard !names.contains(where: { $0.utf8.elementsEqual(name.utf8) }) else {
                throw .invalidIDX(file: path, detail: "line \(lines.lineNumber): class \"\(name)\" listed twice")
            }
            names.append(name)
        }
        guard !names.isEmpty else {
            throw .emptySplit(file: path)
        }
        return LabelMap(names: names)
    }
}
