// LoSA (Mercea et al., CVPR 2024): a side stream refined layer by layer by low-rank mixers that read
// the frozen features, a_l = a_{l−1} + g_l(z_l + a_{l−1}), f = z_L + a_L. There is no public code;
// this follows the reconstruction in methods-reference §1.2: g = low-rank token mixing along the
// position axis (tied to positions, so sequences are re-padded to N_max), then low-rank channel
// mixing. The up-projections start at zero, so training starts exactly as a linear probe on z_L
// behind a layer norm.
import Autodiff
import TensorCore

public final class LoSAHead: Head, HeadKind {
    public static let name = "losa"
    public static let summary = "LoSA: side stream refined by low-rank token and channel mixers over z_1..z_L"
    public static let schema: [Hyperparameter] = [
        Hyperparameter("rank_tokens", .int(1...4096), default: "16", "rank of each token-mixing MLP (along positions)"),
        Hyperparameter("rank_channels", .int(1...4096), default: "32", "rank of each channel-mixing MLP"),
        Hyperparameter("layers", .layers, default: "all", "blocks whose outputs get a mixer (0 is skipped); z_L is always read"),
        .pool,
        .dropout("0.1"),
    ]
    public static let defaultLearningRate: Float = 1e-3
    public static let batchShards = 2

    struct Mixer {
        let layer: Int
        let tokenNorm: Norm
        let tokenDown: Dense   // V_t [r_t, N]
        let tokenUp: Dense     // U_t [N, r_t], zero
        let channelNorm: Norm
        let channelDown: Dense // A_c
        let channelUp: Dense   // B_c, zero
    }

    public let parameters = ParameterSet()
    public let features: [Feature]
    let mixers: [Mixer]
    let lastLayer: Int
    let maxTokens: Int
    let pooling: PoolingMode
    let dropout: Float
    let headNorm: Norm
    let classifier: Dense

    public static func make(_ h: Hyperparameters, context: HeadContext, seed: UInt64) throws -> any Head {
        try context.requireAllTokens(head: name)
        guard let maxTokens = context.maxTokens else {
            throw HeadError("head losa mixes tokens by position and needs N_max, which this cache's manifest lacks; extract it again with this version of sidecar")
        }
        let layers = try context.resolveLayers(h.string("layers"), head: name).filter { $0 > 0 }
        try context.requireLayers([context.layerCount], head: name)
        return LoSAHead(layers: layers, maxTokens: maxTokens, rankTokens: h.int("rank_tokens"), rankChannels: h.int("rank_channels"),
                        pooling: poolingMode(h, context), dropout: h.float("dropout"), context: context, seed: seed)
    }

    init(layers: [Int], maxTokens: Int, rankTokens: Int, rankChannels: Int, pooling: PoolingMode, dropout: Float,
         context: HeadContext, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let d = context.width
        self.maxTokens = maxTokens
        self.pooling = pooling
        self.dropout = dropout
        lastLayer = context.layerCount
        let parameters = self.parameters
        mixers = layers.map { l in
            let p = "mixer.\(l)"
            return Mixer(layer: l,
                         tokenNorm: Norm(parameters, p + ".token_norm", width: d),
                         tokenDown: Dense(parameters, p + ".token_down", in: maxTokens, out: rankTokens, rng: &rng),
                         tokenUp: .zero(parameters, p + ".token_up", in: rankTokens, out: maxTokens, rng: &rng),
                         channelNorm: Norm(parameters, p + ".channel_norm", width: d),
                         channelDown: Dense(parameters, p + ".channel_down", in: d, out: rankChannels, rng: &rng),
                         channelUp: .zero(parameters, p + ".channel_up", in: rankChannels, out: d, rng: &rng))
        }
        features = Array(Set(layers + [lastLayer])).sorted().map { .hidden($0) }
        headNorm = Norm(parameters, "head_norm", width: d)
        classifier = Dense(parameters, "classifier", in: d, out: context.classes, rng: &rng)
    }

    public func logits(_ batch: Batch, on tape: Tape) -> Variable {
        let longest = batch.segments.lengths.max() ?? 0
        precondition(longest <= maxTokens, "losa: a sequence of \(longest) tokens is longer than the cache's N_max \(maxTokens)")
        // Positions past the batch's longest sequence are zero in every example, so their slice of
        // the token-mixing weights contributes nothing: mix over n = longest positions only.
        let n = max(longest, 1)
        let padding = Padding(batch.segments, length: n)
        var a: Variable? = nil
        for mixer in mixers {
            let z = tape.constant(batch.tensor(.hidden(mixer.layer)))
            let u = a.map { z + $0 } ?? z
            a = a.map { $0 + update(u, mixer, padding, n) } ?? update(u, mixer, padding, n)
        }
        let zL = tape.constant(batch.tensor(.hidden(lastLayer)))
        let f = a.map { zL + $0 } ?? zL
        let pooled = pool(headNorm(f, parameters), batch, pooling)
        return classifier(pooled.dropout(dropout), parameters)
    }

    /// g(u) = t′ + c′: token mixing along positions, then channel mixing of u + t′.
    func update(_ u: Variable, _ m: Mixer, _ padding: Padding, _ n: Int) -> Variable {
        let tape = u.tape
        let tokenUpdate = mixTokens(u, normGain: tape.parameter(parameters, m.tokenNorm.gain), normBias: tape.parameter(parameters, m.tokenNorm.bias),
                                    eps: m.tokenNorm.eps, padding: padding, n: n,
                                    down: tape.parameter(parameters, m.tokenDown.weight), downBias: tape.parameter(parameters, m.tokenDown.bias!),
                                    up: tape.parameter(parameters, m.tokenUp.weight), upBias: tape.parameter(parameters, m.tokenUp.bias!))
        let v = u + tokenUpdate
        let channelUpdate = m.channelUp(m.channelDown(v, normalizedBy: m.channelNorm, parameters).gelu(), parameters)
        return tokenUpdate + channelUpdate
    }

    /// The token norm and the token-mixing MLP along positions as one tape node: x = LN(u) [T, D],
    /// each example's rows padded to n positions and transposed to [B, D, n], h = t·V[:, :n]ᵀ + b_V,
    /// GELU, then m = GELU(h)·U[:n]ᵀ + b_U[:n], transposed back and unpadded to [T, D]. The same
    /// kernels on the same operands as recording the norm, pad, transpose, linear, GELU, linear,
    /// transpose and unpad one by one, so the same bits; but the node keeps only u, h and GELU(h)
    /// ([B·D, r]) for the backward and rebuilds x and the padded input there, where the chain of
    /// nodes kept x and four padded [B·n, D] tensors and their gradients.
    func mixTokens(_ u: Variable, normGain: Variable, normBias: Variable, eps: Float, padding: Padding, n: Int,
                   down: Variable, downBias: Variable, up: Variable, upBias: Variable) -> Variable {
        let tape = u.tape
        // The token norm is folded in: the node keeps u, not its normalised copy x.
        let (norm, xValue) = SavedLayerNorm.forward(u, gain: normGain, bias: normBias, eps: eps)
        let d = u.shape[1], b = padding.examples, rows = b * d
        let r = down.shape[0], positions = down.shape[1]
        precondition(padding.length == n && n <= positions && up.shape == [positions, r] && upBias.shape == [positions] && downBias.shape == [r],
                     "losa token mixing: \(n) positions with V \(down.shape), U \(up.shape)")
        let offsets = padding.segments.offsets, realRows = padding.segments.totalRows
        let uValue = up.value, upBiasValue = upBias.value, downBiasValue = downBias.value
        // V[:, :n] as its own [r, n] matrix (the slice the linear reads).
        let vSlice = Tensor(uninitialized: [r, n]) { dst in
            down.value.withUnsafeBufferPointer { pv in
                for o in 0..<r { for j in 0..<n { dst[o * n + j] = pv[o * positions + j] } }
            }
        }
        /// t [B, D, n]: t[b, c, p] = x[row of (b, p), c], zero past the example's length.
        func paddedTransposed(_ x: Tensor) -> Tensor {
            Tensor(uninitialized: [b, d, n]) { pt in
                x.withUnsafeBufferPointer { px in
                    Self.toColumns(pt.baseAddress!, px.baseAddress!, offsets: offsets, width: d, positions: n,
                                   addingToZero: false)
                }
            }
        }
        let h: Tensor, g: Tensor, out: Tensor
        if rows == 0 || realRows == 0 {
            (h, g, out) = (Tensor(zeros: [rows, r]), Tensor(zeros: [rows, r]), Tensor(zeros: [realRows, d]))
        } else {
            let t = paddedTransposed(xValue)
            // Both linears start from their bias rows (LinearKernel.forward), so nothing is zeroed.
            func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor, inFeatures: Int, outFeatures: Int) -> Tensor {
                Tensor(uninitialized: [rows, outFeatures]) { py in
                    x.withUnsafeBufferPointer { px in
                        weight.withUnsafeBufferPointer { pw in
                            bias.withUnsafeBufferPointer { pb in
                                LinearKernel.forward(y: py.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, bias: pb.baseAddress!,
                                                     rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
                            }
                        }
                    }
                }
            }
            h = linear(t, vSlice, downBiasValue, inFeatures: n, outFeatures: r)
            g = Tensor(uninitialized: [rows, r]) { pg in
                h.withUnsafeBufferPointer { ph in ActivationKernel.forward(.gelu, out: pg.baseAddress!, x: ph.baseAddress!, count: rows * r) }
            }
            let mixed = linear(g, uValue, upBiasValue, inFeatures: r, outFeatures: n)
            out = Tensor(uninitialized: [realRows, d]) { po in
                mixed.withUnsafeBufferPointer { pm in
                    Self.fromColumns(po.baseAddress!, pm.baseAddress!, offsets: offsets, width: d, positions: n, accumulate: false)
                }
            }
        }
        let (hidden, activated) = (h, g)
        let (down, downBias, up, upBias) = (down.handle, downBias.handle, up.handle, upBias.handle)
        return tape.record(out, inputs: norm.inputs + [down, downBias, up, upBias]) { gradOut, tape in
            guard rows > 0 && realRows > 0 else { return }
            // Gradients are added into zero buffers, as the chain of nodes did (0 + g, not g: the
            // same bits down to the sign of a zero).
            let gradMixed = Tensor(uninitialized: [rows, n]) { pm in
                gradOut.withUnsafeBufferPointer { pg in
                    Self.toColumns(pm.baseAddress!, pg.baseAddress!, offsets: offsets, width: d, positions: n,
                                   addingToZero: true)
                }
            }
            var gradActivated = Tensor(zeros: [rows, r]), gradU = Tensor(zeros: [n, r]), gradUpBias = Tensor(zeros: [n])
            gradMixed.withUnsafeBufferPointer { dm in
                activated.withUnsafeBufferPointer { pg in
                    uValue.withUnsafeBufferPointer { pu in
                        gradActivated.withUnsafeMutableBufferPointer { dg in
                            gradU.withUnsafeMutableBufferPointer { du in
                                gradUpBias.withUnsafeMutableBufferPointer { db in
                                    LinearKernel.backward(gradX: dg.baseAddress!, gradWeight: du.baseAddress!, gradBias: db.baseAddress!,
                                                          gradY: dm.baseAddress!, x: pg.baseAddress!, weight: pu.baseAddress!,
                                                          rows: rows, inFeatures: r, outFeatures: n)
                                }
                            }
                        }
                    }
                }
            }
            var gradHidden = Tensor(zeros: [rows, r])
            gradActivated.withUnsafeBufferPointer { dg in
                hidden.withUnsafeBufferPointer { ph in
                    activated.withUnsafeBufferPointer { pg in
                        gradHidden.withUnsafeMutableBufferPointer { dh in
                            ActivationKernel.backward(.gelu, gradX: dh.baseAddress!, gradOut: dg.baseAddress!, x: ph.baseAddress!,
                                                      y: pg.baseAddress!, count: rows * r)
                        }
                    }
                }
            }
            var gradT = Tensor(zeros: [rows, n])
            var gradV = Tensor(zeros: [r, n]), gradDownBias = Tensor(zeros: [r])
            let t = paddedTransposed(norm.recompute())
            gradHidden.withUnsafeBufferPointer { dh in
                t.withUnsafeBufferPointer { pt in
                    vSlice.withUnsafeBufferPointer { pv in
                        gradT.withUnsafeMutableBufferPointer { dt in
                            gradV.withUnsafeMutableBufferPointer { dv in
                                gradDownBias.withUnsafeMutableBufferPointer { db in
                                    LinearKernel.backward(gradX: dt.baseAddress!, gradWeight: dv.baseAddress!, gradBias: db.baseAddress!,
                                                          gradY: dh.baseAddress!, x: pt.baseAddress!, weight: pv.baseAddress!,
                                                          rows: rows, inFeatures: n, outFeatures: r)
                                }
                            }
                        }
                    }
                }
            }
            var gradX = Tensor(zeros: [realRows, d])
            gradT.withUnsafeBufferPointer { dt in
                gradX.withUnsafeMutableBufferPointer { dx in
                    Self.fromColumns(dx.baseAddress!, dt.baseAddress!, offsets: offsets, width: d, positions: n, accumulate: true)
                }
            }
            gradV.withUnsafeBufferPointer { dv in
                tape.accumulate(down) { dst in
                    for o in 0..<r { for j in 0..<n { dst[o * positions + j] += dv[o * n + j] } }
                }
            }
            tape.accumulate(downBias, gradDownBias)
            gradU.withUnsafeBufferPointer { du in
                tape.accumulate(up) { dst in for i in 0..<(n * r) { dst[i] += du[i] } }
            }
            gradUpBias.withUnsafeBufferPointer { db in
                tape.accumulate(upBias) { dst in for j in 0..<n { dst[j] += db[j] } }
            }
            norm.backward(gradX, on: tape)
        }
    }
}

extension LoSAHead {
    /// Channels of a tile of the transposes: a tile's rows of n positions stay in L1 while its
    /// columns are written.
    static let tile = 32

    /// dst [B, D, n] ← packed rows src [T, D]: dst[e, c, p] = src[first row of e + p, c] (0 + that
    /// with `addingToZero`) for p below e's length, 0 past it; every element of dst is written.
    static func toColumns(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, offsets: [Int],
                          width d: Int, positions n: Int, addingToZero: Bool) {
        for e in 0..<(offsets.count - 1) {
            let first = offsets[e], length = offsets[e + 1] - first
            let block = dst + e * d * n
            for c0 in stride(from: 0, to: d, by: tile) {
                let cw = min(tile, d - c0)
                for p in 0..<length {
                    let from = src + (first + p) * d + c0, column = block + c0 * n + p
                    if addingToZero {
                        for k in 0..<cw { column[k * n] = 0 + from[k] }
                    } else {
                        for k in 0..<cw { column[k * n] = from[k] }
                    }
                }
            }
            if length < n {
                for c in 0..<d { (block + c * n + length).update(repeating: 0, count: n - length) }
            }
        }
    }

    /// Packed rows dst [T, D] (=|+=) src [B, D, n] at the real positions: dst[first row of e + p, c]
    /// from src[e, c, p].
    static func fromColumns(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, offsets: [Int],
                            width d: Int, positions n: Int, accumulate: Bool) {
        for e in 0..<(offsets.count - 1) {
            let first = offsets[e], length = offsets[e + 1] - first
            let block = src + e * d * n
            for c0 in stride(from: 0, to: d, by: tile) {
                let cw = min(tile, d - c0)
                for p in 0..<length {
                    let to = dst + (first + p) * d + c0, column = block + c0 * n + p
                    if accumulate {
                        for k in 0..<cw { to[k] += column[k * n] }
                    } else {
                        for k in 0..<cw { to[k] = column[k * n] }
                    }
                }
            }
        }
    }
}
