// The dropout mask generator: two uniforms come from each 64-bit draw, so both halves must be
// fair and independent of each other, and an odd count must still fill its last element.
import Testing
import TensorCore

@Suite struct RandomTests {
    @Test func bernoulliMasksKeepTheirProbabilityInBothHalvesOfADraw() {
        let n = 1_000_001
        var rng = SeededGenerator(seed: 7)
        let p: Float = 0.7, value: Float = 1 / 0.7
        let mask = [Float](unsafeUninitializedCapacity: n) { out, count in
            out.initialize(repeating: .nan)
            rng.fillBernoulli(out, probability: p, value: value)
            count = n
        }
        #expect(mask.allSatisfy { $0 == 0 || $0 == value }, "every element is written, with 0 or the value")
        #expect(mask[n - 1] == 0 || mask[n - 1] == value)
        var kept = [0, 0], both = 0
        for i in 0..<n where mask[i] != 0 { kept[i % 2] += 1 }
        for i in stride(from: 0, to: n - 1, by: 2) where mask[i] != 0 && mask[i + 1] != 0 { both += 1 }
        let pairs = Double(n / 2)
        // Standard deviations are under 0.001 here; 0.004 leaves four of them.
        #expect(abs(Double(kept[0]) / Double(n - n / 2) - 0.7) < 0.004, "high bits kept \(kept[0])")
        #expect(abs(Double(kept[1]) / pairs - 0.7) < 0.004, "middle bits kept \(kept[1])")
        #expect(abs(Double(both) / pairs - 0.49) < 0.004, "both of a pair kept \(both): the halves are not independent")
    }

    @Test func bernoulliMasksAtTheEnds() {
        var rng = SeededGenerator(seed: 3)
        var mask = [Float](repeating: 5, count: 1001)
        mask.withUnsafeMutableBufferPointer { rng.fillBernoulli($0, probability: 0, value: 2) }
        #expect(mask.allSatisfy { $0 == 0 })
        mask.withUnsafeMutableBufferPointer { rng.fillBernoulli($0, probability: 1, value: 2) }
        #expect(mask.allSatisfy { $0 == 2 })
    }
}
