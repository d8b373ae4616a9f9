// Differentiable point-wise activations (kernels in TensorCore/Kernels/Activations.swift).
import TensorCore

extension Variable {
    /// f applied element-wise.
    public func applying(_ f: Activation) -> Variable {
        let x = value
        let y = x.applying(f)
        let input = handle
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
