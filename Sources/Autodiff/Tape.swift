// The reverse-mode autodiff tape. Nodes live in arrays by index, appended in creation order, which
// is already a topological order: backward walks the indices downwards. A node stores its shape,
// whether it needs a gradient, and a closure that turns its output gradient into its inputs'
// gradients (`+=`, never `=`). Deliberately small: no lazy graph, no fusion, no higher derivatives.
//
// A node's value lives in its Variable, not on the tape: the tape keeps only what the backward
// steps captured. A value no step needs (a sum's output, say) is freed as soon as the forward
// code drops the last Variable holding it, so a step's peak is what its backward needs, not
// every intermediate it computed.
import TensorCore

/// A handle to a node on a tape with the node's forward value. Cheap to copy; valid until the
/// tape is reset.
public struct Variable {
    public let tape: Tape
    public let index: Int
    private let storage: Tensor?

    init(tape: Tape, index: Int, value: Tensor?) {
        self.tape = tape
        self.index = index
        storage = value
    }

    /// The node's forward value.
    public var value: Tensor {
        guard let storage else { preconditionFailure("the value of node \(index) was read through a handle") }
        return storage
    }

    public var shape: [Int] { tape.shapes[index] }
    /// A leaf's accumulated gradient after `backward`, or nil when no gradient reached it (an op's
    /// gradient is dropped once `backward` has passed it on to the op's inputs).
    public var gradient: Tensor? { tape.gradients[index] }

    /// The node without its value or its tape: what a backward step captures to add into the
    /// node's gradient, so that the step keeps alive only the tensors it captures by name. The
    /// step is handed its tape when it runs; a handle holding the tape would make every tape with
    /// steps a reference cycle, alive after its owner unless emptied by hand.
    public var handle: Node { Node(index: index, tape: ObjectIdentifier(tape)) }
}

/// A node of a tape by index, as backward steps refer to their inputs.
public struct Node: Sendable {
    public let index: Int
    /// The tape's identity, for checks only (it does not keep the tape alive).
    let tape: ObjectIdentifier
}

/// Records operations and runs them backwards.
public final class Tape {
    /// Shapes by node index.
    public private(set) var shapes: [[Int]] = []
    /// Gradients by node index; nil until something flows into the node.
    public private(set) var gradients: [Tensor?] = []
    private var needsGradient: [Bool] = []
    private var backwardSteps: [((Tensor, Tape) -> Void)?] = []
    /// Parameter leaves: node index → (set, parameter), flushed into the set's gradient buffer.
    private var parameterLeaves: [(node: Int, set: ParameterSet, id: ParameterSet.ID)] = []
    /// Whether ops behave as in training (dropout active).
    public var isTraining: Bool
    /// The generator for stochastic ops (dropout); seeded by the caller.
    public var rng: SeededGenerator

    public init(training: Bool = true, rng: SeededGenerator = SeededGenerator(seed: 0)) {
        self.isTraining = training
        self.rng = rng
    }

    /// Number of nodes recorded so far.
    public var count: Int { shapes.count }

    /// Forgets every node (keeps the arrays' capacity for the next step).
    public func reset() {
        shapes.removeAll(keepingCapacity: true)
        gradients.removeAll(keepingCapacity: true)
        needsGradient.removeAll(keepingCapacity: true)
        backwardSteps.removeAll(keepingCapacity: true)
        parameterLeaves.removeAll(keepingCapacity: true)
    }

    // MARK: Leaves

    /// A leaf that receives no gradient (data, labels, masks).
    public func constant(_ value: Tensor) -> Variable {
        append(value, needsGradient: false, backward: nil)
    }

    /// A leaf whose gradient is kept in `gradients` after `backward` (for tests and inspection).
    public func leaf(_ value: Tensor) -> Variable {
        append(value, needsGradient: true, backward: nil)
    }

    /// A leaf bound to a parameter: its value is copied from the set, and `backward` adds its
    /// gradient into the set's gradient buffer.
    public func parameter(_ set: ParameterSet, _ id: ParameterSet.ID) -> Variable {
        let v = append(set.tensor(id), needsGradient: true, backward: nil)
        parameterLeaves.append((v.index, set, id))
        return v
    }

    // MARK: Recording

    /// Records an op's output. `backward` receives the output gradient and must add into the
    /// inputs' gradients with `accumulate`; it is dropped when no input needs a gradient. It
    /// should capture the inputs' `handle`s and only the tensors it reads: whatever it captures
    /// stays alive until it has run (with `releasing`) or the tape is reset.
    public func record(
        _ value: Tensor, inputs: [Node], backward: @escaping (_ outputGradient: Tensor, _ tape: Tape) -> Void
    ) -> Variable {
        for input in inputs {
            precondition(input.tape == ObjectIdentifier(self), "variable from another tape")
        }
        let needs = inputs.contains { needsGradient[$0.index] }
        return append(value, needsGradient: needs, backward: needs ? backward : nil)
    }

    private func append(_ value: Tensor, needsGradient needs: Bool, backward: ((Tensor, Tape) -> Void)?) -> Variable {
        shapes.append(value.shape)
        gradients.append(nil)
        needsGradient.append(needs)
        backwardSteps.append(backward)
        return Variable(tape: self, index: shapes.count - 1, value: value)
    }

    /// Whether gradients are wanted for this node.
    public func needsGradient(_ v: Node) -> Bool { needsGradient[v.index] }

    /// Adds into `v`'s gradient buffer (created as zeros on first use) through `body`, which must
    /// use `+=`. Does nothing when `v` needs no gradient.
    public func accumulate(_ v: Node, _ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        guard needsGradient[v.index] else { return }
        if gradients[v.index] == nil {
            gradients[v.index] = Tensor(zeros: shapes[v.index])
        }
        gradients[v.index]!.withUnsafeMutableBufferPointer { body($0) }
    }

    /// Adds a whole tensor into `v`'s gradient (the first one is kept as it is: no zeroed buffer
    /// to add it into).
    public func accumulate(_ v: Node, _ gradient: Tensor) {
        let shape = shapes[v.index]
        precondition(gradient.count == shape.reduce(1, *), "gradient \(gradient.shape) for node of shape \(shape)")
        guard needsGradient[v.index] else { return }
        if gradients[v.index] == nil {
            gradients[v.index] = gradient.shape == shape ? gradient : gradient.reshaped(shape)
            return
        }
        gradient.withUnsafeBufferPointer { g in
            accumulate(v) { dst in
                for i in 0..<dst.count { dst[i] += g[i] }
            }
        }
    }

    // MARK: Backward

    /// Backpropagates from a one-element `output` (seed 1) through every node recorded before it,
    /// then adds parameter gradients into their sets. Gradients from an earlier call are cleared.
    ///
    /// With `releasing`, each op's backward step, with the tensors it captured, is dropped as soon
    /// as it ran (the tape cannot run backward again before `reset`): the walk downwards then
    /// frees the forward's tensors as fast as it makes gradients, so a step's peak is its
    /// forward, not its forward and all its gradients.
    public func backward(from output: Variable, releasing: Bool = false) {
        propagate(from: output, releasing: releasing)
        for leaf in parameterLeaves {
            if let g = gradients[leaf.node] { leaf.set.addGradient(g, to: leaf.id) }
        }
    }

    /// `backward`, but the parameter gradients are written into `buffer`, laid out as
    /// `set.gradients`, instead of added into the set: tapes running at once on parts of one
    /// batch each keep their own buffer, and the caller sums them. A parameter no gradient
    /// reaches gets zeros; the buffer is not zeroed whole first (a pass over every parameter per
    /// part and step). Every parameter leaf must belong to `set`.
    public func backward(from output: Variable, into buffer: inout [Float], of set: ParameterSet, releasing: Bool = false) {
        precondition(buffer.count == set.count, "gradient buffer of \(buffer.count) for a set of \(set.count)")
        propagate(from: output, releasing: releasing)
        var written = [Bool](repeating: false, count: set.entries.count)
        for leaf in parameterLeaves {
            precondition(leaf.set === set, "parameter leaf from another set")
            if let g = gradients[leaf.node] {
                set.addGradient(g, to: leaf.id, in: &buffer, overwrite: !written[leaf.id.rawValue])
                written[leaf.id.rawValue] = true
            }
        }
        buffer.withUnsafeMutableBufferPointer { b in
            for (e, done) in zip(set.entries, written) where !done && e.count > 0 {
                (b.baseAddress! + e.offset).update(repeating: 0, count: e.count)
            }
        }
    }

    private func propagate(from output: Variable, releasing: Bool) {
        precondition(output.shape.reduce(1, *) == 1, "backward from a non-scalar of shape \(output.shape)")
        for i in gradients.indices { gradients[i] = nil }
        guard needsGradient[output.index] else { return }
        gradients[output.index] = Tensor(repeating: 1, shape: shapes[output.index])
        for i in stride(from: output.index, through: 0, by: -1) {
            // Leaves have no step and keep their gradient; an op's gradient has reached its inputs
            // once its step ran.
            guard let step = backwardSteps[i] else { continue }
            if let g = gradients[i] {
                gradients[i] = nil
                step(g, self)
            }
            if releasing { backwardSteps[i] = nil }
        }
    }
}
