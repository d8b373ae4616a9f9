// Headless Chromium for the report tests: screenshots and the parsed DOM of a local page. Each
// run gets its own profile folder and its own process group, is killed as a group when it
// overruns, and the group is killed again after a normal exit, so no renderer or crash handler
// outlives the test.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Chromium {
    let executable: String

    /// Debian installs it as `chromium`; other systems as `chromium-browser` or `google-chrome`.
    static func find() -> Chromium? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            for folder in path.split(separator: ":") {
                let candidate = "\(folder)/\(name)"
                if FileManager.default.isExecutableFile(atPath: candidate) { return Chromium(executable: candidate) }
            }
        }
        return nil
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs Chromium headless on `page` with `extra` flags; returns its stdout. Throws on a
    /// non-zero exit or after `timeout` seconds (having killed every process it started).
    func run(page: URL, extra: [String], timeout: Double = 90) throws -> String {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let stdoutPath = scratch.appendingPathComponent("stdout").path
        let stderrPath = scratch.appendingPathComponent("stderr").path
        let arguments = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-crash-reporter",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                         "--force-device-scale-factor=1", "--user-data-dir=\(scratch.appendingPathComponent("profile").path)"]
            + extra + [page.absoluteString]

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A new process group led by Chromium, so one kill(-pid) reaches all of its children.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)

        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = scratch.path  // keeps ~/.config and caches out of the real home
        let cArguments = arguments.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArguments + cEnvironment).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, cArguments, cEnvironment)
        guard spawned == 0 else { throw Failure(description: "cannot start \(executable): \(String(cString: strerror(spawned)))") }
        defer { kill(-pid, SIGKILL) }

        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { break }
            if done < 0 && errno != EINTR { throw Failure(description: "waitpid: \(String(cString: strerror(errno)))") }
            if Date() > deadline {
                kill(-pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw Failure(description: "\(executable) did not finish within \(Int(timeout)) s; killed it")
            }
            usleep(50_000)
        }
        let output = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        guard exited && code == 0 else {
            let errors = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            throw Failure(description: "\(executable) failed (\(exited ? "exit \(code)" : "signal \(status & 0x7F)")): \(errors.suffix(2000))")
        }
        return output
    }

    /// Renders `page` to a PNG of the given window size.
    func screenshot(page: URL, to png: URL, width: Int, height: Int) throws {
        _ = try run(page: page, extra: ["--screenshot=\(png.path)", "--window-size=\(width),\(height)"])
        guard FileManager.default.fileExists(atPath: png.path) else {
            throw Failure(description: "\(executable) exited without writing \(png.path)")
        }
    }

    /// The DOM after Chromium parsed the page, serialised.
    func dumpDOM(page: URL) throws -> String {
        try run(page: page, extra: ["--dump-dom"])
    }
}
