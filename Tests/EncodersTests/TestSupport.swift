import Encoders
import Foundation

let encoderFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// The real all-MiniLM-L6-v2 folder (installed by `make setup`), or nil with the reason.
func miniLMFolder() -> URL? {
    try? BackboneFolder.resolve("minilm")
}
