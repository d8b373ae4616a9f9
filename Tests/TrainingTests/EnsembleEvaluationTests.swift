// Several heads scored as an ensemble (`sidecar eval --head A --head B`): the mean of their class
// probabilities, computed on one pass over the split, each member scored as it is alone.
import ActivationStore
import Foundation
import SideNetworks
import Testing
import Training

@Suite struct EnsembleEvaluationTests {
    func softmax(_ row: [Float]) -> [Double] {
        let top = Double(row.max()!)
        let e = row.map { exp(Double($0) - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    @Test func theMeanOfTheProbabilitiesComesBackAsLogits() {
        let rows: [[Float]] = [[2, -1, 0.5, 3], [-3, 4, 1, 0], [0, 0, 0, 0]]
        let mixed = Evaluation.meanProbabilityLogits(rows)
        let mean = rows[0].indices.map { c in rows.reduce(0.0) { $0 + softmax($1)[c] } / 3 }
        // The logits are log-probabilities: their softmax is the mean, and so are they themselves.
        for (a, b) in zip(softmax(mixed), mean) { #expect(abs(a - b) < 1e-6) }
        for (a, b) in zip(mixed, mean) { #expect(abs(Double(a) - log(b)) < 1e-5) }
    }

    @Test func aClassNoMemberGivesAnyProbabilityStaysFinite() {
        // e^−3000 underflows in Float and Double; in log space the mean is (e^−3000 + e^(−3005 − log(1 + e^−5))) / 2.
        let mixed = Evaluation.meanProbabilityLogits([[0, -3000, -2000], [0, -3000, 5]])
        #expect(mixed.allSatisfy { $0.isFinite }, "\(mixed)")
        let second = -3005 - log1p(exp(-5.0))
        #expect(abs(Double(mixed[1]) - (-3000 + log1p(exp(second + 3000)) - log(2.0))) < 1e-3, "\(mixed[1])")
        #expect(abs(Double(mixed[0]) - log((1 + softmax([0, -3000, 5])[0]) / 2)) < 1e-5)
        // A class every member rules out stays ruled out, not NaN.
        let ruledOut = Evaluation.meanProbabilityLogits([[0, -.infinity], [1, -.infinity]])
        #expect(ruledOut[1] == -.infinity && ruledOut[0].isFinite && abs(ruledOut[0]) < 1e-6, "\(ruledOut)")
    }

    /// Batches of 7, and of 39, whose last batch of one example leaves LoSA's first part empty
    /// (nothing collected for it) beside the probe's whole batch.
    @Test(arguments: [7, 39])
    func anEnsembleScoresTheMeanOfItsMembersProbabilities(batchSize: Int) throws {
        let path = SyntheticCache.temporaryPath("ensemble")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SyntheticCache.make(at: path)
        let cache = try ActivationCache.open(path: path)
        // Heads after one short epoch, so that they disagree: a probe on layer 0 alone (one part per
        // batch) and LoSA on every layer (two parts), whose features the pass decodes together.
        var options = TrainingOptions()
        options.seed = 5
        options.epochs = 1
        options.batchSize = 40
        let trainer = try Trainer(cache: cache, requests: [HeadRequest(head: "linear", settings: ["layers": "0"]),
                                                           HeadRequest(head: "losa", settings: ["rank_tokens": "2", "rank_channels": "4"])],
                                  options: options)
        _ = try trainer.run()
        let heads = trainer.heads
        #expect(heads.map(\.batchShards) == [1, 2] && heads[0].features != heads[1].features)
        let alone = try heads.map { try Evaluation.run($0, cache: cache, split: "test", batchSize: batchSize) }
        #expect(alone.allSatisfy { $0.members == nil && $0.logits?.count == 40 })
        let ensemble = try Evaluation.run(ensemble: [("probe", heads[0]), ("losa", heads[1])], cache: cache, split: "test",
                                          batchSize: batchSize)

        let members = try #require(ensemble.members)
        #expect(members.map(\.head) == ["probe", "losa"] && members.map(\.kind) == ["linear", "losa"])
        #expect(members.map(\.trainableParameters) == heads.map(\.parameterCount))
        #expect(members.map(\.metrics) == alone.map(\.metrics))

        let truth = try CacheDataset(cache: cache, split: "test", features: [.hidden(0)]).labels()
        var confusion = [[Int]](repeating: [0, 0, 0], count: 3)
        var loss = 0.0, disagreements = 0
        for (i, label) in truth.enumerated() {
            let p = zip(softmax(alone[0].logits![i]), softmax(alone[1].logits![i])).map { ($0 + $1) / 2 }
            confusion[label][p.firstIndex(of: p.max()!)!] += 1
            loss -= log(p[label])
            let votes = alone.map { $0.logits![i].firstIndex(of: $0.logits![i].max()!)! }
            if votes[0] != votes[1] { disagreements += 1 }
            #expect(ensemble.logits![i] == Evaluation.meanProbabilityLogits([alone[0].logits![i], alone[1].logits![i]]))
        }
        // Were the members to agree everywhere, the ensemble's votes would be either's.
        #expect(disagreements > 0)
        #expect(Set(ensemble.logits!.map { $0.firstIndex(of: $0.max()!)! }).count == 3)
        #expect(ensemble.metrics.confusion == confusion)
        #expect(abs(ensemble.metrics.loss - loss / Double(truth.count)) < 1e-5)
        #expect(ensemble.perClass.map(\.support) == confusion.map { $0.reduce(0, +) })
    }
}
