// Temporary folders of the CLI tests: a test removes what it makes with `defer`, once its child
// processes have exited; fixtures built once and shared across suites are removed at exit.
import Foundation

func removeFolder(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Removes `path` when the test process exits: for a fixture built once whose last user is not
/// known (several suites, in any order).
func removeAtExit(_ path: String) {
    ExitRemovals.shared.add(path)
}

private final class ExitRemovals: @unchecked Sendable {
    static let shared = ExitRemovals()
    private let lock = NSLock()
    private var paths: [String] = []

    private init() {
        atexit { ExitRemovals.shared.removeAll() }
    }

    func add(_ path: String) { lock.withLock { paths.append(path) } }

    func removeAll() {
        for path in lock.withLock({ paths }) { removeFolder(path) }
    }
}
