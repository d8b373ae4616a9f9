// Parameter initialisers drawn from a seeded generator, so one seed gives one model.
import TensorCore

public enum Initializer {
    /// PyTorch's nn.Linear default for a weight [out, in]: kaiming-uniform with a = √5, which is
    /// U(−1/√in, 1/√in); the same bound serves the bias.
    public static func linearWeight(out: Int, in inputs: Int, using rng: inout SeededGenerator) -> Tensor {
        let bound = 1 / Float(max(inputs, 1)).squareRoot()
        return Tensor.randomUniform([out, inputs], low: -bound, high: bound, using: &rng)
    }

    /// PyTorch's nn.Linear default bias: U(−1/√in, 1/√in).
    public static func linearBias(out: Int, in inputs: Int, using rng: inout SeededGenerator) -> Tensor {
        let bound = 1 / Float(max(inputs, 1)).squareRoot()
        return Tensor.randomUniform([out], low: -bound, high: bound, using: &rng)
    }

    /// Xavier/Glorot uniform: U(±√(6/(fan_in + fan_out))).
    public static func xavierUniform(_ shape: [Int], fanIn: Int, fanOut: Int, using rng: inout SeededGenerator) -> Tensor {
        let bound = (6 / Float(fanIn + fanOut)).squareRoot()
        return Tensor.randomUniform(shape, low: -bound, high: bound, using: &rng)
    }

    /// N(0, std²).
    public static func normal(_ shape: [Int], std: Float, using rng: inout SeededGenerator) -> Tensor {
        Tensor.randomNormal(shape, std: std, using: &rng)
    }
}
