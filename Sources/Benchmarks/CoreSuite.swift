// `sidecar-bench core`: matrix-product GFLOP/s at the backbone's shapes against the CPU's peak, and
// the autodiff tape's overhead per training step.
import Autodiff
import Foundation
import OneDNN
import TensorCore

/// Seconds of each of `repetitions` runs of `body` after one warm-up run.
func measure(repetitions: Int, _ body: () -> Void) -> [Double] {
    body()
    let clock = ContinuousClock()
    return (0..<repetitions).map { _ in
        clock.measure(body).inSeconds
    }
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Cores, clock and FLOPs per cycle from /proc/cpuinfo, with the assumption spelled out.
func theoreticalPeak() -> (gflops: Double, explanation: String) {
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let lines = info.split(separator: "\n")
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let mhz = lines.first { $0.hasPrefix("cpu MHz") }.flatMap { Double($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) } ?? 0
    let flags = lines.first { $0.hasPrefix("flags") } ?? ""
    let perCycle: Double
    let unit: String
    if flags.contains(" avx512f") {
        perCycle = 64; unit = "AVX-512: 2 FMA units × 16 lanes × 2"
    } else if flags.contains(" avx2") && flags.contains(" fma") {
        perCycle = 32; unit = "AVX2: 2 FMA units × 8 lanes × 2"
    } else {
        perCycle = 8; unit = "SSE: 4 lanes × 2"
    }
    let peak = Double(cores) * mhz / 1000 * perCycle
    return (peak, "\(cores) cores × \(String(format: "%.2f", mhz / 1000)) GHz × \(Int(perCycle)) FLOP/cycle (\(unit); assumes the listed clock, no turbo)")
}

func benchmarkMatrixProducts() {
    let (peak, explanation) = theoreticalPeak()
    print("sgemm through OpenBLAS (\(BLAS.coreName) kernels)")
    print("single-precision peak: \(String(format: "%.0f", peak)) GFLOP/s = \(explanation)\n")
    let shapes: [(String, Int, Int, Int)] = [
        ("MiniLM Q/K/V/out  4096×384 · 384×384", 4096, 384, 384),
        ("MiniLM FFN up     4096×384 · 384×1536", 4096, 1536, 384),
        ("MiniLM FFN down   4096×1536 · 1536×384", 4096, 384, 1536),
        ("BERT-base FFN up  4096×768 · 768×3072", 4096, 3072, 768),
    ]
    let cores = ProcessInfo.processInfo.activeProcessorCount
    print("shape (tokens × in · in × out)           threads   best GFLOP/s   median   of peak")
    for (name, m, n, k) in shapes {
        var rng = SeededGenerator(seed: 1)
        let a = Tensor.randomNormal([m, k], using: &rng), b = Tensor.randomNormal([n, k], using: &rng)
        var c = Tensor(zeros: [m, n])
        for threads in [cores, 1] {
            BLAS.setThreadCount(threads)
            let times = measure(repetitions: 7) {
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            // x · Wᵀ, as a linear layer with PyTorch-layout weights computes it.
                            BLAS.gemm(transposeA: false, transposeB: true, m: m, n: n, k: k,
                                      a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!)
                        }
                    }
                }
            }
            let flops = 2.0 * Double(m * n * k)
            let best = flops / times.min()! / 1e9, typical = flops / median(times) / 1e9
            let share = best / (peak * Double(threads) / Double(cores))
            print(name.padding(toLength: 42, withPad: " ", startingAt: 0)
                  + String(format: "%7d %14.1f %8.1f %8.0f%%", threads, best, typical, share * 100))
        }
    }
    BLAS.setThreadCount(cores)
}

/// The side networks' own products, per part of a training batch (about 200 token rows), in f32
/// through OpenBLAS against bf16 through oneDNN (what the CPU's AMX tiles offer the backbone's
/// products): whether training the side weights in mixed precision could pay. The bf16 time rounds
/// x on every call, as training would, but not W: a trainable weight would need that and a
/// repack on every step too, so the bf16 column is the best mixed precision could do.
func benchmarkSideNetworkProducts() {
    guard OneDNN.hasBF16Instructions else {
        print("\nside-network products: this CPU has no bf16 instructions; skipped")
        return
    }
    let shapes: [(String, Int, Int, Int)] = [
        ("LoSA channel down   200×384 · 384×32", 200, 32, 384),
        ("LoSA channel up     200×32 · 32×384", 200, 384, 32),
        ("LoSA token down      16×12 · 12×384 *", 16, 384, 12),
        ("LST ladder          200×384 · 384×48", 200, 48, 384),
        ("LST FFN up          200×48 · 48×192", 200, 192, 48),
    ]
    print("\nside-network products on one thread, f32 (OpenBLAS) against bf16 (oneDNN, x rounded per call, W packed once)")
    print("* one example's product: LoSA's token mixer runs one per example, so its shape is per example, not per part")
    print("shape (rows × in · in × out)                f32 µs    bf16 µs   f32 / bf16")
    BLAS.setThreadCount(1)
    defer { BLAS.setThreadCount(ProcessInfo.processInfo.activeProcessorCount) }
    for (name, m, n, k) in shapes {
        var rng = SeededGenerator(seed: 3)
        let x = Tensor.randomNormal([m, k], using: &rng), w = Tensor.randomNormal([n, k], using: &rng)
        var y = Tensor(zeros: [m, n])
        // Enough calls per sample that the clock's resolution does not matter.
        let calls = max(1, 2_000_000 / (m * n * k))
        let f32 = measure(repetitions: 9) {
            x.withUnsafeBufferPointer { px in w.withUnsafeBufferPointer { pw in y.withUnsafeMutableBufferPointer { py in
                for _ in 0..<calls {
                    BLAS.gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: px.baseAddress!, b: pw.baseAddress!, c: py.baseAddress!)
                }
            } } }
        }
        let product: BF16RowsProduct
        do {
            product = try w.withUnsafeBufferPointer { try BF16RowsProduct(weight: $0.baseAddress!, inFeatures: k, outFeatures: n, hasBias: false) }
        } catch {
            print(name.padding(toLength: 42, withPad: " ", startingAt: 0) + "  bf16 unavailable: \(error)")
            continue
        }
        let bf16 = measure(repetitions: 9) {
            x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
                for _ in 0..<calls { product.forward(y: py.baseAddress!, x: px.baseAddress!, rows: m) }
            } }
        }
        let (a, b) = (median(f32) / Double(calls) * 1e6, median(bf16) / Double(calls) * 1e6)
        print(name.padding(toLength: 42, withPad: " ", startingAt: 0) + String(format: "%8.1f %10.1f %11.2f×", a, b, a / b))
    }
}

func benchmarkTapeOverhead() {
    // A small MLP step (batch 32, 64 → 64 → 10) with the tape, against the same products called
    // straight through the kernels: the difference is what the tape costs per step.
    var rng = SeededGenerator(seed: 2)
    let parameters = ParameterSet()
    let w1 = parameters.add("w1", Initializer.linearWeight(out: 64, in: 64, using: &rng))
    let b1 = parameters.add("b1", Tensor(zeros: [64]), decays: false)
    let w2 = parameters.add("w2", Initializer.linearWeight(out: 10, in: 64, using: &rng))
    let b2 = parameters.add("b2", Tensor(zeros: [10]), decays: false)
    let x = Tensor.randomNormal([32, 64], using: &rng)
    let labels = (0..<32).map { $0 % 10 }
    var optimizer = AdamW()
    let tape = Tape()
    var nodes = 0
    let steps = 2000
    let withTape = measure(repetitions: 5) {
        for _ in 0..<steps {
            tape.reset()
            let h = tape.constant(x).linear(tape.parameter(parameters, w1), tape.parameter(parameters, b1)).gelu()
            let loss = h.linear(tape.parameter(parameters, w2), tape.parameter(parameters, b2)).crossEntropy(labels: labels)
            parameters.zeroGradients()
            tape.backward(from: loss)
            optimizer.step(parameters, learningRate: 1e-3)
            nodes = tape.count
        }
    }
    // The same six products (two forward, four backward) through BLAS directly.
    let wa = parameters.tensor(w1), wb = parameters.tensor(w2)
    var h = Tensor(zeros: [32, 64]), y = Tensor(zeros: [32, 10]), dW1 = Tensor(zeros: [64, 64]), dW2 = Tensor(zeros: [10, 64])
    var dh = Tensor(zeros: [32, 64]), dx = Tensor(zeros: [32, 64])
    let direct = measure(repetitions: 5) {
        for _ in 0..<steps {
            x.withUnsafeBufferPointer { px in wa.withUnsafeBufferPointer { pw in h.withUnsafeMutableBufferPointer { ph in
                LinearKernel.forward(y: ph.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, bias: nil, rows: 32, inFeatures: 64, outFeatures: 64)
            } } }
            h.withUnsafeBufferPointer { ph in wb.withUnsafeBufferPointer { pw in y.withUnsafeMutableBufferPointer { py in
                LinearKernel.forward(y: py.baseAddress!, x: ph.baseAddress!, weight: pw.baseAddress!, bias: nil, rows: 32, inFeatures: 64, outFeatures: 10)
                dh.withUnsafeMutableBufferPointer { pdh in dW2.withUnsafeMutableBufferPointer { pdw in
                    LinearKernel.backward(gradX: pdh.baseAddress!, gradWeight: pdw.baseAddress!, gradBias: nil, gradY: py.baseAddress!,
                                          x: ph.baseAddress!, weight: pw.baseAddress!, rows: 32, inFeatures: 64, outFeatures: 10)
                } }
            } } }
            dh.withUnsafeBufferPointer { pdh in x.withUnsafeBufferPointer { px in wa.withUnsafeBufferPointer { pw in
                dx.withUnsafeMutableBufferPointer { pdx in dW1.withUnsafeMutableBufferPointer { pdw in
                    LinearKernel.backward(gradX: pdx.baseAddress!, gradWeight: pdw.baseAddress!, gradBias: nil, gradY: pdh.baseAddress!,
                                          x: px.baseAddress!, weight: pw.baseAddress!, rows: 32, inFeatures: 64, outFeatures: 64)
                } }
            } } }
        }
    }
    let stepTape = median(withTape) / Double(steps) * 1e6, stepDirect = median(direct) / Double(steps) * 1e6
    print("\nautodiff step: MLP 32×64 → 64 → 10, GELU, cross-entropy, AdamW (\(nodes) tape nodes)")
    print(String(format: "  with the tape      %8.1f µs/step", stepTape))
    print(String(format: "  products alone     %8.1f µs/step", stepDirect))
    print(String(format: "  tape + element-wise ops + optimiser overhead %.1f µs/step, %.2f µs per node", stepTape - stepDirect, (stepTape - stepDirect) / Double(nodes)))
}
