// ImageFolder trees: train/CLASS/*.png|jpg|jpeg, and the same under val/ and test/, classes named by
// their folders (torchvision's layout). Listing is eager and cheap; decoding is per item, on demand.
// Deliberately no caching of decoded pixels: the extractor decodes each image once.

import Foundation
import TensorCore

/// One image file of an ImageFolder split.
public struct ImageItem: Sendable, Equatable {
    /// 0-based position in the split: classes in id order, files in code-point order within each.
    public var index: Int
    public var path: String
    /// The class folder's name.
    public var label: String
    public var labelID: Int

    /// Decodes the file to RGB (transparency onto white with `alphaOnWhite`).
    public func load(alphaOnWhite: Bool = false) throws(DatasetError) -> RGBImage {
        try ImageDecoder.decode(file: path, alphaOnWhite: alphaOnWhite)
    }
}

/// A folder with train/ (and optionally val/, test/), each holding one subfolder per class.
public struct ImageFolderSource: Sendable, Equatable {
    /// File extensions taken as images, compared without regard to case; other files are skipped.
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    public let directory: String
    /// The classes: train/'s subfolders in `LabelMap.sorted` order.
    public let labels: LabelMap
    /// The splits whose folders exist, train first.
    public let splits: [Split]

    public init(directory: String) throws(DatasetError) {
        let train = TextDatasetSource.join(directory, Split.train.fileStem)
        guard Self.isDirectory(train) else {
            throw .missingTrainSplit(directory: directory, lookedFor: ["train/"])
        }
        let classes = try Self.subfolders(of: train)
        guard !classes.isEmpty else {
            throw .emptySplit(file: train)
        }
        self.directory = directory
        self.labels = LabelMap(names: LabelMap.sorted(classes))
        self.splits = Split.allCases.filter { Self.isDirectory(TextDatasetSource.join(directory, $0.fileStem)) }
    }

    /// The folder of a split.
    public func path(of split: Split) -> String {
        TextDatasetSource.join(directory, split.fileStem)
    }

    /// The split's image files. A class folder unknown to train/, or a train class without
    /// images, is an error; so is a split without any image.
    public func items(_ split: Split) throws(DatasetError) -> [ImageItem] {
        try listing(split).items
    }

    /// The split's image files as `items` lists them, and the other files under its class folders
    /// (neither hidden nor an image by their extension: .webp, .bmp, .tif, …), which are not read,
    /// as paths, so that a caller can say they were left out. One walk of the folders for both.
    public func listing(_ split: Split) throws(DatasetError) -> (items: [ImageItem], skipped: [String]) {
        let root = path(of: split)
        let classes = try Self.subfolders(of: root)
        for name in classes where labels.id(of: name) == nil {
            throw .unknownClass(directory: TextDatasetSource.join(root, name), className: name, known: labels.names)
        }
        var items: [ImageItem] = []
        var skipped: [String] = []
        for (labelID, name) in labels.names.enumerated() where classes.contains(name) {
            let classFolder = TextDatasetSource.join(root, name)
            let all = try Self.visibleFiles(in: classFolder)
            let files = all.filter(Self.isImage)
            skipped += all.filter { !Self.isImage($0) }.map { TextDatasetSource.join(classFolder, $0) }
            if files.isEmpty && split == .train {
                throw .emptyClass(directory: classFolder)
            }
            for file in files {
                items.append(ImageItem(
                    index: items.count, path: TextDatasetSource.join(classFolder, file), label: name, labelID: labelID))
            }
        }
        guard !items.isEmpty else {
            throw .emptySplit(file: root)
        }
        return (items, skipped)
    }

    private static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Names of the visible subfolders of `path`, in code-point order.
    private static func subfolders(of path: String) throws(DatasetError) -> [String] {
        try contents(of: path).filter { !$0.hasPrefix(".") && isDirectory(TextDatasetSource.join(path, $0)) }
            .sorted(by: codePointOrder)
    }

    private static func codePointOrder(_ left: String, _ right: String) -> Bool {
        left.unicodeScalars.lexicographicallyPrecedes(right.unicodeScalars)
    }

    private static func isImage(_ relative: String) -> Bool {
        imageExtensions.contains((relative as NSString).pathExtension.lowercased())
    }

    /// Files anywhere below `folder` but hidden ones and those inside hidden folders (.git,
    /// .ipynb_checkpoints), as relative paths in code-point order.
    public static func visibleFiles(in folder: String) throws(DatasetError) -> [String] {
        let all: [String]
        do {
            // A folder that is a link is walked where it leads, as torchvision follows links: its
            // files had been left out, and the class reported empty.
            all = try FileManager.default.subpathsOfDirectory(atPath: URL(userPath: folder).resolvingSymlinksInPath().path)
        } catch {
            throw .cannotOpen(file: folder, reason: error.localizedDescription)
        }
        return all.filter { relative in
            !relative.split(separator: "/").contains { $0.hasPrefix(".") } && !isDirectory(TextDatasetSource.join(folder, relative))
        }.sorted(by: codePointOrder)
    }

    private static func contents(of path: String) throws(DatasetError) -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw .cannotOpen(file: path, reason: error.localizedDescription)
        }
    }
}
