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

@Suite struct BFloat16ConversionTests {
    @Test func bulkRoundingEqualsTheScalarOne() {
        var rng = SeededGenerator(seed: 11)
        var bits: [UInt32] = (0..<4001).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        // Ties in both directions, the largest finite value, infinities, NaNs whose payload sits
        // only in the low half, zeros and subnormals.
        bits += [0x3F80_8000, 0x3F81_8000, 0x3F80_7FFF, 0x7F7F_FFFF, 0x7F80_0000, 0xFF80_0000,
                 0x7F80_0001, 0xFFC0_0000, 0x7FBF_0000, 0, 0x8000_0000, 0x0000_8000, 0x0001_7FFF]
        let values = bits.map { Float(bitPattern: $0) } + [1, -2.5, 3.1415927]  // 4017: the tail path runs too
        var bulk = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { v in
            bulk.withUnsafeMutableBufferPointer { HalfPrecision.bfloat16FromFloat(v.baseAddress!, into: $0.baseAddress!, count: v.count) }
        }
        let scalar = values.map(HalfPrecision.bfloat16FromFloat)
        let mismatches = values.indices.filter { bulk[$0] != scalar[$0] }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5).map { String(values[$0].bitPattern, radix: 16) })")
        #expect(values.count % 16 != 0)
    }
}
