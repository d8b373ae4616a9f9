// What each head promises beyond its gradient: it can fit a small batch, the zero-initialised
// ones start exactly at a probe, the consolidator's merged weights compute the same function,
// layouts and caches it cannot use are refused with the flag to fix them.
import ActivationStore
import Autodiff
import SideNetworks
import Testing
import TensorCore

@Suite struct HeadBehaviourTests {
    @Test(arguments: ["linear", "mlp", "losa", "lst", "unipt", "e3va", "consolidator"])
    func overfitsASmallBatch(_ name: String) throws {
        let head = try Tiny.head(name, Tiny.settings[name]!.merging(["dropout": "0"]) { _, b in b })
        var optimizer = AdamW(weightDecay: 0)
        let batch = Tiny.batch(lengths: [3, 5, 2, 4, 6, 1])
        var first: Float = 0, last: Float = 0
        for step in 0..<300 {
            let (tape, l) = loss(head, batch, training: false)
            head.parameters.zeroGradients()
            tape.backward(from: l)
            optimizer.step(head.parameters, learningRate: 1e-2)
            if step == 0 { first = l.value.scalar }
            last = l.value.scalar
        }
        print("\(name): loss \(first) → \(last)")
        #expect(last < 0.02, "\(name) did not fit 6 examples: loss \(first) → \(last)")
    }

    /// A tape that records a head's forward and loss but never runs backward (evaluation,
    /// prediction, a non-finite loss) is freed with its last owner: its steps hold their inputs'
    /// nodes, not the tape, so nothing needs emptying by hand.
    @Test(arguments: ["linear", "mlp", "losa", "lst", "unipt", "e3va", "consolidator"])
    func aTapeNotRunBackwardIsFreedWithItsOwner(_ name: String) throws {
        let head = try Tiny.head(name, Tiny.settings[name]!)
        weak var recorded: Tape?
        do {
            let (tape, l) = loss(head, Tiny.batch())
            recorded = tape
            #expect(tape.count > 3 && l.value.scalar.isFinite)
        }
        #expect(recorded == nil, "\(name): the tape outlived its owner")
    }

    /// logits = W_c · pool(LN_head(z_L)) + b_c with the head's own head norm and classifier.
    func probeLogits(_ head: any Head, _ batch: Batch) -> Tensor {
        let set = head.parameters
        let tape = Tape(training: false)
        func p(_ name: String) -> Variable { tape.parameter(set, set.id(named: name)!) }
        let normed = tape.constant(batch.tensor(.hidden(Tiny.layers))).layerNorm(gain: p("head_norm.weight"), bias: p("head_norm.bias"))
        return normed.pooled(.mean, segments: batch.segments).linear(p("classifier.weight"), p("classifier.bias")).value
    }

    @Test(arguments: ["losa", "e3va"])
    func zeroInitialisedHeadsStartAtTheProbe(_ name: String) throws {
        let head = try Tiny.head(name, Tiny.settings[name]!)
        let batch = Tiny.batch()
        let tape = Tape(training: false)
        #expect(head.logits(batch, on: tape).value == probeLogits(head, batch))
        // And one training step moves them off it (the zero projections are trainable).
        let (t, l) = loss(head, batch)
        head.parameters.zeroGradients()
        t.backward(from: l)
        var optimizer = AdamW()
        optimizer.step(head.parameters, learningRate: 1e-2)
        #expect(head.logits(batch, on: Tape(training: false)).value != probeLogits(head, batch))
    }

    @Test func consolidatorMergedWeightsGiveTheSameLogits() throws {
        let head = try Tiny.head("consolidator", Tiny.settings["consolidator"]!)
        var rng = SeededGenerator(seed: 4)
        // Branches far from their ±1e-3 init, so merging them matters.
        for i in head.parameters.values.indices { head.parameters.values[i] += 0.3 * rng.nextNormal() }
        let consolidator = try #require(head as? ConsolidatorHead)
        let batch = Tiny.batch()
        let branched = head.logits(batch, on: Tape(training: false)).value
        let merged = try consolidator.mergedLogits(batch)
        let frozenOnly = try consolidator.mergedLogits(batch, includeBranches: false)
        let difference = zip(branched.scalars, merged.scalars).map { abs($0 - $1) }.max()!
        #expect(difference < 1e-4, "merged differs by \(difference)")
        #expect(zip(branched.scalars, frozenOnly.scalars).map { abs($0 - $1) }.max()! > 1e-2, "the branches changed nothing")
        // The exported head holds one plain matrix per linear, no branches.
        let names = try head.exportedTensors().map(\.0)
        #expect(!names.contains { $0.contains("branch") })
        #expect(names.contains("block.2.attention.query.weight"))
    }

    @Test func consolidatorBlockDropoutActsInTrainingOnly() throws {
        var settings = Tiny.settings["consolidator"]!
        settings["branch_drop"] = "0"
        let batch = Tiny.batch()
        func logits(blockDropout: String, training: Bool) throws -> [Float] {
            settings["block_dropout"] = blockDropout
            let head = try Tiny.head("consolidator", settings)
            return head.logits(batch, on: Tape(training: training, rng: SeededGenerator(seed: 9))).value.scalars
        }
        #expect(try logits(blockDropout: "0.5", training: false) == logits(blockDropout: "0", training: false))
        #expect(try logits(blockDropout: "0", training: true) == logits(blockDropout: "0", training: false))
        #expect(try logits(blockDropout: "0.5", training: true) != logits(blockDropout: "0", training: true))
    }

    @Test func stepCostsCountTheOperationsOfAStep() throws {
        // A probe: each parameter once per example, whatever the token count.
        let probe = try Tiny.head("linear", Tiny.settings["linear"]!)
        #expect(probe.stepFlops(tokens: 10) == StepFlops(f32: 6 * Double(probe.parameterCount)))
        // A side network: each parameter once per token.
        let losa = try Tiny.head("losa", Tiny.settings["losa"]!)
        #expect(losa.stepFlops(tokens: 10) == StepFlops(f32: 60 * Double(losa.parameterCount)))
        // The consolidator adds its frozen products, in f32 on this context: per token, 512
        // multiply-adds a block (Q, K, V and O 8×8, the FFN 8×16 and 16×8), forward in both blocks
        // and backward for the inputs except the first block's Q, K and V (192), which read the cache.
        let consolidator = try Tiny.head("consolidator", Tiny.settings["consolidator"]!)
        let forward: Double = 2 * 512 * 2, backward: Double = 2 * 512 + 2 * (512 - 192)
        let trained = 6 * Double(consolidator.parameterCount)
        #expect(consolidator.stepFlops(tokens: 10) == StepFlops(f32: 10 * trained + 10 * (forward + backward)))
    }

    @Test func pooledCachesAreRefusedByTokenMixingHeads() throws {
        for name in ["losa", "lst", "unipt", "consolidator"] {
            #expect(throws: HeadError.self) { try Tiny.head(name, Tiny.settings[name]!, context: Tiny.context(layout: .cls)) }
        }
        do {
            _ = try Tiny.head("losa", [:], context: Tiny.context(layout: .mean))
            Issue.record("losa accepted a mean-pooled cache")
        } catch let error as HeadError {
            #expect(error.description.contains("--tokens all"))
        }
        // A cache of one pooled row per example leaves no pooling to choose: another one asked for
        // would be recorded and never applied.
        // Checked before training, not when a head is built: one fitted before the check loads.
        let schema = try HeadRegistry.kind(named: "linear").schema
        for (layout, other) in [(RowLayout.cls, "mean"), (.mean, "cls")] {
            let context = Tiny.context(layout: layout)
            #expect(throws: HeadError.self) {
                try Hyperparameters(head: "linear", schema: schema, settings: ["pool": other]).checkPoolingForTraining(context: context)
            }
            for pool in [layout.rawValue, "auto"] {
                try Hyperparameters(head: "linear", schema: schema, settings: ["pool": pool]).checkPoolingForTraining(context: context)
            }
            _ = try Tiny.head("linear", ["pool": other], context: context)
        }
        // Probes work on pooled rows, and so does a CLS E3VA head (token-wise, it reads the CLS rows).
        let batch = Tiny.batch(layout: .clsAndMean)
        for name in ["linear", "mlp"] {
            let head = try Tiny.head(name, Tiny.settings[name]!, context: Tiny.context(layout: .clsAndMean))
            #expect(head.logits(batch, on: Tape(training: false)).shape == [3, Tiny.classes])
        }
        let cls = Tiny.settings["e3va"]!.merging(["pool": "cls"]) { $1 }
        let onCLSRows = try Tiny.head("e3va", cls, context: Tiny.context(layout: .clsAndMean))
        #expect(onCLSRows.logits(batch, on: Tape(training: false)).shape == [3, Tiny.classes])
        // A mean head's adapters cannot act on a mean row: another function, refused before
        // training; one fitted on mean rows before the check still loads.
        let e3va = try HeadRegistry.kind(named: "e3va")
        let mean = try Hyperparameters(head: "e3va", schema: e3va.schema, settings: Tiny.settings["e3va"]!)
        for layout in [RowLayout.mean, .clsAndMean] {
            #expect(throws: HeadError.self) { try e3va.checkForTraining(mean, context: Tiny.context(layout: layout)) }
            _ = try Tiny.head("e3va", Tiny.settings["e3va"]!, context: Tiny.context(layout: layout))
        }
        try e3va.checkForTraining(mean, context: Tiny.context(layout: .tokens))
    }

    @Test func missingStreamsAndBlobsNameTheExtractFlag() throws {
        func message(_ name: String, _ settings: [String: String] = [:], _ context: HeadContext) -> String {
            do {
                _ = try Tiny.head(name, settings, context: context)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(message("e3va", [:], Tiny.context(streams: [])).contains("--streams attn,mlp"))
        #expect(message("lst", ["reduction": "2"], Tiny.context(blobNames: [])).contains("--lst-reductions 2"))
        #expect(message("lst", ["reduction": "4"], Tiny.context()).contains("--lst-reductions 4"))
        // A reduction extract refuses is not advised: it must divide the width.
        #expect(message("lst", ["reduction": "3"], Tiny.context(blobNames: [])).contains("--set reduction=3 for head lst: it must divide the width 8"))
        #expect(message("consolidator", [:], Tiny.context(blobNames: [])).contains("--top-blocks 1"))
        // More blocks than the backbone has: extracting again would not help.
        #expect(message("consolidator", ["K": "\(Tiny.layers + 1)", "groups": "2"], Tiny.context())
            .contains("the backbone has \(Tiny.layers) blocks; K is at most \(Tiny.layers)"))
    }

    @Test func badHyperparametersAreRefusedBeforeTraining() throws {
        func message(_ name: String, _ settings: [String: String]) -> String {
            do {
                _ = try HeadRegistry.hyperparameters(head: name, settings: settings)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(message("losa", ["rank": "8"]).contains("has no hyperparameter rank"))
        #expect(message("losa", ["rank_tokens": "eight"]).contains("not an integer"))
        #expect(message("losa", ["rank_tokens": "0"]).contains("outside 1...4096"))
        #expect(message("mlp", ["dropout": "1.5"]).contains("outside"))
        #expect(message("lst", ["gate_temperature": "inf"]).hasSuffix("--set gate_temperature=inf for head lst: not finite (the range is 0.001...100.0)"))
        #expect(message("lst", ["gate_temperature": "nan"]).hasSuffix("not a number"))
        #expect(message("linear", ["pool": "max"]).contains("expected one of auto, cls, mean"))
        #expect(message("consolidator", ["groups": "96,x"]).contains("'x' is not an integer"))
        #expect(message("nope", [:]).contains("unknown head 'nope'"))
        #expect(message("losa", ["rank_tokens": "4"]) == "accepted")
        // Defaults are resolved into the recorded values.
        let h = try HeadRegistry.hyperparameters(head: "losa", settings: ["rank_tokens": "4"])
        #expect(h.int("rank_tokens") == 4 && h.int("rank_channels") == 32)
        #expect(throws: HeadError.self) { try Tiny.head("linear", ["layers": "5"]) }
        #expect(throws: HeadError.self) { try Tiny.head("consolidator", ["K": "1", "groups": "3"]) }
    }

    /// A `layers` value is all, last, layers and ranges a-b, nothing looser: "-1" (Python's last)
    /// had read layer 1, and empty parts were skipped.
    @Test func layersAreReadStrictly() throws {
        let context = Tiny.context()
        #expect(try context.resolveLayers("0-1, 2", head: "linear") == [0, 1, 2])
        #expect(try context.resolveLayers("2,1", head: "linear") == [1, 2])
        // (value, the part named as wrong)
        for (bad, part) in [("-1", "-1"), ("2-", "2-"), ("1,,2", ""), (",2", ""), ("1-2-", "1-2-"), ("²", "²"), ("1 2", "1 2")] {
            #expect(throws: HeadError("--set layers=\(bad) for head linear: '\(part)' is not a layer or a range a-b")) {
                try context.resolveLayers(bad, head: "linear")
            }
        }
        #expect(throws: HeadError("--set layers=1,3-1 for head linear: range 3-1 is empty")) {
            try context.resolveLayers("1,3-1", head: "linear")
        }
        // Bounds are checked before a range is expanded.
        #expect(throws: HeadError("--set layers=0-99999999999 for head linear: '0-99999999999' is outside the backbone's layers 0-\(Tiny.layers)")) {
            try context.resolveLayers("0-99999999999", head: "linear")
        }
        #expect(throws: HeadError("--set layers=0 for head losa: names no block (layer 0 is the embedding output); give layers from 1")) {
            try Tiny.head("losa", ["layers": "0"])
        }
    }

    /// A layer list identifies a run (a sweep trial's id) in one spelling (sorted, once each,
    /// three or more in a row as a range), read as the cache reads it; `all`, `last` and layers the
    /// cache may refuse are kept as given. The recorded value, and messages, keep what was typed.
    /// A list no cache reads is refused with the value itself, before any cache is opened.
    @Test func layerListsIdentifyARunInOneSpelling() throws {
        func identifying(_ text: String) throws -> String {
            let h = try HeadRegistry.hyperparameters(head: "linear", settings: ["layers": text])
            #expect(h.string("layers") == text.trimmingCharacters(in: .whitespaces))
            return HeadRegistry.identifyingValues(head: "linear", h.values)["layers"]!.description
        }
        for (text, spelling) in [("6,1-3,2", "1-3,6"), ("4-5", "4,5"), (" 3, 2 ,1 ", "1-3"), ("0-0", "0"), ("0,2,4", "0,2,4"),
                                 ("1-2,3-4,6-8", "1-4,6-8"), ("+1,02", "1,2"), ("all", "all"), ("last", "last"),
                                 ("0-99999999999", "0-99999999999")] {
            #expect(try identifying(text) == spelling, "\(text)")
        }
        for (text, fault) in [("3-1", "range 3-1 is empty"), ("-1", "'-1' is not a layer or a range a-b"),
                              ("1 2", "'1 2' is not a layer or a range a-b"), ("²", "'²' is not a layer or a range a-b"),
                              ("all,last", "'all' is not a layer or a range a-b")] {
            #expect(throws: HeadError("--set layers=\(text) for head linear: \(fault)")) { try identifying(text) }
        }
        // The cache reads the spellings alike.
        let context = Tiny.context()
        #expect(try context.resolveLayers("+1,02", head: "linear") == context.resolveLayers("1,2", head: "linear"))
        #expect(throws: HeadError("--set layers=6,1 for head linear: '6' is outside the backbone's layers 0-\(Tiny.layers)")) {
            try Tiny.head("linear", ["layers": "6,1"])
        }
    }

    /// A blob whose contents are wrong (written by a faulty tool, or damaged in a cache from before
    /// blobs had checksums) is refused by the heads that read it, naming the blob and the fault:
    /// such blobs had crashed fit, eval and export (a zero head count divided by, a matrix of
    /// the wrong shape indexed) or read as the fit diverging (a NaN).
    @Test(arguments: ["lst", "consolidator"])
    func aBlobWithWrongContentsIsRefused(head: String) throws {
        let name = head == "lst" ? "lst.r2" : "top_blocks"
        let original = Tiny.blobs()[name]!
        func refusal(tensors: [String: Tensor]? = nil, metadata: [String: String] = [:]) -> String? {
            let blob = Blob(tensors: tensors ?? original.tensors, metadata: original.metadata.merging(metadata) { _, new in new },
                            label: "tiny cache: blob \(name)")
            var context = Tiny.context()
            context.loadBlob = { $0 == name ? blob : Tiny.blobs()[$0] }
            do {
                _ = try Tiny.head(head, Tiny.settings[head] ?? [:], context: context)
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal() == nil)
        #expect(refusal(metadata: ["heads": "0"]) == "tiny cache: blob \(name): heads is 0 in its metadata, expected at least 1")
        let indivisible = head == "lst" ? "embeddings.kept keeps 4 channels, not a multiple of its 3 heads" : "width 8 is not a multiple of its 3 heads"
        #expect(refusal(metadata: ["heads": "3"]) == "tiny cache: blob \(name): \(indivisible)")
        var noActivation = original.metadata
        noActivation["activation"] = nil
        let withoutActivation = Blob(tensors: original.tensors, metadata: noActivation, label: "tiny cache: blob \(name)")
        var context = Tiny.context()
        context.loadBlob = { $0 == name ? withoutActivation : Tiny.blobs()[$0] }
        #expect(throws: HeadError("tiny cache: blob \(name) has no activation in its metadata")) {
            try Tiny.head(head, Tiny.settings[head] ?? [:], context: context)
        }
        #expect(refusal(metadata: ["eps": "-1"]) == "tiny cache: blob \(name): eps is -1 in its metadata, expected a positive number")
        var tensors = original.tensors
        let query = "block.2.attention.query.weight"
        let width = tensors[query]!.shape[0]
        tensors[query] = Tensor(zeros: [width, width - 1])
        #expect(refusal(tensors: tensors) == "tiny cache: blob \(name): \(query) has shape [\(width), \(width - 1)], expected [\(width), \(width)]")
        tensors = original.tensors
        tensors["block.1.output.weight"] = Tensor(zeros: [width])
        #expect(refusal(tensors: tensors)?.hasPrefix("tiny cache: blob \(name): block.1.output.weight has shape [\(width)]") == true)
        tensors = original.tensors
        tensors[query]!.scalars[3] = .nan
        #expect(refusal(tensors: tensors) == "tiny cache: blob \(name): \(query) holds a NaN or an infinity; the cache is damaged: remove it and extract it again")
        // Listed in the manifest but not held: damage, not a cache extracted without it.
        context.loadBlob = { $0 == name ? nil : Tiny.blobs()[$0] }
        #expect(throws: HeadError("head \(head) reads blob \(name), which the cache's manifest lists but the cache does not hold: "
                                  + "the cache is damaged; remove it and extract it again")) {
            try Tiny.head(head, Tiny.settings[head] ?? [:], context: context)
        }
    }
}

