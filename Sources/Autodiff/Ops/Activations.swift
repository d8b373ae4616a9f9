// Differentiable point-wise activations (kernels in TensorCore/Kernels/Activations.swift).
import TensorCore

extension Variable {
    /// f applied element-wise.
    public func applying(_ f: Activation) -> Variable {
        let x = value
        let input = handle
        if f == .gelu && tape.needsGradient(input) && x.count > 0 {
            // GELU′(x) computed with GELU(x) and kept instead of x: the backward is then one
            // multiply, not erf and exp again (2% of LST's and the consolidator's CPU time), for
            // the same memory.
            var y = Tensor(uninitialized: x.shape) { _ in }
            let slope = Tensor(uninitialized: x.shape) { ps in
                y.withUnsafeMutableBufferPointer { py in
                    x.withUnsafeBufferPointer { px in
                        ActivationKernel.geluAndSlope(out: py.baseAddress!, slope: ps.baseAddress!, x: px.baseAddress!, count: x.count)
                    }
                }
            }
            return tape.record(y, inputs: [input]) { g, tape in
                withBaseAddresses([g, slope]) { p in
                    let (pg, ps) = (p[0], p[1])
                    tape.accumulate(input) { dx in
                        let d = dx.baseAddress!
                        for i in 0..<dx.count { d[i] += pg[i] * ps[i] }
                    }
                }
            }
        }
        let y = x.applying(f)
        return tape.record(y, inputs: [input]) { g, tape in
            guard g.count > 0 else { return }
            g.withUnsafeBufferPointer { pg in
                x.withUnsafeBufferPointer { px in
                    y.withUnsafeBufferPointer { py in
                        tape.accumulate(input) { dx in
                            ActivationKernel.backward(f, gradX: dx.baseAddress!, gradOut: pg.baseAddress!,
                                                      x: px.baseAddress!, y: py.baseAddress!, count: g.count)
                        }
                    }
                }
            }
        }
    }

    public func gelu() -> Variable { applying(.gelu) }
    public func geluTanh() -> Variable { applying(.geluTanh) }
    public func sigmoid() -> Variable { applying(.sigmoid) }
    public func tanh() -> Variable { applying(.tanh) }
    public func relu() -> Variable { applying(.relu) }
}
