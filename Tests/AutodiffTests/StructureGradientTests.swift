import Autodiff
import Foundation
import Testing
import TensorCore

@Suite struct StructureGradientTests {
    let segments = Segments(lengths: [1, 3, 5])
    /// Key 5 (inside the third example) is padding; every example keeps at least one key.
    let keyMask = [true, true, true, true, true, false, true, true, true]

    /// Attention computed the obvious way: per example, per head, with explicit loops.
    func naiveAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, mask: [Bool]?) -> Tensor {
        let width = q.shape[1], dh = width / heads
        var out = Tensor(zeros: q.shape)
        for b in 0..<segments.count {
            let r = segments.range(b)
            for h in 0..<heads {
                for i in r {
                    var scores = [Double]()
                    for j in r {
                        var s = 0.0
                        for d in 0..<dh { s += Double(q[i, h * dh + d]) * Double(k[j, h * dh + d]) }
                        scores.append((mask?[j] ?? true) ? s / Double(dh).squareRoot() : -.infinity)
                    }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for d in 0..<dh {
                        var acc = 0.0
                        for (jj, j) in r.enumerated() { acc += e[jj] / z * Double(v[j, h * dh + d]) }
                        out[i, h * dh + d] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    @Test(arguments: [false, true])
    func attentionMatchesNaive(masked: Bool) {
        let q = randomInput([9, 8], seed: 1), k = randomInput([9, 8], seed: 2), v = randomInput([9, 8], seed: 3)
        let mask = masked ? keyMask : nil
        let tape = Tape()
        let out = tape.constant(q).attention(keys: tape.constant(k), values: tape.constant(v), heads: 2, segments: segments, keyMask: mask)
        let expected = naiveAttention(q, k, v, heads: 2, mask: mask)
        let worst = zip(out.value.scalars, expected.scalars).map { abs($0 - $1) }.max()!
        print("attention masked=\(masked): max |difference| vs naive = \(worst)")
        #expect(worst < 1e-5)
    }

    @Test(arguments: [false, true])
    func attentionGradients(masked: Bool) {
        let mask = masked ? keyMask : nil
        checkGradients("attention masked=\(masked)", inputs: [randomInput([9, 8], seed: 4), randomInput([9, 8], seed: 5), randomInput([9, 8], seed: 6)]) { _, x in
            x[0].attention(keys: x[1], values: x[2], heads: 2, segments: segments, keyMask: mask)
        }
    }

    @Test func fullyMaskedQueryGivesZerosNotNaN() {
        let tape = Tape()
        let x = tape.constant(randomInput([3, 4], seed: 7))
        let out = x.attention(keys: x, values: x, heads: 1, segments: Segments(lengths: [2, 1]), keyMask: [true, true, false])
        #expect(out.value.scalars.allSatisfy { $0.isFinite })
        #expect(Array(out.value.scalars[8..<12]) == [0, 0, 0, 0])
    }

    @Test(arguments: [0, 1, 2])
    func concatSplitSlice(axis: Int) {
        let a = randomInput([2, 3, 4], seed: 8)
        var other = [2, 3, 4]
        other[axis] = 2
        let b = randomInput(other, seed: 9)
        checkGradients("concat axis \(axis)", inputs: [a, b]) { _, v in Variable.concat([v[0], v[1], v[0]], axis: axis) }
        checkGradients("split axis \(axis)", inputs: [a]) { _, v in
            let parts = v[0].split([1, a.shape[axis] - 1], axis: axis)
            return Variable.concat([parts[1], parts[0]], axis: axis)
        }
        checkGradients("slice axis \(axis)", inputs: [a]) { _, v in v[0].slice(1..<2, axis: axis) }
    }

    @Test func concatThenSliceRoundTrips() {
        let tape = Tape()
        let a = tape.constant(randomInput([2, 3], seed: 10)), b = tape.constant(randomInput([2, 5], seed: 11))
        let joined = Variable.concat([a, b], axis: 1)
        #expect(joined.shape == [2, 8])
        #expect(joined.slice(3..<8, axis: 1).value == b.value)
    }

    @Test func gatherTransposeReshape() {
        checkGradients("gather", inputs: [randomInput([5, 3], seed: 12)]) { _, v in v[0].gather(rows: [4, 0, 4, 2]) }
        checkGradients("transposed", inputs: [randomInput([2, 3, 4], seed: 13)]) { _, v in v[0].transposed() }
        let tape = Tape()
        let x = tape.constant(randomInput([2, 3], seed: 14))
        #expect(x.transposed().value[2, 1] == x.value[1, 2])
        #expect(x.gather(rows: [1]).value.scalars == Array(x.value.scalars[3..<6]))
    }

    @Test(arguments: [Variable.Pooling.sum, .mean])
    func pooling(_ pooling: Variable.Pooling) {
        let x = randomInput([9, 4], seed: 15)
        checkGradients("pooled \(pooling)", inputs: [x]) { _, v in v[0].pooled(pooling, segments: segments, tokenMask: keyMask) }
        let tape = Tape()
        let pooled = tape.constant(x).pooled(pooling, segments: segments, tokenMask: keyMask).value
        // Third example: rows 4..<9 without the masked row 5.
        let rows = [4, 6, 7, 8]
        for j in 0..<4 {
            let total = rows.reduce(Float(0)) { $0 + x[$1, j] }
            #expect(abs(pooled[2, j] - (pooling == .sum ? total : total / 4)) < 1e-5)
        }
        let empty = tape.constant(x).pooled(.mean, segments: segments, tokenMask: [false] + Array(repeating: true, count: 8)).value
        #expect(Array(empty.scalars[0..<4]) == [0, 0, 0, 0])
    }

    @Test(arguments: [false, true])
    func groupedLinear(permuted: Bool) {
        var rng = SeededGenerator(seed: 16)
        let permutation: [Int]? = permuted ? Array(0..<6).shuffled(using: &rng) : nil
        let x = randomInput([2, 2, 6], seed: 17), w = randomInput([3, 4, 2], seed: 18), b = randomInput([12], seed: 19)
        checkGradients("groupedLinear permuted=\(permuted)", inputs: [x, w, b]) { _, v in
            v[0].groupedLinear(v[1], v[2], permutation: permutation)
        }
        let tape = Tape()
        let grouped = tape.constant(x).groupedLinear(tape.constant(w), tape.constant(b), permutation: permutation).value
        let dense = tape.constant(x).linear(tape.constant(GroupedLinearKernel.denseWeight(w, permutation: permutation)), tape.constant(b)).value
        let worst = zip(grouped.scalars, dense.scalars).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5, "grouped vs materialised dense weight: \(worst)")
    }

    /// A branch added into a frozen output, with rows dropped and the rest scaled: gradients
    /// against finite differences, and the value against the grouped linear, the row scaling and
    /// the add as three ops.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func addingGroupedLinear(permuted: Bool, scaled: Bool) {
        var rng = SeededGenerator(seed: 20)
        let permutation: [Int]? = permuted ? Array(0..<6).shuffled(using: &rng) : nil
        // Row 1 dropped, the others kept at 1 / (1 − 0.25), as branch drop does.
        let scales: [Float]? = scaled ? [4 / 3, 0, 4 / 3, 4 / 3] : nil
        let base = randomInput([4, 12], seed: 21), x = randomInput([4, 6], seed: 22)
        let w = randomInput([3, 4, 2], seed: 23), b = randomInput([12], seed: 24)
        checkGradients("addingGroupedLinear permuted=\(permuted) scaled=\(scaled)", inputs: [base, x, w, b]) { _, v in
            v[0].addingGroupedLinear(v[1], v[2], v[3], permutation: permutation, rowScale: scales)
        }
        let tape = Tape()
        let fused = tape.constant(base).addingGroupedLinear(tape.constant(x), tape.constant(w), tape.constant(b),
                                                            permutation: permutation, rowScale: scales).value
        var branch = tape.constant(x).groupedLinear(tape.constant(w), tape.constant(b), permutation: permutation)
        if let scales { branch = branch * tape.constant(Tensor(shape: [4, 1], scalars: scales)) }
        let separate = (tape.constant(base) + branch).value
        let worst = zip(fused.scalars, separate.scalars).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5, "fused vs grouped linear, scaling and add: \(worst)")
        // A dropped row is the base row unchanged.
        if scaled { #expect(Array(fused.scalars[12..<24]) == Array(base.scalars[12..<24])) }
        // The op consumes its base; a caller that keeps a handle on it (here the only owner of
        // its buffer) still reads the value it had: the branch went into a copy.
        let kept = tape.constant(Tensor(shape: base.shape, scalars: base.scalars))
        let added = kept.addingGroupedLinear(tape.constant(x), tape.constant(w), tape.constant(b), permutation: permutation, rowScale: scales)
        #expect(kept.value == base && added.value == fused)
    }

    /// Group widths that are multiples of 8 run the lane-blocked loops (two 8-lane blocks per
    /// group where a width is 16): the branch op's gradients against finite differences and its
    /// value against the materialised dense weight, over 9 rows (two blocks of four and one more,
    /// scales of 0, 1/(1 − 0.25) and others in each).
    @Test(arguments: [[2, 8, 8], [2, 16, 8], [2, 8, 16]], [(false, false), (true, false), (false, true), (true, true)])
    func laneBlockedGroupedLinear(weightShape: [Int], options: (permuted: Bool, scaled: Bool)) {
        let (groups, outWidth, inWidth) = (weightShape[0], weightShape[0] * weightShape[1], weightShape[0] * weightShape[2])
        var rng = SeededGenerator(seed: 25)
        let permutation: [Int]? = options.permuted ? Array(0..<inWidth).shuffled(using: &rng) : nil
        let kept: Float = 4 / 3
        let scales: [Float]? = options.scaled ? [kept, 0, kept, kept, 0, kept, 2, kept, 0.5] : nil
        let base = randomInput([9, outWidth], seed: 26), x = randomInput([9, inWidth], seed: 27)
        let w = randomInput(weightShape, seed: 28), b = randomInput([outWidth], seed: 29)
        checkGradients("laneBlocked \(weightShape) \(options)", inputs: [base, x, w, b]) { _, v in
            v[0].addingGroupedLinear(v[1], v[2], v[3], permutation: permutation, rowScale: scales)
        }
        checkGradients("laneBlocked groupedLinear \(weightShape) \(options)", inputs: [x, w, b]) { _, v in
            v[0].groupedLinear(v[1], v[2], permutation: permutation)
        }
        let tape = Tape()
        let fused = tape.constant(base).addingGroupedLinear(tape.constant(x), tape.constant(w), tape.constant(b),
                                                            permutation: permutation, rowScale: scales).value
        let dense = tape.constant(x).linear(tape.constant(GroupedLinearKernel.denseWeight(w, permutation: permutation)), tape.constant(b)).value
        for r in 0..<9 {
            let s = scales?[r] ?? 1
            for j in 0..<outWidth {
                let expected = s == 0 ? base[r, j] : base[r, j] + s * dense[r, j]
                #expect(abs(fused[r, j] - expected) < 1e-4, "row \(r), column \(j) of \(groups) groups: \(fused[r, j]) against \(expected)")
            }
        }
        let grouped = tape.constant(x).groupedLinear(tape.constant(w), tape.constant(b), permutation: permutation).value
        let worst = zip(grouped.scalars, dense.scalars).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-4, "grouped vs materialised dense weight: \(worst)")
    }
}
