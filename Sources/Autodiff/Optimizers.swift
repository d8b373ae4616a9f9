// Optimisers as single loops over a ParameterSet's flat buffers: AdamW (decoupled weight decay,
// none on biases and norm gains) and SGD with momentum, with PyTorch's update rules so settings
// from papers carry over. Plus global-norm gradient clipping.

/// Something that updates a parameter set from its gradients.
public protocol Optimizer {
    /// One update with the given learning rate; gradients are read, not cleared.
    mutating func step(_ parameters: ParameterSet, learningRate: Float)
}

/// AdamW (Loshchilov & Hutter), as torch.optim.AdamW: p ← p − lr·wd·p (decaying entries only),
/// then p ← p − lr · m̂ / (√v̂ + eps) with bias-corrected moments.
public struct AdamW: Optimizer {
    public let beta1: Float
    public let beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    public private(set) var stepCount = 0
    /// beta1^stepCount and beta2^stepCount, one multiplication per step: the same products, in
    /// the same order, as raising to the step's power each time, which cost O(steps) per step.
    private var beta1Power: Double = 1
    private var beta2Power: Double = 1
    private var m: [Float] = []
    private var v: [Float] = []
    private var decayMask: [Float] = []

    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    public mutating func step(_ parameters: ParameterSet, learningRate: Float) {
        guard parameters.count > 0 else { return }
        if m.count != parameters.count {
            m = [Float](repeating: 0, count: parameters.count)
            v = m
            decayMask = parameters.decayMask()
        }
        stepCount += 1
        beta1Power *= Double(beta1)
        beta2Power *= Double(beta2)
        // Bias corrections in Double, as PyTorch computes them (Python floats).
        let correction1 = 1 - beta1Power
        let correction2 = 1 - beta2Power
        let stepSize = Float(Double(learningRate) / correction1)
        let sqrtCorrection2 = Float(correction2.squareRoot())
        let decay = learningRate * weightDecay
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        parameters.values.withUnsafeMutableBufferPointer { p in
            parameters.gradients.withUnsafeBufferPointer { g in
                m.withUnsafeMutableBufferPointer { m in
                    v.withUnsafeMutableBufferPointer { v in
                        decayMask.withUnsafeBufferPointer { mask in
                            let (pp, gp, mp, vp, kp) = (p.baseAddress!, g.baseAddress!, m.baseAddress!, v.baseAddress!, mask.baseAddress!)
                            forEachChunk(of: p.count) { chunk in
                                // Eight lanes at a time (the scalar loop did not vectorise: 6% of
                                // UniPT's step), then the tail; each lane does the scalar
                                // operations in the same order, so the result is the same to the bit.
                                typealias Lanes = SIMD8<Float>
                                func load(_ base: UnsafePointer<Float>, _ i: Int) -> Lanes { UnsafeRawPointer(base + i).loadUnaligned(as: Lanes.self) }
                                func store(_ x: Lanes, _ base: UnsafeMutablePointer<Float>, _ i: Int) {
                                    UnsafeMutableRawPointer(base + i).storeBytes(of: x, as: Lanes.self)
                                }
                                var i = chunk.lowerBound
                                while i + Lanes.scalarCount <= chunk.upperBound {
                                    let gi = load(gp, i)
                                    var pi = load(pp, i), mi = load(mp, i), vi = load(vp, i)
                                    pi *= 1 - decay * load(kp, i)
                                    mi += (1 - b1) * (gi - mi)
                                    vi = b2 * vi + (1 - b2) * gi * gi
                                    pi -= stepSize * mi / (vi.squareRoot() / sqrtCorrection2 + eps)
                                    store(pi, pp, i); store(mi, mp, i); store(vi, vp, i)
                                    i += Lanes.scalarCount
                                }
                                for i in i..<chunk.upperBound {
                                    // The same operation order as PyTorch's, so results agree to rounding.
                                    pp[i] *= 1 - decay * kp[i]
                                    mp[i] += (1 - b1) * (gp[i] - mp[i])
                                    vp[i] = b2 * vp[i] + (1 - b2) * gp[i] * gp[i]
                                    pp[i] -= stepSize * mp[i] / (vp[i].squareRoot() / sqrtCorrection2 + eps)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// SGD with momentum, as torch.optim.SGD: g ← g + wd·p (decaying entries); b ← μ·b + g
/// (b = g on the first step); p ← p − lr·(nesterov ? g + μ·b : b).
public struct SGD: Optimizer {
    public var momentum: Float
    public var nesterov: Bool
    public var weightDecay: Float
    private var buffer: [Float] = []
    private var decayMask: [Float] = []
    private var started = false

    public init(momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0) {
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
    }

    public mutating func step(_ parameters: ParameterSet, learningRate: Float) {
        guard parameters.count > 0 else { return }
        if buffer.count != parameters.count {
            buffer = [Float](repeating: 0, count: parameters.count)
            decayMask = parameters.decayMask()
            started = false
        }
        let (mu, wd, first, nesterov) = (momentum, weightDecay, !started, nesterov)
        started = true
        parameters.values.withUnsafeMutableBufferPointer { p in
            parameters.gradients.withUnsafeBufferPointer { g in
                buffer.withUnsafeMutableBufferPointer { b in
                    decayMask.withUnsafeBufferPointer { mask in
                        let (pp, gp, bp, kp) = (p.baseAddress!, g.baseAddress!, b.baseAddress!, mask.baseAddress!)
                        forEachChunk(of: p.count) { chunk in
                            for i in chunk {
                                let d = gp[i] + wd * kp[i] * pp[i]
                                bp[i] = first ? d : mu * bp[i] + d
                                pp[i] -= learningRate * (nesterov ? d + mu * bp[i] : bp[i])
                            }
                        }
                    }
                }
            }
        }
    }
}

extension ParameterSet {
    /// 1 for every scalar of a decaying entry, 0 otherwise.
    func decayMask() -> [Float] {
        var mask = [Float](repeating: 0, count: count)
        for e in entries where e.decays {
            for i in e.offset..<(e.offset + e.count) { mask[i] = 1 }
        }
        return mask
    }

    /// Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before.
    @discardableResult
    public func clipGradientNorm(_ maxNorm: Float) -> Float {
        guard count > 0 else { return 0 }
        let chunks = (count + parameterChunk - 1) / parameterChunk
        var partial = [Double](repeating: 0, count: chunks)
        gradients.withUnsafeMutableBufferPointer { g in
            partial.withUnsafeMutableBufferPointer { partial in
                let (gp, sums) = (g.baseAddress!, partial.baseAddress!)
                forEachChunk(of: g.count) { chunk in
                    // Four sums in Double, so the adds are not one chain each waiting on the last.
                    var lanes = SIMD4<Double>()
                    var i = chunk.lowerBound
                    while i + 4 <= chunk.upperBound {
                        let x = SIMD4<Double>(Double(gp[i]), Double(gp[i + 1]), Double(gp[i + 2]), Double(gp[i + 3]))
                        lanes += x * x
                        i += 4
                    }
                    var sum = lanes.sum()
                    for i in i..<chunk.upperBound { sum += Double(gp[i]) * Double(gp[i]) }
                    sums[chunk.lowerBound / parameterChunk] = sum
                }
            }
        }
        let norm = Float(partial.reduce(0, +).squareRoot())
        if norm > maxNorm {
            let scale = maxNorm / (norm + 1e-6)
            gradients.withUnsafeMutableBufferPointer { g in
                let gp = g.baseAddress!
                forEachChunk(of: g.count) { chunk in for i in chunk { gp[i] *= scale } }
            }
        }
        return norm
    }
}

