// Every head's parameter gradients against central finite differences of its real loss, with
// dropout, branch drop and every path live: parameters are first moved off their initial values
// (zero up-projections would otherwise hide the paths behind them).
import Autodiff
import SideNetworks
import Testing
import TensorCore

@Suite struct HeadGradientTests {
    /// Compares the tape's gradient of every (sampled) parameter scalar with (L(p+ε) − L(p−ε)) / 2ε.
    func check(_ name: String, eps: Float = 1e-2, tolerance: Double = 2e-2) throws {
        let head = try Tiny.head(name, Tiny.settings[name]!)
        let set = head.parameters
        var rng = SeededGenerator(seed: 3)
        for i in set.values.indices { set.values[i] += 0.2 * rng.nextNormal() }
        let batch = Tiny.batch()
        let (tape, l) = loss(head, batch)
        set.zeroGradients()
        tape.backward(from: l)
        let analytic = set.gradients
        var worst = 0.0, checked = 0, failures: [String] = []
        for entry in set.entries {
            let step = max(1, entry.count / 24)
            for j in stride(from: entry.offset, to: entry.offset + entry.count, by: step) {
                let saved = set.values[j]
                set.values[j] = saved + eps
                let plus = Double(loss(head, batch).1.value.scalar)
                set.values[j] = saved - eps
                let minus = Double(loss(head, batch).1.value.scalar)
                set.values[j] = saved
                let numeric = (plus - minus) / Double(2 * eps)
                let error = abs(Double(analytic[j]) - numeric) / (1e-3 + tolerance * abs(numeric))
                worst = max(worst, error)
                checked += 1
                if error > 1 { failures.append("\(entry.name)[\(j - entry.offset)]: analytic \(analytic[j]), numeric \(numeric)") }
            }
        }
        print("\(name): \(checked) parameter scalars checked, worst error ratio \(worst)")
        #expect(checked > 20)
        #expect(failures.isEmpty, "\(name): \(failures.prefix(5))")
    }

    @Test func linear() throws { try check("linear") }
    @Test func mlp() throws { try check("mlp") }
    @Test func losa() throws { try check("losa") }
    @Test func lst() throws { try check("lst", eps: 3e-3) }
    // Small steps: the interaction's ReLU has kinks that a 1e-2 step can cross.
    @Test func unipt() throws { try check("unipt", eps: 2e-3) }
    @Test func e3va() throws { try check("e3va") }
    @Test func consolidator() throws { try check("consolidator") }

    @Test func aWrongGradientFailsTheCheck() throws {
        // The same comparison must notice a gradient that is off by 5%.
        let head = try Tiny.head("mlp", Tiny.settings["mlp"]!)
        let batch = Tiny.batch()
        let (tape, l) = loss(head, batch)
        head.parameters.zeroGradients()
        tape.backward(from: l)
        // The largest gradient, so that 5% of it is well above the absolute tolerance.
        let j = head.parameters.gradients.indices.max { abs(head.parameters.gradients[$0]) < abs(head.parameters.gradients[$1]) }!
        let analytic = Double(head.parameters.gradients[j]) * 1.05
        let saved = head.parameters.values[j]
        head.parameters.values[j] = saved + 1e-2
        let plus = Double(loss(head, batch).1.value.scalar)
        head.parameters.values[j] = saved - 1e-2
        let minus = Double(loss(head, batch).1.value.scalar)
        let numeric = (plus - minus) / 2e-2
        #expect(abs(analytic - numeric) / (1e-3 + 2e-2 * abs(numeric)) > 1)
    }
}
