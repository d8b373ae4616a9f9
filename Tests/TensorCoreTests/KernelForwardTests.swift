// Forward values of the kernels against numbers printed by PyTorch 2 (torch.nn.functional, fp32)
// for the same inputs, and against naive loops.
import Testing
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-6, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
    #expect(worst <= tolerance, "\(what): max |difference| \(worst) > \(tolerance)\n  got \(actual)\n  expected \(expected)", sourceLocation: sourceLocation)
}

@Suite struct KernelForwardTests {
    let x = Tensor(shape: [1, 6], scalars: [-3, -1, -0.25, 0, 0.5, 2])

    @Test func geluMatchesPyTorch() {
        // F.gelu(x) and F.gelu(x, approximate="tanh")
        expectClose(x.applying(.gelu).scalars,
                    [-0.004050225, -0.158655256, -0.100323416, 0, 0.345731229, 1.954499722], "gelu erf")
        expectClose(x.applying(.geluTanh).scalars,
                    [-0.003637433, -0.158807993, -0.100324646, 0, 0.345714003, 1.954597712], "gelu tanh")
    }

    @Test func sigmoidTanhRelu() {
        for (i, v) in x.scalars.enumerated() {
            #expect(abs(x.applying(.sigmoid).scalars[i] - 1 / (1 + expf(-v))) < 1e-6)
            #expect(x.applying(.relu).scalars[i] == max(v, 0))
        }
        #expect(abs(x.applying(.tanh).scalars[5] - 0.96402758) < 1e-6)
    }

    /// Same-shape and one-value-per-row operands take their own paths in Tensor.binary; they must
    /// give the general broadcast kernel's bits (37 columns: a row is not a whole number of 16-lane
    /// vectors).
    @Test func binaryFastPathsGiveTheBroadcastKernelsBits() {
        var rng = SeededGenerator(seed: 1)
        let a = Tensor.randomNormal([7, 37], using: &rng)
        for other in [Tensor.randomNormal([7, 37], using: &rng), Tensor.randomNormal([7, 1], using: &rng)] {
            for operation in [BinaryOperation.add, .subtract, .multiply] {
                let geometry = Broadcast(a.shape, other.shape)!
                var general = [Float](repeating: 0, count: a.count)
                BinaryKernel.forward(operation, out: &general, a: a.scalars, b: other.scalars, broadcast: geometry)
                #expect(Tensor.binary(operation, a, other).scalars == general, "\(operation) with \(other.shape)")
            }
        }
    }

    /// The bias rows are filled by doubling copies: every row count, power of two or not, gets the
    /// bias in every row.
    @Test(arguments: [1, 2, 3, 5, 8, 13])
    func linearAddsTheBiasToEveryRow(rows: Int) {
        let inFeatures = 3, outFeatures = 5
        let x = (0..<(rows * inFeatures)).map { Float($0 % 7) - 3 }
        let weight = (0..<(outFeatures * inFeatures)).map { Float($0 % 5) * 0.5 - 1 }
        let bias = (0..<outFeatures).map { Float($0) + 0.25 }
        var y = [Float](repeating: .nan, count: rows * outFeatures)
        LinearKernel.forward(y: &y, x: x, weight: weight, bias: bias, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
        var expected: [Float] = []
        for r in 0..<rows {
            for o in 0..<outFeatures {
                expected.append(bias[o] + (0..<inFeatures).reduce(Float(0)) { $0 + x[r * inFeatures + $1] * weight[o * inFeatures + $1] })
            }
        }
        expectClose(y, expected, tolerance: 1e-5, "linear, \(rows) rows")
    }

    @Test func layerNormMatchesPyTorch() {
        let a: [Float] = [1, 2, 4, -1, 0.5, 0.5, 0.5, 3.5]
        let gain: [Float] = [1, 0.5, 2, -1], bias: [Float] = [0, 0.1, 0.2, 0.3]
        var out = [Float](repeating: 0, count: 8), mean = [Float](repeating: 0, count: 2), rstd = mean
        LayerNormKernel.forward(out: &out, mean: &mean, rstd: &rstd, x: a, gain: gain, bias: bias, rows: 2, cols: 4, eps: 1e-5)
        // F.layer_norm(a, (4,), gain, bias, eps=1e-5)
        expectClose(out, [-0.27734968, 0.23867485, 2.97349691, 1.68674850, -0.57734853, -0.18867427, -0.95469707, -1.43204570],
                    tolerance: 2e-6, "layer norm")
        expectClose(mean, [1.5, 1.25], "layer norm mean")
    }

    /// Rows of 40 floats: two 16-lane steps and an 8-float tail, normalised in place.
    @Test func layerNormInPlaceMatchesNaiveLoops() {
        var rng = SeededGenerator(seed: 11)
        let rows = 3, cols = 40
        let x = (0..<(rows * cols)).map { _ in rng.nextNormal() * 3 + 1 }
        let gain = (0..<cols).map { _ in rng.nextNormal() }, bias = (0..<cols).map { _ in rng.nextNormal() }
        var expected = [Float]()
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let mu = row.reduce(0, +) / Double(cols)
            let variance = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(cols)
            expected += row.enumerated().map { Float(($1 - mu) / (variance + 1e-12).squareRoot() * Double(gain[$0]) + Double(bias[$0])) }
        }
        var inPlace = x
        inPlace.withUnsafeMutableBufferPointer { buffer in
            LayerNormKernel.forward(out: buffer.baseAddress!, mean: nil, rstd: nil, x: buffer.baseAddress!, gain: gain, bias: bias,
                                    rows: rows, cols: cols, eps: 1e-12)
        }
        expectClose(inPlace, expected, tolerance: 1e-5, "layer norm in place, 40 columns")
    }

    /// Attention's short-segment loops (16 keys per step, softmax rows shorter than, equal to and
    /// past 16 keys, head sizes on 16 lanes, 4 lanes and a scalar tail) and its BLAS path
    /// (segments over 48 tokens), reading q, k, v from one stacked [T, 3·width] buffer, against
    /// per-element loops in Double.
    @Test(arguments: [32, 20, 4, 6])
    func attentionMatchesNaiveLoops(headSize: Int) {
        let lengths = [1, 15, 16, 17, 33, 48, 49, 70], heads = 3, width = heads * headSize
        let segments = Segments(lengths: lengths), rows = lengths.reduce(0, +)
        var rng = SeededGenerator(seed: 12)
        let stacked = (0..<(rows * 3 * width)).map { _ in rng.nextNormal() }
        func at(_ row: Int, _ part: Int, _ column: Int) -> Double { Double(stacked[row * 3 * width + part * width + column]) }
        var expected = [Float](repeating: 0, count: rows * width)
        for b in 0..<segments.count {
            let range = segments.range(b)
            for h in 0..<heads {
                for i in range {
                    let scores = range.map { j in
                        (0..<headSize).reduce(0.0) { $0 + at(i, 0, h * headSize + $1) * at(j, 1, h * headSize + $1) } / Double(headSize).squareRoot()
                    }
                    let top = scores.max()!, e = scores.map { exp($0 - top) }, z = e.reduce(0, +)
                    for d in 0..<headSize {
                        expected[i * width + h * headSize + d] = Float(zip(range, e).reduce(0.0) { $0 + $1.1 / z * at($1.0, 2, h * headSize + d) })
                    }
                }
            }
        }
        var out = [Float](repeating: .nan, count: rows * width)
        stacked.withUnsafeBufferPointer { qkv in
            let q = qkv.baseAddress!
            AttentionKernel.forward(out: &out, probabilities: nil, q: q, k: q + width, v: q + 2 * width, inputStride: 3 * width,
                                    segments: segments, heads: heads, headSize: headSize, keyMask: nil)
        }
        expectClose(out, expected, tolerance: 1e-5, "attention, head size \(headSize)")
    }

    @Test func crossEntropyWithLabelSmoothingMatchesPyTorch() {
        let logits: [Float] = [2, -1, 0.5, 0, 0.1, 0.2, 3, -2, 1, 1, 1, 1]
        let labels = [0, 2, 3]
        var p = [Float](repeating: 0, count: 12)
        // F.cross_entropy(logits, labels) and label_smoothing=0.1
        let plain = CrossEntropyKernel.forward(probabilities: &p, logits: logits, labels: labels, rows: 3, classes: 4, smoothing: 0)
        let smoothed = CrossEntropyKernel.forward(probabilities: &p, logits: logits, labels: labels, rows: 3, classes: 4, smoothing: 0.1)
        #expect(abs(plain - 0.61475527) < 1e-6)
        #expect(abs(smoothed - 0.75808859) < 1e-6)
    }

    @Test func softmaxRowsSumToOneAndSurviveLargeLogits() {
        let logits: [Float] = [1000, 1001, 1002, -5, 0, 5]
        var y = [Float](repeating: 0, count: 6)
        SoftmaxKernel.forward(out: &y, x: logits, rows: 2, cols: 3)
        #expect(y.allSatisfy { $0.isFinite })
        #expect(abs(y[0] + y[1] + y[2] - 1) < 1e-6)
        expectClose(Array(y[0..<3]), [0.09003057, 0.24472847, 0.66524096], "softmax")
    }

    @Test func broadcastMatchesNaiveLoops() {
        var rng = SeededGenerator(seed: 3)
        let a = Tensor.randomNormal([2, 3, 4], using: &rng)
        let b = Tensor.randomNormal([3, 1], using: &rng)
        let sum = a + b, product = a * b, difference = b - a
        #expect(sum.shape == [2, 3, 4] && difference.shape == [2, 3, 4])
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
            #expect(sum[i, j, k] == a[i, j, k] + b[j, 0])
            #expect(product[i, j, k] == a[i, j, k] * b[j, 0])
            #expect(difference[i, j, k] == b[j, 0] - a[i, j, k])
        } } }
        #expect(Broadcast([2, 3], [4]) == nil)
    }
}

@Suite struct FastErfTests {
    /// The vectorisable erf stays within 5e-7 of libm's double-precision erf everywhere.
    @Test func fastErfIsAccurate() {
        var worst = 0.0
        var x: Float = -9
        while x < 9 {
            worst = max(worst, abs(Double(fastErf(x)) - erf(Double(x))))
            x += 0.00037
        }
        print("fastErf: max |error| \(worst)")
        #expect(worst < 5e-7)
    }

    /// The 16-lane form (what GELU runs) holds the same bound, lane by lane, and agrees with the
    /// scalar form used for a row's tail.
    @Test func sixteenLanesAreAsAccurate() {
        var worst = 0.0, apart: Float = 0
        var x: Float = -9
        while x < 9 {
            var lanes = SIMD16<Float>()
            for i in 0..<16 { lanes[i] = x + Float(i) * 0.000_37 }
            let y = fastErf(lanes)
            for i in 0..<16 {
                worst = max(worst, abs(Double(y[i]) - erf(Double(lanes[i]))))
                apart = max(apart, abs(y[i] - fastErf(lanes[i])))
            }
            x += 16 * 0.000_37
        }
        #expect(worst < 5e-7, "worst |error| \(worst)")
        #expect(apart < 1e-7, "lanes and scalar \(apart) apart")
    }
}

@Suite struct FastExpTests {
    @Test func matchesLibmAcrossTheRange() {
        var worst: Float = 0
        var x: Float = -87
        while x < 87.5 {
            var lanes = SIMD16<Float>()
            for i in 0..<16 { lanes[i] = x + Float(i) * 0.0137 }
            let y = fastExp(lanes)
            for i in 0..<16 {
                let exact = Glibc.exp(Double(lanes[i]))
                worst = max(worst, Float(abs(Double(y[i]) - exact) / exact))
            }
            x += 0.219
        }
        #expect(worst < 5e-7, "worst relative error \(worst)")
    }
}

@Suite struct LaneSumTests {
    /// Row sums (layer norm's statistics, bias gradients) against a Double sum, for rows shorter
    /// than the lanes, a whole number of them, and with a tail.
    @Test(arguments: [0, 1, 5, 16, 17, 31, 384, 391])
    func sumsARow(count: Int) {
        var rng = SeededGenerator(seed: UInt64(count) + 7)
        let row = (0..<count).map { _ in Float.random(in: -3...3, using: &rng) }
        let exact = row.reduce(0.0) { $0 + Double($1) }
        let absolute = row.reduce(0.0) { $0 + abs(Double($1)) }
        row.withUnsafeBufferPointer { p in
            let base = p.baseAddress ?? UnsafePointer(bitPattern: 16)!
            #expect(abs(Double(laneSum(base, count: count)) - exact) <= 1e-6 * max(absolute, 1))
        }
    }

    /// A bias gradient's column sums, added into what is there: each column must be the scalar
    /// sum in row order to the bit (16 columns at a time, then a tail).
    @Test(arguments: [(0, 5), (1, 16), (7, 1), (7, 17), (33, 40), (200, 1536)])
    func addsColumnSums(rows: Int, columns: Int) {
        var rng = SeededGenerator(seed: UInt64(rows * 10_007 + columns))
        let x = (0..<(rows * columns)).map { _ in Float.random(in: -3...3, using: &rng) }
        let start = (0..<columns).map { _ in Float.random(in: -1...1, using: &rng) }
        var sums = start
        x.withUnsafeBufferPointer { px in
            sums.withUnsafeMutableBufferPointer { ps in
                LinearKernel.addColumnSums(px.baseAddress ?? UnsafePointer(bitPattern: 16)!, rows: rows, columns: columns,
                                           into: ps.baseAddress!)
            }
        }
        for j in 0..<columns {
            var expected = start[j]
            for r in 0..<rows { expected += x[r * columns + j] }
            #expect(sums[j] == expected, "column \(j) of \(columns), \(rows) rows")
        }
    }

    @Test func totalsSixteenLanes() {
        let lanes = SIMD16<Float>((0..<16).map { Float($0) * 0.5 - 3 })
        #expect(laneTotal(lanes) == (0..<16).reduce(Float(0)) { $0 + lanes[$1] })
    }
}
