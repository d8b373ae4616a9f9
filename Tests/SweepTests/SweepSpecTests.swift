// The sweep file: expansion counts and order, seeded draws, stable ids, and errors that name the
// file, the table and the key.
import Foundation
import SideNetworks
import Sweep
import Testing

/// A commented example of the format (the README shows the same).
let exampleSpec = """
    # Every trial starts from [base]; each [[grid]] adds every combination of its lists, each
    # [[random]] adds `trials` seeded draws. Keys a block does not give come from [base].
    [base]
    head = "linear"              # the head when a block names none

    [base.training]              # epochs lr batch_size seed optimizer weight_decay warmup
    epochs = 2                   # label_smoothing clip_norm patience; lr absent: the head's default
    batch_size = 16

    [base.set]                   # hyperparameters every trial gets (each head must have them)
    pool = "mean"

    [[grid]]                     # 2 heads × 2 lr × 2 seeds = 8 trials
    head = ["linear", "mlp"]
    [grid.training]
    lr = [1e-3, 3e-3]
    seed = [0, 1]

    [[grid]]                     # 2 trials; a list-valued value needs its own brackets
    head = "linear"
    [grid.set]
    layers = [[1, 2], "all"]

    [[random]]                   # 3 draws
    trials = 3
    seed = 1
    head = "losa"
    [random.training]
    lr = { log_uniform = [1e-4, 1e-2] }
    [random.set]
    rank_tokens = { int = [2, 8] }       # inclusive
    dropout = { uniform = [0.0, 0.3] }
    layers = ["last", "all"]             # a list is a uniform choice
    """

@Suite struct SweepSpecTests {

    /// An integer range as wide as Int itself draws without overflowing.
    @Test func theWidestIntegerRangeDraws() throws {
        let spec = try SweepSpec.parse("""
            [[random]]
            head = "mlp"
            trials = 3
            seed = 1
            [random.training]
            seed = { int = [0, 9223372036854775807] }
            """, path: "wide.toml")
        #expect(spec.trials.count == 3 && spec.trials.allSatisfy { $0.training.seed >= 0 })
        #expect(Set(spec.trials.map(\.training.seed)).count == 3)
    }
    @Test func gridsAndDrawsExpandToTheRightTrials() throws {
        let spec = try SweepSpec.parse(exampleSpec, path: "example.toml")
        #expect(spec.trials.count == 13)
        #expect(spec.duplicates == 0)
        let grid = spec.trials.filter { $0.origin == "[[grid]] 1" }
        #expect(grid.count == 8)
        #expect(Set(grid.map(\.head)) == ["linear", "mlp"])
        #expect(Set(grid.map(\.training.lr)) == [1e-3, 3e-3])
        #expect(Set(grid.map(\.training.seed)) == [0, 1])
        // Base values reach every trial; defaults fill the rest.
        #expect(spec.trials.allSatisfy { $0.training.epochs == 2 && $0.training.batchSize == 16 && $0.hyperparameters["pool"] == .string("mean") })
        #expect(grid.allSatisfy { $0.training.optimizer == "adamw" && $0.training.patience == 4 })
        let layered = spec.trials.filter { $0.origin == "[[grid]] 2" }
        #expect(Set(layered.map { $0.hyperparameters["layers"]!.description }) == ["1,2", "all"])
        let drawn = spec.trials.filter { $0.origin == "[[random]] 1" }
        #expect(drawn.count == 3)
        for t in drawn {
            #expect(t.head == "losa")
            #expect((1e-4...1e-2).contains(t.training.lr))
            guard case .int(let rank) = t.hyperparameters["rank_tokens"]!, case .float(let dropout) = t.hyperparameters["dropout"]! else {
                Issue.record("unexpected types \(t.hyperparameters)")
                continue
            }
            #expect((2...8).contains(rank) && (0...0.3).contains(dropout))
            // Every key of the schema is resolved, defaults included.
            #expect(t.hyperparameters["rank_channels"] == .int(32))
        }
        #expect(Set(drawn.map(\.id)).count == 3)
    }

    @Test func theSameSpecGivesTheSameTrialsAndIds() throws {
        let a = try SweepSpec.parse(exampleSpec, path: "a.toml")
        let b = try SweepSpec.parse(exampleSpec, path: "b.toml")
        #expect(a.trials == b.trials)
        #expect(a.trials.map(\.id) == b.trials.map(\.id))
        #expect(a.trials.allSatisfy { $0.id.count == 12 && $0.id.allSatisfy(\.isHexDigit) })
        // Another random seed draws other trials.
        let reseeded = try SweepSpec.parse(exampleSpec.replacingOccurrences(of: "seed = 1\n", with: "seed = 2\n"), path: "c.toml")
        #expect(Set(reseeded.trials.map(\.id)) != Set(a.trials.map(\.id)))
        #expect(reseeded.trials.count == 13)
    }

    @Test func theIdHashesTheResolvedConfigOnly() throws {
        // Writing a default explicitly, or the keys in another order, is the same trial.
        let implicit = try SweepSpec.parse("[base]\nhead = \"mlp\"\n[base.training]\nepochs = 3\nseed = 5\n", path: "x.toml").trials[0]
        let explicit = try SweepSpec.parse("""
            [base]
            head = "mlp"
            [base.set]
            hidden = 256
            layers = "last"
            [base.training]
            seed = 5
            optimizer = "adamw"
            epochs = 3
            """, path: "y.toml").trials[0]
        #expect(implicit.id == explicit.id)
        // Pinned: the id must not change between releases or machines for the same config.
        #expect(implicit.id == Trial.makeID(head: implicit.head, hyperparameters: implicit.hyperparameters, training: implicit.training))
        let canonical = String(decoding: Trial.canonicalJSON(head: implicit.head, hyperparameters: implicit.hyperparameters, training: implicit.training), as: UTF8.self)
        #expect(canonical.hasPrefix("{\"head\":\"mlp\",\"hyperparameters\":{\"dropout\":"))
        #expect(canonical.contains("\"training\":{\"batch_size\":32,\"clip_norm\":1,\"epochs\":3,\"label_smoothing\":0,\"lr\":"))
        let changed = try SweepSpec.parse("[base]\nhead = \"mlp\"\n[base.training]\nepochs = 3\nseed = 6\n", path: "z.toml").trials[0]
        #expect(changed.id != implicit.id)
        // An option added later is left out of the hash while unset, so older trials keep their ids.
        #expect(!canonical.contains("ema_decay"))
        let averaged = try SweepSpec.parse("[base]\nhead = \"mlp\"\n[base.training]\nepochs = 3\nseed = 5\nema_decay = 0.999\n", path: "e.toml").trials[0]
        #expect(averaged.training.emaDecay == 0.999 && averaged.id != implicit.id)
        // So is a hyperparameter added later, at its default: the consolidator's trials recorded
        // before block_dropout existed keep their ids; the key is still recorded with the trial.
        let consolidator = try SweepSpec.parse("[base]\nhead = \"consolidator\"\n", path: "c.toml").trials[0]
        #expect(consolidator.hyperparameters["block_dropout"] == .float(0))
        let before = consolidator.hyperparameters.filter { $0.key != "block_dropout" }
        #expect(consolidator.id == Trial.makeID(head: "consolidator", hyperparameters: before, training: consolidator.training))
        let dropped = try SweepSpec.parse("[base]\nhead = \"consolidator\"\n[base.set]\nblock_dropout = 0.1\n", path: "d.toml").trials[0]
        #expect(dropped.id != consolidator.id)
    }

    @Test func repeatedConfigsAreKeptOnce() throws {
        let spec = try SweepSpec.parse("""
            [[grid]]
            head = ["linear", "linear"]
            [[grid]]
            head = "linear"
            """, path: "d.toml")
        #expect(spec.trials.count == 1)
        #expect(spec.duplicates == 2)
    }

    /// Two spellings of one layer list are one trial: they had been two ids, so a sweep trained
    /// the same head twice and a reworded file did not resume its finished trials.
    @Test func spellingsOfOneLayerListAreOneTrial() throws {
        let spec = try SweepSpec.parse("""
            [[grid]]
            head = "linear"
            [grid.set]
            layers = ["1,2,3,6", "6, 1-3", "1-3,6", "2,1-3,6,6", "1,2", "+1,2"]
            """, path: "layers.toml")
        #expect(spec.trials.count == 2)
        #expect(spec.duplicates == 4)
        // Recorded as first spelled.
        #expect(spec.trials.map { $0.hyperparameters["layers"]!.description } == ["1,2,3,6", "1,2"])
    }

    @Test(arguments: [
        ("[base]\nhead = \"nope\"", "bad.toml: [base] head: unknown head 'nope'"),
        ("[[grid]]\nhead = \"linear\"\n[grid.training]\nlr = [0.1, -1]", "bad.toml: [[grid]] 1 training.lr: expected a positive number, got -1"),
        // Past single precision: 1e39 had become an infinite learning rate, trained and diverged.
        ("[[grid]]\nhead = \"linear\"\n[grid.training]\nlr = [1e39]", "bad.toml: [[grid]] 1 training.lr: expected a positive number that single precision holds"),
        // A [[random]] block's every choice and bound is checked, whatever `trials` draws (two draws
        // from [inf, 1e-3] had both been 1e-3, and the file passed until more trials were asked).
        ("[[random]]\ntrials = 1\nseed = 1\nhead = \"linear\"\n[random.training]\nlr = [1e-3, inf]", "bad.toml: [[random]] 1 training.lr: expected a positive number, got inf"),
        ("[[random]]\ntrials = 1\nhead = \"linear\"\n[random.training]\nlr = { log_uniform = [1e-3, 1e39] }",
         "bad.toml: [[random]] 1 training.lr: expected a positive number that single precision holds"),
        ("[[random]]\ntrials = 1\nhead = \"mlp\"\n[random.set]\nhidden = { int = [8, 100000] }", "bad.toml: [[random]] 1 set.hidden: --set hidden=100000 for head mlp: outside 1...65536"),
        ("[[grid]]\nhead = \"linear\"\n[grid.training]\nlr = [1e-46]", "bad.toml: [[grid]] 1 training.lr: expected a positive number, got 1e-46, which single precision rounds to 0"),
        ("[[grid]]\nhead = \"linear\"\n[grid.training]\nema_decay = [0.99999999999]",
         "bad.toml: [[grid]] 1 training.ema_decay: expected a number in [0, 1), got 0.99999999999, which single precision rounds to 1"),
        ("[[random]]\ntrials = 2\nhead = \"linear\"\n[random.training]\nlr = { uniform = [0.1, inf] }",
         "bad.toml: [[random]] 1 training.lr: uniform needs finite bounds, got [0.1, inf]"),
        ("[[grid]]\nhead = \"linear\"\n[grid.training]\nepoch = [1]", "bad.toml: [[grid]] 1 training.epoch: unknown training option"),
        ("[base.training]\nbatch_size = 0", "bad.toml: [base.training] batch_size: expected an integer in 1...1048576"),
        ("[base.training]\nema_decay = 1", "bad.toml: [base.training] ema_decay: expected a number in [0, 1), got 1"),
        ("[[grid]]\nhead = \"linear\"\n[[grid]]\nhead = \"mlp\"\n[grid.set]\nhidden = [8, 0]", "bad.toml: [[grid]] 2 set: trial mlp hidden=0: --set hidden=0 for head mlp: outside 1...65536"),
        ("[[grid]]\nhead = \"linear\"\n[grid.set]\nrank = [4]", "bad.toml: [[grid]] 1 set: trial linear rank=4: --set rank: head linear has no hyperparameter rank"),
        // Layer lists that no cache reads had been planned, recorded as failed trials, and the
        // sweep had exited 0.
        ("[[grid]]\nhead = \"linear\"\n[grid.set]\nlayers = [\"6-1\"]", "bad.toml: [[grid]] 1 set: trial linear layers=6-1: --set layers=6-1 for head linear: range 6-1 is empty"),
        ("[[grid]]\nhead = \"linear\"\n[grid.set]\nlayers = [\"all,last\"]",
         "bad.toml: [[grid]] 1 set: trial linear layers=all,last: --set layers=all,last for head linear: 'all' is not a layer or a range a-b"),
        ("[[random]]\nhead = \"linear\"", "bad.toml: [[random]] 1 trials: missing"),
        ("[[random]]\ntrials = 2\nhead = \"losa\"\n[random.set]\ndropout = { normal = [0, 1] }", "bad.toml: [[random]] 1 set.dropout: unknown distribution 'normal'"),
        ("[[random]]\ntrials = 2\nhead = \"losa\"\n[random.training]\nlr = { log_uniform = [0, 1] }", "bad.toml: [[random]] 1 training.lr: log_uniform needs a positive low bound"),
        ("[[grid]]\n[grid.training]\nepochs = [1]", "bad.toml: [[grid]] 1 head: no head"),
        ("[bse]\nhead = \"linear\"", "bad.toml: unknown top-level key 'bse'"),
        ("[base]\nhead = \"linear\"\nepochs = 3", "bad.toml: [base] epochs: unknown key"),
        ("[base\nhead = 1", "bad.toml:1:"),
        ("[[grid]]\nhead = []", "bad.toml: [[grid]] 1 head: an empty list gives no trials"),
        // The parser reads a C string: it had stopped at the NUL, dropping the bad epochs after it.
        ("[base]\nhead = \"linear\"\n\u{0}\n[base.training]\nepochs = \"bogus\"", "bad.toml:3:1: a NUL byte"),
        ("[base]\nhead = \"linear\"\n[base.training]\nseed = 1979-05-27", "bad.toml: base.training.seed: dates and times are not sweep values"),
        // Two blocks of 60,000 draws each, refused once the second is added.
        (String(repeating: "[[random]]\nhead = \"linear\"\ntrials = 60000\n[random.training]\nlr = { uniform = [0.001, 0.01] }\n", count: 2),
         "bad.toml: the blocks expand to more than the 100000 trials a sweep file may have"),
    ])
    func badSpecsNameTheFileTableAndKey(_ text: String, _ expected: String) {
        do {
            let spec = try SweepSpec.parse(text, path: "bad.toml")
            Issue.record("accepted: \(spec.trials.count) trials")
        } catch {
            #expect("\(error)".hasPrefix(expected), "\(error)")
        }
    }

    @Test func aFileThatIsNotUTF8IsNamedWithItsLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("latin1-\(UUID().uuidString).toml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("[base]\nhead = \"linear\"\n# caf".utf8 + [0xE9, 0x0A]).write(to: URL(fileURLWithPath: path))
        #expect(throws: SweepError("\(path):3: not valid UTF-8, which TOML requires")) { try SweepSpec.load(path: path) }
    }

    /// Draws keep six significant digits, and stay within bounds that have more.
    @Test func roundedDrawsStayWithinTheirBounds() throws {
        let spec = try SweepSpec.parse("""
            [[random]]
            head = "linear"
            trials = 20
            [random.training]
            label_smoothing = { uniform = [0.9999991, 0.9999999] }
            warmup = { log_uniform = [0.123456789, 0.123456799] }
            """, path: "narrow.toml")
        // Six digits leave these ranges few values: most draws repeat one, kept once.
        #expect(!spec.trials.isEmpty)
        for t in spec.trials {
            #expect((0.9999991...0.9999999).contains(t.training.labelSmoothing), "\(t.training.labelSmoothing)")
            #expect((0.123456789...0.123456799).contains(t.training.warmup), "\(t.training.warmup)")
        }
    }

    @Test func aMissingFileIsNamed() {
        #expect(throws: SweepError("/nonexistent/sweep.toml: cannot read the sweep file")) { try SweepSpec.load(path: "/nonexistent/sweep.toml") }
    }
}
