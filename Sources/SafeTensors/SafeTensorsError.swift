// Errors from reading or writing safetensors files. Each names the file, the tensor when there is
// one, and the fault in plain words, so a user can tell a truncated download from a wrong model.

/// A malformed or unreadable safetensors file, or a tensor that is not what the caller expected.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let tensor: String?
    public let fault: String

    public init(path: String, tensor: String? = nil, _ fault: String) {
        self.path = path
        self.tensor = tensor
        self.fault = fault
    }

    public var description: String {
        if let tensor { return "\(path): tensor \"\(tensor)\": \(fault)" }
        return "\(path): \(fault)"
    }
}
