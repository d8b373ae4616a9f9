// Foundation's JSONDecoder reports a number its field cannot hold (a seed of -1, a count of
// 1155.5, a learning rate of 1e39) as data that is not valid JSON, and names no key. A head's
// config or a results line holds a few dozen numbers, so the one at fault is found by decoding
// again with each number in turn set to 0, on the error path only.
import Foundation

/// Where the number that `decodes` refuses lies in `data`, and its text: nil when `data` is not
/// JSON, or no one number set to 0 makes it decode.
public func refusedNumber(in data: Data, decodes: (Data) -> Bool) -> (path: String, value: String)? {
    guard let root = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else { return nil }
    for (path, number) in numberLeaves(root, at: []) {
        guard let changed = try? JSONSerialization.data(withJSONObject: replacing(root, at: path[...], with: 0), options: [.fragmentsAllowed]),
              decodes(changed) else { continue }
        let text = path.reduce(into: "") { text, step in
            switch step {
            case .key(let key): text += text.isEmpty ? key : "." + key
            case .index(let i): text += "[\(i)]"
            }
        }
        return (text, number.description)
    }
    return nil
}

private enum JSONStep {
    case key(String)
    case index(Int)
}

/// Every number in a parsed JSON value with its path, in document order where JSON keeps one
/// (an object's keys come sorted).
private func numberLeaves(_ value: Any, at path: [JSONStep]) -> [([JSONStep], NSNumber)] {
    switch value {
    case let object as [String: Any]:
        return object.keys.sorted().flatMap { numberLeaves(object[$0]!, at: path + [.key($0)]) }
    case let array as [Any]:
        return array.enumerated().flatMap { numberLeaves($1, at: path + [.index($0)]) }
    case let number as NSNumber:
        return [(path, number)]
    default:
        return []
    }
}

private func replacing(_ value: Any, at path: ArraySlice<JSONStep>, with new: Any) -> Any {
    guard let step = path.first else { return new }
    switch (step, value) {
    case (.key(let key), var object as [String: Any]):
        object[key] = replacing(object[key]!, at: path.dropFirst(), with: new)
        return object
    case (.index(let i), var array as [Any]):
        array[i] = replacing(array[i], at: path.dropFirst(), with: new)
        return array
    default:
        return value
    }
}
