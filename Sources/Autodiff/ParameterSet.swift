// Parameters, gradients and optimiser state as one flat buffer each, with named views. The
// optimiser, zero-grad, gradient clipping and saving are single loops over the flat buffers.
import Foundation
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
    /// All parameter values, entry after entry. Any change, in place or whole (the optimisers
    /// write here), retires the tensors `tensor(_:)` has handed out.
    public var values: [Float] = [] { didSet { generation &+= 1 } }
    /// Gradients with the same layout as `values`.
    public var gradients: [Float] = []
    private var byName: [String: ID] = [:]
    /// Counts changes of `values`; a didSet that does not read the old value lets in-place
    /// mutation stay in place.
    private var generation = 0
    /// `tensor(_:)`'s copies of the current values, made on first request and then shared: every
    /// part's tape asked for a fresh copy of every parameter on every step (2% of LST's). The
    /// parts of a step ask from several threads at once.
    private var snapshots: [Tensor?] = []
    private var snapshotGeneration = -1
    private let snapshotLock = NSLock()

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

    /// The parameter's current value (a copy: later changes of `values` do not reach it).
    public func tensor(_ id: ID) -> Tensor {
        snapshotLock.lock()
        defer { snapshotLock.unlock() }
        if snapshotGeneration != generation || snapshots.count != entries.count {
            snapshots = Array(repeating: nil, count: entries.count)
            snapshotGeneration = generation
        }
        if let t = snapshots[id.rawValue] { return t }
        let e = entries[id.rawValue]
        let t = Tensor(shape: e.shape, scalars: Array(values[e.offset..<(e.offset + e.count)]))
        snapshots[id.rawValue] = t
        return t
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

    /// Adds `g` into the parameter's slice of `buffer`, a flat array laid out as `gradients`, or
    /// with `overwrite` writes it there.
    public func addGradient(_ g: Tensor, to id: ID, in buffer: inout [Float], overwrite: Bool = false) {
        let e = entries[id.rawValue]
        precondition(g.count == e.count, "gradient for \(e.name): expected \(e.shape), got \(g.shape)")
        guard e.count > 0 else { return }
        buffer.withUnsafeMutableBufferPointer { dst in
            g.withUnsafeBufferPointer { src in
                // From the slice's own base: indexing by `e.offset + i` kept an overflow check in
                // the loop, which then ran one scalar at a time (2% of UniPT's step).
                let (to, from) = (dst.baseAddress! + e.offset, src.baseAddress!)
                if overwrite {
                    to.update(from: from, count: e.count)
                } else {
                    for i in 0..<e.count { to[i] += from[i] }
                }
            }
        }
    }

    /// Sets every gradient to zero.
    public func zeroGradients() {
        gradients.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
}
