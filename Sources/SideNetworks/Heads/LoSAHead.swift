// LoSA (Mercea et al., CVPR 2024): a side stream refined layer by layer by low-rank mixers that read
// the frozen features, a_l = a_{l−1} + g_l(z_l + a_{l−1}), f = z_L + a_L. There is no public code;
// this follows the reconstruction in methods-reference §1.2: g = low-rank token mixing along the
// position axis (tied to positions: the weights span N_max, and a sequence of L tokens reads the
// first L), then low-rank channel mixing. The up-projections start at zero, so training starts
// exactly as a linear probe on z_L behind a layer norm.
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

    public func stepFlops(tokens: Double) -> StepFlops { .perToken(parameters: parameterCount, tokens: tokens) }

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
        let layers = try context.resolveBlocks(h.string("layers"), head: name)
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
        // u_l = z_l + a_{l−1}, and f = z_L + a of the last mixer: each step adds the next input
        // itself, so a is never a tensor of its own.
        var f = tape.constant(batch.tensor(.hidden(mixers.first?.layer ?? lastLayer)))
        for (i, mixer) in mixers.enumerated() {
            let next = batch.tensor(.hidden(i + 1 < mixers.count ? mixers[i + 1].layer : lastLayer))
            f = step(f, z: batch.tensor(.hidden(mixer.layer)), next: next, mixer, batch.segments)
        }
        let pooled = pool(headNorm(f, parameters), batch, pooling)
        return classifier(pooled.dropout(dropout), parameters)
    }

    /// The next input, `next` + a_l, where a_l = a_{l−1} + g(u) with u = z_l + a_{l−1} and
    /// g(u) = t′ + c′: token mixing along positions, then channel mixing of v = u + t′. The token
    /// mixer gives v itself, and next + a_l = v + c′ − z_l + next is one pass: as written in the
    /// paper, the residual adds were five passes over [rows, D] per layer, 6% of the step.
    func step(_ u: Variable, z: Tensor, next: Tensor, _ m: Mixer, _ segments: Segments) -> Variable {
        let tape = u.tape
        let v = mixTokens(u, normGain: tape.parameter(parameters, m.tokenNorm.gain), normBias: tape.parameter(parameters, m.tokenNorm.bias),
                          eps: m.tokenNorm.eps, segments: segments,
                          down: tape.parameter(parameters, m.tokenDown.weight), downBias: tape.parameter(parameters, m.tokenDown.bias!),
                          up: tape.parameter(parameters, m.tokenUp.weight), upBias: tape.parameter(parameters, m.tokenUp.bias!))
        let c = m.channelUp(m.channelDown(v, normalizedBy: m.channelNorm, parameters).gelu(), parameters)
        let out = Tensor(uninitialized: v.shape) { po in
            withBaseAddresses([v.value, c.value, z, next]) { p in
                let (pv, pc, pz, pn, o) = (p[0], p[1], p[2], p[3], po.baseAddress!)
                for i in 0..<po.count { o[i] = pv[i] + pc[i] - pz[i] + pn[i] }
            }
        }
        let (vh, ch) = (v.handle, c.handle)
        return tape.record(out, inputs: [vh, ch]) { gradOut, tape in
            tape.accumulate(vh, gradOut)
            tape.accumulate(ch, gradOut)
        }
    }

    /// u + t′, the token norm and the token-mixing MLP along positions with its residual, as one
    /// tape node, example by example: with X = LN(u) of example e [L, D], H = V[:, :L]·X + b_V
    /// [r, D], G = GELU(H) and the update t′ = U[:L]·G + b_U[:L] [L, D]. This is the MLP over
    /// each channel's vector of positions (zero-padded to N_max, as the paper's sequences are)
    /// without padding or transposing: a position past L is zero, so its columns of V add nothing
    /// and its rows of U are not read.
    /// The node keeps u, G and GELU′(H) ([B·r, D]) and recomputes X in its backward.
    func mixTokens(_ u: Variable, normGain: Variable, normBias: Variable, eps: Float, segments: Segments,
                   down: Variable, downBias: Variable, up: Variable, upBias: Variable) -> Variable {
        let tape = u.tape
        let d = u.shape[1], b = segments.count
        let r = down.shape[0], positions = down.shape[1]
        precondition(up.shape == [positions, r] && upBias.shape == [positions] && downBias.shape == [r]
                     && segments.lengths.allSatisfy { $0 <= positions },
                     "losa token mixing: examples of \(segments.lengths.max() ?? 0) tokens with V \(down.shape), U \(up.shape)")
        let offsets = segments.offsets, rows = segments.totalRows
        // An empty part of a split batch: nothing to mix, nothing to learn from.
        guard rows > 0 else { return u }
        let (norm, x) = SavedLayerNorm.forward(u, gain: normGain, bias: normBias, eps: eps)
        let (v, vBias, uWeight, uBias) = (down.value, downBias.value, up.value, upBias.value)
        // H starts from its bias rows, then adds V[:, :L]·X (nothing for an empty example); each
        // example's block then gives G = GELU(H) while it is in cache, and is overwritten by
        // GELU′(H), all the backward needs of H.
        var gelu = Tensor(uninitialized: [b * r, d]) { _ in }
        let slope = Tensor(uninitialized: [b * r, d]) { ph in
            withBaseAddresses([x, v, vBias]) { p in
                let (px, pv, pb) = (p[0], p[1], p[2])
                gelu.withUnsafeMutableBufferPointer { pg in
                    for e in 0..<b {
                        let block = ph.baseAddress! + e * r * d
                        for o in 0..<r { (block + o * d).update(repeating: pb[o], count: d) }
                        let first = offsets[e], length = offsets[e + 1] - first
                        BLAS.gemm(transposeA: false, transposeB: false, m: r, n: d, k: length, a: pv, lda: positions,
                                  b: px + first * d, beta: 1, c: block)
                        ActivationKernel.geluAndSlope(out: pg.baseAddress! + e * r * d, slope: block, x: block, count: r * d)
                    }
                }
            }
        }
        let g = gelu
        // The output starts from u + b_U[p] along each row p, then adds U[:L]·G.
        let out = Tensor(uninitialized: [rows, d]) { po in
            withBaseAddresses([g, uWeight, uBias, u.value]) { p in
                let (pg, pu, pb, pin) = (p[0], p[1], p[2], p[3])
                for e in 0..<b {
                    let first = offsets[e], length = offsets[e + 1] - first
                    guard length > 0 else { continue }
                    let block = po.baseAddress! + first * d, input = pin + first * d
                    for q in 0..<length {
                        let shift = pb[q]
                        for j in q * d..<(q + 1) * d { block[j] = input[j] + shift }
                    }
                    BLAS.gemm(transposeA: false, transposeB: false, m: length, n: d, k: r, a: pu, lda: r,
                              b: pg + e * r * d, beta: 1, c: block)
                }
            }
        }
        let (input, down, downBias, up, upBias) = (u.handle, down.handle, downBias.handle, up.handle, upBias.handle)
        return tape.record(out, inputs: norm.inputs + [down, downBias, up, upBias]) { gradOut, tape in
            // Through the up-projection: dU[:L] += dM·Gᵀ, db_U[:L] += dM's rows, dG = U[:L]ᵀ·dM.
            // Then through the GELU, dH = dG ⊙ GELU′(H), block by block while dG is in cache. dH is
            // written whole, each example's block by its product (zero for an empty example), so
            // it starts uninitialised: zero-filling it was 1.6% of LoSA's step.
            var gradU = Tensor(zeros: [positions, r]), gradUBias = Tensor(zeros: [positions])
            let gradH = Tensor(uninitialized: [b * r, d]) { dh in
                withBaseAddresses([gradOut, g, uWeight, slope]) { p in
                    let (dOut, pg, pu, ps) = (p[0], p[1], p[2], p[3])
                    gradU.withUnsafeMutableBufferPointer { du in
                        gradUBias.withUnsafeMutableBufferPointer { dub in
                            for e in 0..<b {
                                let first = offsets[e], length = offsets[e + 1] - first
                                guard length > 0 else {
                                    (dh.baseAddress! + e * r * d).update(repeating: 0, count: r * d)
                                    continue
                                }
                                let dm = dOut + first * d
                                BLAS.gemm(transposeA: false, transposeB: true, m: length, n: r, k: d, a: dm, b: pg + e * r * d,
                                          beta: 1, c: du.baseAddress!)
                                for q in 0..<length { dub[q] += laneSum(dm + q * d, count: d) }
                                let block = dh.baseAddress! + e * r * d
                                BLAS.gemm(transposeA: true, transposeB: false, m: r, n: d, k: length, a: pu, lda: r, b: dm,
                                          beta: 0, c: block)
                                let blockSlope = ps + e * r * d
                                for i in 0..<(r * d) { block[i] *= blockSlope[i] }
                            }
                        }
                    }
                }
            }
            // Through the down-projection: dV[:, :L] += dH·Xᵀ, db_V += dH's rows, dX = V[:, :L]ᵀ·dH.
            var gradV = Tensor(zeros: [r, positions]), gradVBias = Tensor(zeros: [r])
            let gradX = Tensor(uninitialized: [rows, d]) { dx in
                withBaseAddresses([gradH, norm.recompute(), v]) { p in
                    let (dh, px, pv) = (p[0], p[1], p[2])
                    gradV.withUnsafeMutableBufferPointer { dv in
                        gradVBias.withUnsafeMutableBufferPointer { dvb in
                            for e in 0..<b {
                                let first = offsets[e], length = offsets[e + 1] - first
                                guard length > 0 else { continue }
                                let dhe = dh + e * r * d
                                BLAS.gemm(transposeA: false, transposeB: true, m: r, n: length, k: d, a: dhe, b: px + first * d,
                                          beta: 1, c: dv.baseAddress!, ldc: positions)
                                for o in 0..<r { dvb[o] += laneSum(dhe + o * d, count: d) }
                                // Every row belongs to an example of length > 0, so dX is written whole.
                                BLAS.gemm(transposeA: true, transposeB: false, m: length, n: d, k: r, a: pv, lda: positions,
                                          b: dhe, beta: 0, c: dx.baseAddress! + first * d)
                            }
                        }
                    }
                }
            }
            tape.accumulate(up, gradU)
            tape.accumulate(upBias, gradUBias)
            tape.accumulate(down, gradV)
            tape.accumulate(downBias, gradVBias)
            norm.backward(gradX, on: tape)
            // The residual's share, added to the norm's (which came first, so no copy is made).
            tape.accumulate(input, gradOut)
        }
    }
}
