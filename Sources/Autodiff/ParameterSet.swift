// Parameters, gradients and optimiser state as one flat buffer each, with named views. The
// optimiser, zero-grad, gradient clipping and saving are single loops over the flat buffers.
import TensorCore

/// A named collection of trainable tensors stored contiguously.
public final class ParameterSet {
    /// Index of a parameter in its set.
    public struct ID: Hashable, Sendable {
        public let rawValue: Int
    }

    /// One named view into the flat buffers.
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
        /// Whether decoupled weight decay applies (not to biases and norm gains).
        public let decays: Bool
    }

    public private(set) var entries: [Entry] = []
    /// All parameter values, entry after entry.
    public var values: [Float] = []
    /// Gradients with the same layout as `values`.
    public var gradients: [Float] = []
    private var byName: [String: ID] = [:]

    public init() {}

    /// Total number of scalars.
    public var count: Int { values.count }

    /// Adds a parameter initialised to `initial`. Names must be unique.
    @discardableResult
    public func add(_ name: String, _ initial: Tensor, decays: Bool = true) -> ID {
        precondition(byName[name] == nil, "duplicate parameter name \(name)")
        let id = ID(rawValue: entries.count)
        entries.append(Entry(name: name, shape: initial.shape, offset: values.count, count: initial.count, decays: decays))
        values.append(contentsOf: initial.scalars)
        gradients.append(contentsOf: repeatElement(0, count: initial.count))
        byName[name] = id
        return id
    }

    public func id(named name: String) -> ID? { byName[name] }
    /// Every parameter's ID, in insertion order.
    public var ids: [ID] { entries.indices.map { ID(rawValue: $0) } }
    public func entry(_ id: ID) -> Entry { entries[id.rawValue] }

    /// A copy of the parameter's current value.
    public func tensor(_ id: ID) -> Tensor {
        let e = entries[id.rawValue]
        return Tensor(shape: e.shape, scalars: Array(values[e.offset..<(e.offset + e.count)]))
    }

    /// Overwrites a parameter's value (shapes must match).
    public func set(_ id: ID, _ value: Tensor) {
        let e = entries[id.rawValue]
        precondition(value.shape == e.shape, "parameter \(e.name): expected shape \(e.shape), got \(value.shape)")
        values.replaceSubrange(e.offset..<(e.offset + e.count), with: value.scalars)
    }

    /// The parameter's accumulated gradient.
    public func gradient(_ id: ID) -> Tensor {
        let e = entries[id.rawValue]
        return Tensor(shape: e.shape, scalars: Array(gradients[e.offset..<(e.offset + e.count)]))
    }

    /// Adds `g` into the parameter's gradient.
    public func addGradient(_ g: Tensor, to id: ID) {
        addGradient(g, to: id, in: &gradients)
    }

    /// Adds `g` into the parameter's slice of `buffer`, a flat array laid out as `gradients`.
    public func addGradient(_ g: Tensor, to id: ID, in buffer: inout [Float]) {
        let e = entries[id.rawValue]
        precondition(g.count == e.count, "gradient for \(e.name): expected \(e.shape), got \(g.shape)")
        guard e.count > 0 else { return }
        buffer.withUnsafeMutableBufferPointer { dst in
            g.withUnsafeBufferPointer { src in
                // From the slice's own base: indexing by `e.offset + i` kept an overflow check in
                // the loop, which then ran one scalar at a time (2% of UniPT's step).
                let (to, from) = (dst.baseAddress! + e.offset, src.baseAddress!)
                for i in 0..<e.count { to[i] += from[i] }
            }
        }
    }

    /// Sets every gradient to zero.
    public func zeroGradients() {
        gradients.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
}
