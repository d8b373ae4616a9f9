// Differentiable multi-head attention over packed sequences and the grouped linear layer
// (kernels in TensorCore/Kernels/Attention.swift and GroupedLinear.swift).
import TensorCore

extension Variable {
    /// softmax(q·kᵀ/√dh)·v per example and head; self is q [T, heads·dh], keys and values the same
    /// shape. Queries see only their own example's keys, and none whose `keyMask` entry is false.
    public func attention(keys: Variable, values: Variable, heads: Int, segments: Segments, keyMask: [Bool]? = nil) -> Variable {
        let q = value, k = keys.value, v = values.value
        precondition(q.rank == 2 && q.shape == k.shape && q.shape == v.shape && q.shape[0] == segments.totalRows,
                     "attention: q \(q.shape), k \(k.shape), v \(v.shape) for \(segments.totalRows) packed rows")
        precondition(q.shape[1] % heads == 0, "attention: width \(q.shape[1]) is not a multiple of \(heads) heads")
        precondition(keyMask == nil || keyMask!.count == segments.totalRows, "attention: key mask length differs from rows")
        let headSize = q.shape[1] / heads
        var out = Tensor(zeros: q.shape)
        var probabilities = [Float](repeating: 0, count: AttentionKernel.probabilityCount(segments, heads: heads))
        if q.count > 0 {
            q.withUnsafeBufferPointer { pq in
                k.withUnsafeBufferPointer { pk in
                    v.withUnsafeBufferPointer { pv in
                        out.withUnsafeMutableBufferPointer { po in
                            withOptionalArray(keyMask) { mask in
                                AttentionKernel.forward(out: po.baseAddress!, probabilities: &probabilities, q: pq.baseAddress!,
                                                        k: pk.baseAddress!, v: pv.baseAddress!, segments: segments,
                                                        heads: heads, headSize: headSize, keyMask: mask)
                            }
                        }
                    }
                }
            }
        }
        let (query, key, value) = (handle, keys.handle, values.handle)
        return tape.record(out, inputs: [query, key, value]) { g, tape in
            guard g.count > 0 else { return }
            var gradQ = tape.needsGradient(query) ? Tensor(zeros: q.shape) : nil
            var gradK = tape.needsGradient(key) ? Tensor(zeros: k.shape) : nil
            var gradV = tape.needsGradient(value) ? Tensor(zeros: v.shape) : nil
            g.withUnsafeBufferPointer { pg in
                q.withUnsafeBufferPointer { pq in
                    k.withUnsafeBufferPointer { pk in
                        v.withUnsafeBufferPointer { pv in
                            withOptionalMutablePointer(&gradQ) { dq in
                                withOptionalMutablePointer(&gradK) { dk in
                                    withOptionalMutablePointer(&gradV) { dv in
                                        AttentionKernel.backward(gradQ: dq, gradK: dk, gradV: dv, gradOut: pg.baseAddress!,
                                                                 q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!,
                                                                 probabilities: probabilities, segments: segments,
                                                                 heads: heads, headSize: headSize)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if let gradQ { tape.accumulate(query, gradQ) }
            if let gradK { tape.accumulate(key, gradK) }
            if let gradV { tape.accumulate(value, gradV) }
        }
    }

    /// self + s ⊙ (x′·W_gᵀ + bias) with x′ = x permuted, s one scale per row (nil: 1): a grouped
    /// linear added into self, as Consolidator adds a branch, with per-example branch drop as
    /// `rowScale`, beside a frozen linear. One op where a grouped linear, a row scaling and an add
    /// each filled a fresh tensor (8% of a consolidator step went to those passes). Lane-blocked
    /// groups (widths multiples of 8, unpermuted) apply the scales inside their products; other
    /// groups multiply a copy of x′ with its rows scaled, so the weight's gradient needs no scaled
    /// copy of dy either way.
    /// Consuming: when the caller gives up its last handle on self's value (`y = y.adding…`) and
    /// no backward step kept it, the branch is added in place; otherwise into a copy (the copy of
    /// a frozen product's output was 2.7% of a consolidator epoch).
    public consuming func addingGroupedLinear(_ x: Variable, _ weight: Variable, _ bias: Variable?, permutation: [Int]? = nil,
                                              rowScale: [Float]? = nil) -> Variable {
        let (tape, baseHandle) = (self.tape, handle)
        let base = (consume self).value, input = x.value, w = weight.value
        precondition(w.rank == 3 && input.columnCount == w.shape[0] * w.shape[2],
                     "addingGroupedLinear: input \(input.shape) does not match weight \(w.shape) ([G, O, I])")
        let (groups, outPerGroup, inPerGroup) = (w.shape[0], w.shape[1], w.shape[2])
        let (rows, inWidth, outWidth) = (input.rowCount, groups * inPerGroup, groups * outPerGroup)
        precondition(base.shape == Array(input.shape.dropLast()) + [outWidth],
                     "addingGroupedLinear: base \(base.shape) for input \(input.shape) and weight \(w.shape)")
        if let permutation {
            precondition(permutation.count == inWidth && Set(permutation) == Set(0..<inWidth),
                         "addingGroupedLinear: permutation is not a permutation of 0..<\(inWidth)")
        }
        precondition(rowScale == nil || rowScale!.count == rows, "addingGroupedLinear: \(rowScale!.count) row scales for \(rows) rows")
        if let bias { precondition(bias.shape == [outWidth], "addingGroupedLinear: bias \(bias.shape) for weight \(w.shape)") }
        let biasValue = bias?.value
        // Lane-blocked groups apply the row scales inside their products.
        let scalesInKernel = permutation == nil && GroupedLinearKernel.isLaneBlocked(inPerGroup: inPerGroup, outPerGroup: outPerGroup)
        // What the branch multiplies: x permuted and its rows scaled (x itself when neither).
        let source = permutation == nil && (rowScale == nil || scalesInKernel) ? input : Tensor(uninitialized: input.shape) { ps in
            input.withUnsafeBufferPointer { px in
                for r in 0..<rows {
                    let s = rowScale?[r] ?? 1
                    let from = px.baseAddress! + r * inWidth, to = ps.baseAddress! + r * inWidth
                    if let permutation {
                        for c in 0..<inWidth { to[c] = s * from[permutation[c]] }
                    } else {
                        for c in 0..<inWidth { to[c] = s * from[c] }
                    }
                }
            }
        }
        var out = consume base
        if rows > 0 && outWidth > 0 {
            out.withUnsafeMutableBufferPointer { po in
                let y = po.baseAddress!
                if let biasValue {
                    biasValue.withUnsafeBufferPointer { pb in
                        for r in 0..<rows {
                            let s = rowScale?[r] ?? 1, row = y + r * outWidth
                            if s != 0 { for j in 0..<outWidth { row[j] += s * pb[j] } }
                        }
                    }
                }
                if inPerGroup > 0 {
                    source.withUnsafeBufferPointer { ps in
                        w.withUnsafeBufferPointer { pw in
                            withOptionalArray(scalesInKernel ? rowScale : nil) { scales in
                                GroupedLinearKernel.forward(y: y, x: ps.baseAddress!, weight: pw.baseAddress!, bias: nil, permutation: nil,
                                                            permuted: nil, rows: rows, groups: groups, inPerGroup: inPerGroup,
                                                            outPerGroup: outPerGroup, accumulate: true, rowScale: scales)
                            }
                        }
                    }
                }
            }
        }
        let (inputHandle, weightHandle, biasHandle) = (x.handle, weight.handle, bias?.handle)
        let inputs = [baseHandle, inputHandle, weightHandle] + (biasHandle.map { [$0] } ?? [])
        return tape.record(out, inputs: inputs) { g, tape in
            tape.accumulate(baseHandle, g)
            guard rows > 0, outWidth > 0, inPerGroup > 0 else { return }
            if let biasHandle, tape.needsGradient(biasHandle) {
                g.withUnsafeBufferPointer { pg in
                    tape.accumulate(biasHandle) { db in
                        for r in 0..<rows {
                            let s = rowScale?[r] ?? 1, row = pg.baseAddress! + r * outWidth
                            if s != 0 { for j in 0..<outWidth { db[j] += s * row[j] } }
                        }
                    }
                }
            }
            let wantX = tape.needsGradient(inputHandle), wantWeight = tape.needsGradient(weightHandle)
            guard wantX || wantWeight else { return }
            // The gradient of the scaled, permuted source, mapped back to x's columns below.
            let (gradSource, gradW, _) = groupedLinearGradients(g, source: source, weight: w, wantX: wantX, wantWeight: wantWeight,
                                                                wantBias: false, permutation: nil, rowScale: scalesInKernel ? rowScale : nil)
            if let gradW { tape.accumulate(weightHandle, gradW) }
            guard let gradSource else { return }
            if permutation == nil && (rowScale == nil || scalesInKernel) { return tape.accumulate(inputHandle, gradSource) }
            gradSource.withUnsafeBufferPointer { pd in
                tape.accumulate(inputHandle) { dx in
                    for r in 0..<rows {
                        let s = rowScale?[r] ?? 1
                        if s == 0 { continue }
                        let from = pd.baseAddress! + r * inWidth, to = dx.baseAddress! + r * inWidth
                        if let permutation {
                            for c in 0..<inWidth { to[permutation[c]] += s * from[c] }
                        } else {
                            for c in 0..<inWidth { to[c] += s * from[c] }
                        }
                    }
                }
            }
        }
    }

    /// Block-diagonal linear layer: self [..., G·I], weight [G, O, I], bias [G·O]; the input's
    /// channels are first reordered by `permutation` (x′[c] = x[permutation[c]]) when given.
    public func groupedLinear(_ weight: Variable, _ bias: Variable? = nil, permutation: [Int]? = nil) -> Variable {
        let x = value, w = weight.value
        precondition(w.rank == 3 && x.columnCount == w.shape[0] * w.shape[2],
                     "groupedLinear: input \(x.shape) does not match weight \(w.shape) ([G, O, I])")
        let (groups, outPerGroup, inPerGroup) = (w.shape[0], w.shape[1], w.shape[2])
        if let permutation {
            precondition(permutation.count == x.columnCount && Set(permutation) == Set(0..<x.columnCount),
                         "groupedLinear: permutation is not a permutation of 0..<\(x.columnCount)")
        }
        if let bias { precondition(bias.shape == [groups * outPerGroup], "groupedLinear: bias \(bias.shape) for weight \(w.shape)") }
        let rows = x.rowCount
        let biasValue = bias?.value
        var y = Tensor(zeros: Array(x.shape.dropLast()) + [groups * outPerGroup])
        var source = permutation == nil ? x : Tensor(zeros: x.shape)
        if rows > 0 {
            x.withUnsafeBufferPointer { px in
                w.withUnsafeBufferPointer { pw in
                    y.withUnsafeMutableBufferPointer { py in
                        source.withUnsafeMutableBufferPointer { ps in
                            withOptionalPointer(biasValue) { pb in
                                GroupedLinearKernel.forward(y: py.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, bias: pb,
                                                            permutation: permutation, permuted: permutation == nil ? nil : ps.baseAddress!,
                                                            rows: rows, groups: groups, inPerGroup: inPerGroup, outPerGroup: outPerGroup)
                            }
                        }
                    }
                }
            }
        }
        let permutedInput = source
        let (input, weight, bias) = (handle, weight.handle, bias?.handle)
        let inputs = [input, weight] + (bias.map { [$0] } ?? [])
        return tape.record(y, inputs: inputs) { g, tape in
            guard rows > 0 else { return }
            let (gradX, gradW, gradB) = groupedLinearGradients(g, source: permutedInput, weight: w, wantX: tape.needsGradient(input),
                                                               wantWeight: tape.needsGradient(weight),
                                                               wantBias: bias.map { tape.needsGradient($0) } == true,
                                                               permutation: permutation)
            if let gradX { tape.accumulate(input, gradX) }
            if let gradW { tape.accumulate(weight, gradW) }
            if let gradB, let bias { tape.accumulate(bias, gradB) }
        }
    }
}

/// Calls `body` with the array's base address, or nil when there is no array.
func withOptionalArray<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// A grouped linear layer's gradients given dy (`g`), in fresh buffers for those wanted: x's (in
/// x's column order), W's and the bias's. `source` is the permuted input the forward multiplied.
private func groupedLinearGradients(_ g: Tensor, source: Tensor, weight w: Tensor, wantX: Bool, wantWeight: Bool, wantBias: Bool,
                                    permutation: [Int]?, rowScale: [Float]? = nil) -> (x: Tensor?, weight: Tensor?, bias: Tensor?) {
    let (groups, outPerGroup, inPerGroup) = (w.shape[0], w.shape[1], w.shape[2])
    var gradX = wantX ? Tensor(zeros: source.shape) : nil
    var gradW = wantWeight ? Tensor(zeros: w.shape) : nil
    var gradB = wantBias ? Tensor(zeros: [groups * outPerGroup]) : nil
    // An empty product (no channels or no outputs) passes nothing back: zeros.
    guard g.count > 0, source.count > 0, w.count > 0 else { return (gradX, gradW, gradB) }
    var scratch: Tensor? = permutation != nil && wantX ? Tensor(zeros: source.shape) : nil
    withBaseAddresses([g, source, w]) { p in
        withOptionalMutablePointer(&gradX) { dx in
            withOptionalMutablePointer(&gradW) { dw in
                withOptionalMutablePointer(&gradB) { db in
                    withOptionalMutablePointer(&scratch) { sp in
                        withOptionalArray(rowScale) { scales in
                            GroupedLinearKernel.backward(gradX: dx, gradWeight: dw, gradBias: db, gradY: p[0], source: p[1], weight: p[2],
                                                         permutation: permutation, scratch: sp, rows: source.rowCount, groups: groups,
                                                         inPerGroup: inPerGroup, outPerGroup: outPerGroup, rowScale: scales)
                        }
                    }
                }
            }
        }
    }
    return (gradX, gradW, gradB)
}
