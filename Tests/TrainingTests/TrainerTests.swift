// The trainer on real caches: it learns, writes a complete head folder, trains several heads in
// one pass exactly as it trains each alone, streams and in-memory agree, and it refuses caches it
// cannot use with the reason.
import ActivationStore
import Autodiff
import Dispatch
import Foundation
import SafeTensors
import SideNetworks
import TensorCore
import Testing
import Training

@Suite struct TrainerTests {
    func options(epochs: Int = 4, seed: UInt64 = 3) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = epochs
        o.batchSize = 16
        o.seed = seed
        o.patience = 0
        return o
    }

    @Test func linearProbeLearnsAndWritesItsFolder() throws {
        let path = SyntheticCache.temporaryPath("linear")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        let trainer = try Trainer(cache: cache, requests: [HeadRequest(head: "linear", settings: ["layers": "all"])], options: options(epochs: 8))
        var epochs = 0
        let result = try #require(try trainer.run { if case .epoch = $0 { epochs += 1 } }.first)
        #expect(epochs == 8 && result.history.count == 8)
        #expect(result.history.last!.trainLoss < result.history.first!.trainLoss)
        let test = try #require(result.test)
        #expect(test.accuracy > 0.9, "test accuracy \(test.accuracy)")
        #expect(test.confusion.flatMap { $0 }.reduce(0, +) == 40)
        #expect(result.trainableParameters == 3 * 16 * 3 + 3)

        let folder = path + "-head"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FitOutput.write(result, head: trainer.heads[0], options: options(), cache: cache, to: folder)
        let weights = try SafeTensorsFile(path: folder + "/head.safetensors")
        #expect(Set(weights.names) == ["classifier.weight", "classifier.bias"])
        #expect(try weights.tensor("classifier.weight").scalars == trainer.heads[0].parameters.tensor(trainer.heads[0].parameters.id(named: "classifier.weight")!).scalars)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as! [String: Any]
        #expect(config["head"] as? String == "linear")
        let recorded = try #require((config["hyperparameters"] as? [String: Any])?["values"] as? [String: Any])
        #expect(recorded["layers"] as? String == "all" && recorded["pool"] as? String == "auto")
        let log = try String(contentsOfFile: folder + "/log.tsv", encoding: .utf8).split(separator: "\n")
        #expect(log.count == 9 && log[0].hasPrefix("epoch\ttrain_loss"))
        let saved = try JSONDecoder().decode(FitResult.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/result.json")))
        #expect(saved.test == result.test && saved.cacheManifestHash == result.cacheManifestHash)

        // Read back, the head scores the test split exactly as the trainer did.
        let reloaded = try TrainedHead.load(folder).instantiate(context: try cache.describe().context)
        let evaluation = try Evaluation.run(reloaded, cache: cache, split: "test", batchSize: 7)
        #expect(evaluation.metrics.accuracy == test.accuracy && evaluation.metrics.confusion == test.confusion)
        #expect(abs(evaluation.metrics.loss - test.loss) < 1e-6)
        #expect(evaluation.perClass.map(\.support) == test.confusion.map { $0.reduce(0, +) })

        // Another dataset's cache of the same features is fine; other features are refused.
        let trained = try TrainedHead.load(folder)
        var other = cache.manifest.settings
        other.preprocessing["text_column"] = "body"
        other.storage = .int8
        try trained.checkCompatible(with: other, cachePath: "other")
        other.tokens = .cls
        other.preprocessing["max_length"] = "64"
        #expect(throws: HeadError("other holds other features than \(folder) was trained on: token policy cls, trained with all; "
                                  + "preprocessing max_length 64, trained with unset")) {
            try trained.checkCompatible(with: other, cachePath: "other")
        }

        // A config edited by hand into nonsense is refused before any head is built from it.
        var edited = trained.config
        edited.labels.removeLast()
        #expect(throws: HeadError("edited: the config's labels differ from those of the cache it was trained on (2 labels, 3 in extraction.labels)")) {
            try TrainedHead(source: "edited", config: edited, tensors: trained.tensors, exported: false).extraction()
        }
        edited = trained.config
        edited.labels.swapAt(0, 1)
        #expect(throws: HeadError("edited: the config's labels differ from those of the cache it was trained on "
                                  + "(label 1 is \"\(edited.labels[0])\" in labels, \"\(edited.labels[1])\" in extraction.labels)")) {
            try TrainedHead(source: "edited", config: edited, tensors: trained.tensors, exported: false).extraction()
        }
        // Each had trapped where a head, the tokenizer or an allocation used it.
        let faults: [(String, (inout ExtractionSettings) -> Void)] = [
            ("backbone.hiddenSize -5 (expected 1 to 65536)", { $0.backbone.hiddenSize = -5 }),
            ("backbone.hiddenSize 1099511627776 (expected 1 to 65536)", { $0.backbone.hiddenSize = 1 << 40 }),
            ("layers [0, 1, 2, 2] (a layer listed twice)", { $0.layers.append(2) }),
            // Read in this order, they had changed a head's results without a word.
            ("layers [2, 1, 0] (not in ascending order)", { $0.layers.reverse() }),
            ("layers [0, 1, 3] (expected layers from 0 to the backbone's 2)", { $0.layers[2] = 3 }),
            ("maxTokens -5 (expected 1 to 1048576)", { $0.maxTokens = -5 }),
            ("preprocessing.max_length \"1\" (expected a whole number of at least 3)", { $0.preprocessing["max_length"] = "1" }),
            ("preprocessing.max_length \"abc\" (expected a whole number of at least 3)", { $0.preprocessing["max_length"] = "abc" }),
            ("preprocessing.max_length 512, more than maxTokens 128", { $0.maxTokens = 128; $0.preprocessing["max_length"] = "512" }),
        ]
        for (fault, edit) in faults {
            edited = trained.config
            edit(&edited.extraction!)
            #expect(throws: HeadError("edited: the recorded extraction is not one sidecar writes: \(fault); the head was edited or is damaged")) {
                try TrainedHead(source: "edited", config: edited, tensors: trained.tensors, exported: false).extraction()
            }
        }
    }

    /// The share of the backbone counts its parameters, not its file's bytes over 4: weights
    /// stored in bf16 (4 MB for 2 million) had halved the denominator. Caches from before the count
    /// was recorded keep the old estimate.
    @Test func theBackbonesShareCountsItsParameters() throws {
        for (recorded, denominator) in [(2_000_000, 2_000_000.0), (nil, 1_000_000.0)] as [(Int?, Double)] {
            let path = SyntheticCache.temporaryPath("share")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try SyntheticCache.make(at: path, backboneParameters: recorded)
            let trainer = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "linear")], options: options(epochs: 1))
            let result = try #require(try trainer.run { _ in }.first)
            #expect(result.fractionOfBackbone == Double(result.trainableParameters) / denominator, "\(String(describing: recorded))")
        }
    }

    @Test func aDamagedHeadFolderIsRefusedNamingTheTensor() throws {
        let path = SyntheticCache.temporaryPath("reload")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        let trainer = try Trainer(cache: cache, requests: [HeadRequest(head: "mlp", settings: ["hidden": "8"])], options: options(epochs: 1))
        let result = try trainer.run()[0]
        let folder = path + "-head"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FitOutput.write(result, head: trainer.heads[0], options: options(), cache: cache, to: folder)
        let weights = folder + "/head.safetensors"
        let file = try SafeTensorsFile(path: weights)
        var tensors = try file.names.map { (name: $0, tensor: try file.tensor($0)) }
        let dropped = tensors.removeLast().name
        try SafeTensorsWriter.write(tensors, metadata: file.metadata, to: weights)
        let context = try cache.describe().context
        #expect(throws: HeadError("\(folder): parameter \(dropped) is missing")) { try TrainedHead.load(folder).instantiate(context: context) }
        tensors.append((name: dropped, tensor: Tensor(shape: [1], scalars: [0])))
        try SafeTensorsWriter.write(tensors, metadata: file.metadata, to: weights)
        #expect(throws: HeadError.self) { try TrainedHead.load(folder).instantiate(context: context) }
        try SafeTensorsWriter.write(tensors, metadata: ["format": "sidecar-head-1"], to: weights)
        #expect(throws: HeadError.self) { try TrainedHead.load(folder) }
    }

    /// Also with weight averages (`emaDecay`), each head keeping its own.
    @Test(arguments: [nil, 0.9] as [Float?])
    func severalHeadsInOnePassEqualEachAlone(emaDecay: Float?) throws {
        let path = SyntheticCache.temporaryPath("group")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path, streams: ["attn", "mlp"])
        let cache = try ActivationCache.open(path: path)
        let requests = [HeadRequest(head: "linear"), HeadRequest(head: "mlp", settings: ["hidden": "12"]),
                        HeadRequest(head: "losa", settings: ["rank_tokens": "2", "rank_channels": "4"]),
                        HeadRequest(head: "e3va", settings: ["rank": "4"]),
                        HeadRequest(head: "unipt", settings: ["reduction": "4"])]
        var o = options(epochs: 2)
        o.emaDecay = emaDecay
        let together = try Trainer(cache: cache, requests: requests, options: o)
        let groupResults = try together.run()
        for (i, request) in requests.enumerated() {
            let alone = try Trainer(cache: cache, requests: [request], options: o)
            let result = try alone.run()[0]
            #expect(alone.heads[0].parameters.values == together.heads[i].parameters.values, "\(request.head) differs")
            #expect(result.test == groupResults[i].test)
            #expect(result.history.map(\.trainLoss) == groupResults[i].history.map(\.trainLoss))
            #expect(result.history.map(\.valAccuracy) == groupResults[i].history.map(\.valAccuracy))
        }
    }

    @Test func aSplittingHeadScoresEveryExampleAsAnUnsplitEvaluation() throws {
        // Batches of 39: the last val and test batches hold one example, so their first part is empty.
        let path = SyntheticCache.temporaryPath("parts")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        var o = options(epochs: 2)
        o.batchSize = 39
        let trainer = try Trainer(cache: cache, requests: [HeadRequest(head: "losa", settings: ["rank_tokens": "2", "rank_channels": "4"])], options: o)
        #expect(trainer.heads[0].batchShards == 2)
        let result = try trainer.run()[0]
        #expect(result.failure == nil && result.history.allSatisfy { $0.trainLoss.isFinite })
        let test = try #require(result.test)
        #expect(test.confusion.flatMap { $0 }.reduce(0, +) == 40 && result.val!.confusion.flatMap { $0 }.reduce(0, +) == 40)
        // The whole batches on one tape: the same predictions, the same loss.
        let head = trainer.heads[0]
        let dataset = try CacheDataset(cache: cache, split: "test", features: head.features)
        let decoder = try cache.makeDecoder()
        let tape = Tape(training: false)
        var predictions: [Int] = [], truth: [Int] = [], lossSum = 0.0
        for start in stride(from: 0, to: dataset.count, by: 7) {
            let batch = try dataset.batch(Array(start..<min(start + 7, dataset.count)), decoder: decoder)
            tape.reset()
            let logits = head.logits(batch, on: tape)
            lossSum += Double(logits.crossEntropy(labels: batch.labels).value.scalar) * Double(batch.count)
            let classes = logits.shape[1], scalars = logits.value.scalars
            for b in batch.labels.indices {
                let row = Array(scalars[(b * classes)..<((b + 1) * classes)])
                predictions.append(row.firstIndex(of: row.max()!)!)
            }
            truth += batch.labels
        }
        let unsplit = ClassificationMetrics(predictions: predictions, labels: truth, classes: test.confusion.count,
                                            loss: lossSum / Double(truth.count))
        #expect(unsplit.confusion == test.confusion)
        #expect(abs(unsplit.loss - test.loss) < 1e-5)
        // `sidecar eval` splits its batches as training does.
        let evaluation = try Evaluation.run(head, cache: cache, split: "test", batchSize: 7)
        #expect(evaluation.metrics.confusion == test.confusion)
        #expect(abs(evaluation.metrics.loss - test.loss) < 1e-5)
    }

    @Test(arguments: [false, true])
    func decodedPartsAreThePartsOfTheWholeBatch(inMemory: Bool) throws {
        let path = SyntheticCache.temporaryPath("parts")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        let dataset = try CacheDataset(cache: cache, split: "train", features: [.hidden(0), .hidden(2)], inMemory: inMemory)
        let batches = [[5, 3, 9, 0, 7], [11], [2, 4]]
        let decoder = try cache.makeDecoder()
        let next = try NextBatch(dataset: dataset, parts: 2)
        for indices in batches {
            let batch = try dataset.batch(indices, decoder: decoder)
            try next.start(indices)
            // The parts decoded out of order and on two threads, as the trainer's items may be.
            DispatchQueue.concurrentPerform(iterations: 2) { next.decode(part: 1 - $0) }
            let parts = try next.take()
            let ranges = Batch.shardRanges(lengths: batch.segments.lengths, shards: 2)
            #expect(parts.count == 2 && parts.map(\.count) == ranges.map(\.count))
            for (part, range) in zip(parts, ranges) {
                let slice = batch.slice(range)
                #expect(part.labels == slice.labels && part.segments == slice.segments && part.features == slice.features)
            }
            let joined = Batch(concatenating: parts)
            #expect(joined.labels == batch.labels && joined.segments == batch.segments && joined.features == batch.features)
        }
    }

    @Test func inMemoryEqualsStreaming() throws {
        let path = SyntheticCache.temporaryPath("memory")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path, storage: .bf16)
        let cache = try ActivationCache.open(path: path)
        var o = options(epochs: 2)
        let streamed = try Trainer(cache: cache, requests: [HeadRequest(head: "mlp")], options: o)
        _ = try streamed.run()
        o.inMemory = true
        let held = try Trainer(cache: cache, requests: [HeadRequest(head: "mlp")], options: o)
        #expect(held.options.inMemory, "\(held.notices)")
        _ = try held.run()
        #expect(streamed.heads[0].parameters.values == held.heads[0].parameters.values)
    }

    /// --in-memory holds the features only within three quarters of the memory available; beyond
    /// that the trainer streams, says so, and records the option as it ran.
    @Test func inMemoryIsDeclinedWhenTheFeaturesDoNotFit() throws {
        let path = SyntheticCache.temporaryPath("fits")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        let request = HeadRequest(head: "linear", settings: ["layers": "0,2"])
        // Every stored token of the two layers, in f32, over the three splits.
        var rows = 0
        for split in ["train", "val", "test"] {
            try cache.forEachRecord(split: split) { _, record, _ in rows += try record().rows; return true }
        }
        let needed = rows * 16 * 4 * 2
        var o = options(epochs: 2)
        o.inMemory = true
        let held = try Trainer(cache: cache, requests: [request], options: o, availableMemory: needed / 3 * 4 + 64)
        #expect(held.options.inMemory && held.notices.isEmpty)
        let streamed = try Trainer(cache: cache, requests: [request], options: o, availableMemory: needed / 3 * 4 - 64)
        #expect(!streamed.options.inMemory)
        #expect(streamed.notices == ["--in-memory: the features these heads read take 0 MB decoded, more than three quarters of "
                                     + "the 0 MB of memory available (or of address space, under a limit); streaming them from the cache instead"])
        _ = try held.run()
        _ = try streamed.run()
        #expect(streamed.heads[0].parameters.values == held.heads[0].parameters.values)
    }

    @Test func earlyStoppingKeepsTheBestEpoch() throws {
        let path = SyntheticCache.temporaryPath("early")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path, signal: 0.3)
        var o = options(epochs: 30)
        o.patience = 2
        o.learningRate = 0.5
        let trainer = try Trainer(cache: try ActivationCache.open(path: path), requests: [HeadRequest(head: "mlp")], options: o)
        let result = try trainer.run()[0]
        let accuracies = result.history.map { $0.valAccuracy! }
        #expect(result.epochsRun < 30, "never stopped early: \(accuracies)")
        #expect(result.epochsRun - result.bestEpoch == 2)
        #expect(accuracies[result.bestEpoch - 1] == accuracies.max())
        // The kept parameters are the best epoch's: evaluating them again gives its accuracy.
        #expect(result.val!.accuracy == accuracies[result.bestEpoch - 1])
    }

    /// The manifest has no checksum: records longer than a damaged N_max must be an error naming
    /// the cache and the record (LoSA's token mixing had trapped on them).
    @Test func recordsTheManifestDoesNotAllowAreAnError() throws {
        let path = SyntheticCache.temporaryPath("nmax")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path, counts: ["train": 16, "val": 8, "test": 8], maxTokens: 8)
        let file = URL(fileURLWithPath: path + "/data.mdb")
        var data = try Data(contentsOf: file)
        var searchFrom = data.startIndex
        while let range = data.range(of: Data(#""maxTokens":8"#.utf8), in: searchFrom..<data.endIndex) {
            data.replaceSubrange(range, with: Data(#""maxTokens":3"#.utf8))
            searchFrom = range.upperBound
        }
        try data.write(to: file)
        let cache = try ActivationCache.open(path: path)
        #expect(cache.manifest.settings.maxTokens == 3)
        #expect { _ = try Trainer(cache: cache, requests: [HeadRequest(head: "losa")], options: options(epochs: 1)).run() } throws: {
            let message = "\($0)"
            return message.hasPrefix("\(path): record ") && message.contains("does not match the manifest: ")
                && message.contains("tokens, more than the manifest's N_max 3; one of them is damaged")
        }
    }

    @Test func unusableCachesAreRefusedWithTheReason() throws {
        let path = SyntheticCache.temporaryPath("refuse")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path, layers: [0, 2], tokens: .mean, incomplete: "val")
        let cache = try ActivationCache.open(path: path)
        func message(_ request: HeadRequest) -> String {
            do {
                _ = try Trainer(cache: cache, requests: [request], options: options())
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(message(HeadRequest(head: "losa")).contains("--tokens all"))
        #expect(message(HeadRequest(head: "e3va")).contains("--streams attn,mlp"))
        #expect(message(HeadRequest(head: "linear")).contains("val split is incomplete"))
        #expect(message(HeadRequest(head: "linear", settings: ["layers": "7"])).contains("'7' is outside the backbone's layers 0-2"))
        #expect(message(HeadRequest(head: "linear", settings: ["layers": "1"])).contains("reads layers [1] that the cache does not store"))
        // One class leaves nothing to learn: such a fit had trained to a loss of 0 and succeeded.
        let single = SyntheticCache.temporaryPath("one-class")
        defer { try? FileManager.default.removeItem(atPath: single) }
        try SyntheticCache.make(at: single, classes: 1)
        #expect(throws: CacheError("\(single): the dataset has 1 label (class0); a classifier needs at least 2")) {
            try Trainer(cache: try ActivationCache.open(path: single), requests: [HeadRequest(head: "linear")], options: options())
        }
        // Steps past any real run (fit and sweep bound the epochs before, this bounds their product
        // with the batches), so that the schedule's step counts cannot overflow.
        let complete = SyntheticCache.temporaryPath("steps")
        defer { try? FileManager.default.removeItem(atPath: complete) }
        try SyntheticCache.make(at: complete)
        #expect { try Trainer(cache: try ActivationCache.open(path: complete), requests: [HeadRequest(head: "linear")], options: options(epochs: Int.max)) }
            throws: { "\($0)".hasPrefix("--epochs \(Int.max) of ") && "\($0)".hasSuffix(" batches: more than 2^40 steps") }
    }
}
