// IDX files written plain and gzip-compressed, in MNIST's naming, read back; and each fault the
// header can have (wrong magic, wrong type, wrong rank, too few or too many bytes).

import Datasets
import Foundation
import Testing

@Suite struct IDXTests {
    /// Writes a split's two files; returns the images' pixels.
    @discardableResult
    func writeSplit(_ folder: TemporaryFolder, prefix: String, labels: [UInt8], gzip: Bool) throws -> [UInt8] {
        let pixels = (0..<(labels.count * 4 * 3)).map { UInt8(($0 * 7 + labels.count) % 256) }
        let images = idxBytes(dimensions: [labels.count, 4, 3], data: pixels)
        let labelBytes = idxBytes(dimensions: [labels.count], data: labels)
        if gzip {
            writeGzip(folder.file("\(prefix)-images-idx3-ubyte.gz"), images)
            writeGzip(folder.file("\(prefix)-labels-idx1-ubyte.gz"), labelBytes)
        } else {
            try folder.write("\(prefix)-images-idx3-ubyte", images)
            try folder.write("\(prefix)-labels-idx1-ubyte", labelBytes)
        }
        return pixels
    }

    @Test func readsPlainAndGzipSplits() throws {
        let folder = try TemporaryFolder()
        let trainPixels = try writeSplit(folder, prefix: "train", labels: [3, 0, 7, 3, 0], gzip: true)
        try writeSplit(folder, prefix: "t10k", labels: [7, 7], gzip: false)
        let source = try IDXDatasetSource(directory: folder.path)
        #expect(source.splits == [.train, .test])
        #expect(source.labels.names == ["0", "3", "7"])
        #expect(!source.namedByClassesFile)
        let train = try source.load(.train)
        #expect(train.images.count == 5 && train.images.height == 4 && train.images.width == 3)
        #expect(train.images.pixels == trainPixels)
        #expect(train.labelIDs == [1, 0, 2, 1, 0])
        let second = train.images.rgbImage(at: 1)
        #expect(second[0, 0, 0] == trainPixels[12] && second[0, 0, 2] == trainPixels[12])
        #expect(try source.load(.test).labelIDs == [2, 2])

        // One file of a pair gunzipped, the other not: still the pair.
        let gunzipped = folder.file("train-images-idx3-ubyte")
        try Data(idxBytes(dimensions: [5, 4, 3], data: trainPixels)).write(to: URL(fileURLWithPath: gunzipped))
        try FileManager.default.removeItem(atPath: gunzipped + ".gz")
        #expect(try IDXDatasetSource(directory: folder.path).load(.train).images.pixels == trainPixels)
    }

    @Test func classesFileNamesLabelValues() throws {
        let folder = try TemporaryFolder()
        try writeSplit(folder, prefix: "train", labels: [0, 2, 1], gzip: false)
        try writeSplit(folder, prefix: "val", labels: [2, 3], gzip: true)
        try folder.write("classes.txt", "T-shirt/top\nTrouser\nPullover\n\n")
        let source = try IDXDatasetSource(directory: folder.path)
        #expect(source.labels.names == ["T-shirt/top", "Trouser", "Pullover"])
        #expect(try source.load(.train).labelIDs == [0, 2, 1])
        let labelsPath = folder.file("val-labels-idx1-ubyte.gz")
        do {
            _ = try source.load(.validation)
            Issue.record("label 3 accepted")
        } catch {
            guard case .invalidIDX(let file, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(file == labelsPath)
            #expect("\(error)".contains("label 3 of item 1"))
        }
        // Names told apart by their bytes, as labels are: café composed and decomposed are two
        // classes (String's equality had called the second a repeat of the first).
        try folder.write("classes.txt", "caf\u{E9}\ncafe\u{301}\nx\n")
        #expect(try IDXDatasetSource(directory: folder.path).labels.count == 3)
    }

    @Test func headerFaultsNameTheFile() throws {
        let folder = try TemporaryFolder()
        let data = [UInt8](repeating: 9, count: 2 * 2 * 2)
        let cases: [(String, [UInt8], String)] = [
            ("magic", [1, 0, 8, 3] + idxBytes(dimensions: [2, 2, 2], data: data).dropFirst(4), "wrong magic 01 00 08 03"),
            ("type", idxBytes(dimensions: [2, 2, 2], data: data, typeCode: 0x0D), "data type 0x0d is not supported"),
            ("rank", idxBytes(dimensions: [8], data: data), "1 dimensions, expected 3"),
            ("short", Array(idxBytes(dimensions: [2, 2, 2], data: data).dropLast(3)), "need 8 bytes of data, the file holds 5"),
            ("long", idxBytes(dimensions: [2, 2, 2], data: data + [1]), "data continues past the 8 bytes"),
            ("header", [0, 0, 8, 3, 0, 0], "the header ends after 6 bytes"),
            ("huge", idxBytes(dimensions: [1 << 30, 1 << 20, 255], data: data), "describe more than"),
            ("overflow", idxBytes(dimensions: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], data: data), "describe more than"),
        ]
        for (name, bytes, fragment) in cases {
            for gzip in [false, true] {
                let path = folder.file("\(name)\(gzip ? ".gz" : "")")
                if gzip {
                    writeGzip(path, bytes)
                } else {
                    try folder.write(name, bytes)
                }
                do {
                    _ = try IDXReader.read(path: path, rank: 3)
                    Issue.record("\(name): accepted")
                } catch {
                    guard case .invalidIDX(let file, _) = error else {
                        Issue.record("\(name): unexpected \(error)")
                        continue
                    }
                    #expect(file == path)
                    #expect("\(error)".hasPrefix("\(path): invalid IDX file: "), "\(error)")
                    #expect("\(error)".contains(fragment), "\(error)")
                }
            }
        }
    }

    @Test func damagedGzipAndMismatchedCounts() throws {
        let folder = try TemporaryFolder()
        let path = folder.file("damaged.gz")
        writeGzip(path, idxBytes(dimensions: [100, 4, 4], data: [UInt8](repeating: 3, count: 1600)))
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        bytes = Array(bytes.prefix(bytes.count / 2))
        try folder.write("damaged.gz", bytes)
        #expect(throws: DatasetError.self) { _ = try IDXReader.read(path: path, rank: 3) }

        try folder.write("train-images-idx3-ubyte", idxBytes(dimensions: [3, 1, 1], data: [1, 2, 3]))
        try folder.write("train-labels-idx1-ubyte", idxBytes(dimensions: [2], data: [0, 1]))
        let source = try IDXDatasetSource(directory: folder.path)
        expectError(.mismatchedIDX(imagesFile: folder.file("train-images-idx3-ubyte"),
                                   labelsFile: folder.file("train-labels-idx1-ubyte"),
                                   detail: "3 images but 2 labels"), mentions: "train-labels-idx1-ubyte") {
            _ = try source.load(.train)
        }
    }

    /// From `sidecar-fuzz idx`: a header whose extents overflow before a zero one describes an
    /// empty array, which the reader rightly accepts; a split of such images (2 of 4294967295×0
    /// pixels here) must be refused by name, not handed on as images without pixels.
    @Test func imagesWithoutPixelsAreRefused() throws {
        let folder = try TemporaryFolder()
        let fuzzed: [UInt8] = [0x00, 0x00, 0x08, 0x03, 0xC6, 0xC2, 0xAB, 0xAB, 0xFD, 0x17, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
        try folder.write("fuzzed", fuzzed)
        let array = try IDXReader.read(path: folder.file("fuzzed"), rank: 3)
        #expect(array.dimensions == [0xC6C2ABAB, 0xFD170000, 0] && array.bytes.isEmpty)

        try folder.write("train-images-idx3-ubyte", idxBytes(dimensions: [2, 0xFFFF_FFFF, 0], data: []))
        try folder.write("train-labels-idx1-ubyte", idxBytes(dimensions: [2], data: [0, 1]))
        let source = try IDXDatasetSource(directory: folder.path)
        expectError(.invalidIDX(file: folder.file("train-images-idx3-ubyte"),
                                detail: "images of 4294967295×0 pixels: an image needs at least one"),
                    mentions: "train-images-idx3-ubyte") {
            _ = try source.load(.train)
        }
    }

    @Test func missingTrainSplit() throws {
        let folder = try TemporaryFolder()
        try writeSplit(folder, prefix: "t10k", labels: [1], gzip: true)
        expectError(.missingTrainSplit(directory: folder.path,
                                       lookedFor: ["train-images-idx3-ubyte[.gz]", "train-labels-idx1-ubyte[.gz]"]),
                    mentions: folder.path) {
            _ = try IDXDatasetSource(directory: folder.path)
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")))
    func debianFashionMNIST() throws {
        let source = try IDXDatasetSource(directory: "/usr/share/datasets/fashion-mnist")
        #expect(source.splits == [.train, .test])
        let test = try source.load(.test)
        #expect(test.images.count == 10_000 && test.images.height == 28 && test.images.width == 28)
        #expect(Set(test.labelIDs) == Set(0..<10))
    }
}

extension IDXTests {
    @Test func classesFileWithABlankLineInTheMiddle() throws {
        let folder = try TemporaryFolder()
        try writeSplit(folder, prefix: "train", labels: [0, 1], gzip: false)
        let classes = try folder.write("classes.txt", "zero\n\none\n")
        expectError(.invalidIDX(file: classes, detail: "line 2 is blank, which would shift every later class's label value"),
                    mentions: "classes.txt") {
            _ = try IDXDatasetSource(directory: folder.path)
        }
    }
}
