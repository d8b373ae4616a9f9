// A fit never trains on a damaged record: without skipping, the first one a batch reaches stops
// the fit naming its key; with `skipCorrupt`, every damaged record is found before training, left
// out of training and evaluation, and counted in the result.
import ActivationStore
import Foundation
import Testing
import Training


@Suite struct CorruptRecordTests {
    static func options(skip: Bool, inMemory: Bool = false) -> TrainingOptions {
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 16
        options.skipCorrupt = skip
        options.inMemory = inMemory
        return options
    }

    @Test func aDamagedRecordStopsTheFitNamingIt() throws {
        let path = SyntheticCache.temporaryPath("damaged-fit")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        // The last byte of the record: the last layer's block, the one a linear probe reads.
        try damageStoredRecord(path, split: "train", index: 17) { $0 - 1 }
        let trainer = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear")], options: Self.options(skip: false))
        #expect { try trainer.run() } throws: { "\($0)" == "record train:17 is damaged: checksum mismatch in layer 2" }
        // A damaged header stops it before any training, as soon as the labels are read or a batch is built.
        try damageStoredRecord(path, split: "val", index: 4) { _ in 5 }
        #expect { try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear")], options: Self.options(skip: false)).run() }
            throws: { "\($0)".contains("is damaged") }
    }

    @Test(arguments: [false, true])
    func skipCorruptLeavesOutAndCountsEveryDamagedRecord(inMemory: Bool) throws {
        let path = SyntheticCache.temporaryPath("skip-corrupt")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        try damageStoredRecord(path, split: "train", index: 0) { _ in 5 }
        try damageStoredRecord(path, split: "train", index: 17) { $0 - 1 }
        try damageStoredRecord(path, split: "train", index: 119) { $0 / 2 }
        try damageStoredRecord(path, split: "val", index: 9) { $0 - 1 }
        try damageStoredRecord(path, split: "test", index: 39) { _ in 2 }
        let trainer = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear"), HeadRequest(head: "mlp")],
                                  options: Self.options(skip: true, inMemory: inMemory))
        #expect(trainer.skippedRecords.map(\.key) == ["train:0", "train:17", "train:119", "val:9", "test:39"])
        #expect(trainer.skippedRecords[0].description == "record train:0 is damaged: header checksum mismatch")
        let results = try trainer.run()
        for result in results {
            #expect(result.skippedCorrupt == 5)
            // Evaluation saw exactly the intact records.
            #expect(result.val?.examples == 39 && result.test?.examples == 39)
            #expect(result.val.map { $0.confusion.joined().reduce(0, +) } == 39)
        }
        let line = try FitOutput.jsonLine(results[0])
        #expect(line.contains("\"skipped_corrupt\":5"))
    }

    @Test func skippingAnIntactCacheChangesNothing() throws {
        let path = SyntheticCache.temporaryPath("skip-intact")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let plain = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear")], options: Self.options(skip: false)).run()[0]
        let skipping = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear")], options: Self.options(skip: true))
        #expect(skipping.skippedRecords.isEmpty)
        let result = try skipping.run()[0]
        #expect(result.skippedCorrupt == 0 && plain.skippedCorrupt == nil)
        #expect(result.test == plain.test && result.val == plain.val)
        #expect(!(try FitOutput.jsonLine(plain)).contains("skipped_corrupt"))
    }
}
