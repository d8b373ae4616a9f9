// The datasets/ recipes' outputs, read with this target's readers. Each test runs only where the
// recipe has been run (data/ is git-ignored), so a fresh checkout skips them.

import Datasets
import Foundation
import Testing

private let datasetsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../datasets").standardized.path

@Suite struct RecipeTests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: datasetsFolder + "/debian-sections/data/train.jsonl")))
    func debianSections() throws {
        let source = try TextDatasetSource(directory: datasetsFolder + "/debian-sections/data")
        #expect(source.splits == [.train, .validation, .test])
        let labels = try source.labelMap()
        #expect(labels.count == 10)
        var counts: [Split: Int] = [:]
        for split in source.splits {
            let reader = try source.reader(for: split, labels: labels)
            while let example = try reader.next() {
                #expect(!example.text.isEmpty)
            }
            counts[split] = reader.count
        }
        let total = counts.values.reduce(0, +)
        print("debian-sections: \(labels.names), counts \(counts)")
        #expect(counts[.train]! == total * 8 / 10)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: datasetsFolder + "/fashion-mnist/data/classes.txt")))
    func fashionMNIST() throws {
        let source = try IDXDatasetSource(directory: datasetsFolder + "/fashion-mnist/data")
        #expect(source.splits == [.train, .validation, .test])
        #expect(source.namedByClassesFile && source.labels.names.first == "T-shirt/top")
        let validation = try source.load(.validation)
        #expect(validation.images.count == 6000 && validation.images.height == 28)
        #expect(Set(validation.labelIDs) == Set(0..<10))
        #expect(try source.load(.train).images.count == 54_000)
    }
}
