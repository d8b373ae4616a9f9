// A real single-node Slurm on localhost for integration tests: munged, slurmctld and slurmd from
// Debian's `munge` and `slurm-wlm`, started as root in the foreground (so this process owns their
// PIDs) with a generated slurm.conf, their own key, socket, state, spool and logs in a temporary
// folder, and free ports. Not a fake: jobs go through sbatch, the controller and slurmd.
// Recipe: ../shared/docs/slurm-local.md. Linux, as root; anything else is `Unavailable`.
import Foundation

final class LocalSlurm {
    /// Slurm cannot run here; the reason says why (with the daemons' log tails when they failed).
    struct Unavailable: Error, CustomStringConvertible {
        let description: String
    }

    /// A submitted job that could not finish (the node drained, or it ran past its time).
    struct JobFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// What `submit` returns: sbatch's exit status (with --wait: the highest of the job's tasks),
    /// the job id, and each task's output file by name (job-ID_TASK.out).
    struct JobResult {
        let status: Int32
        let jobID: String
        let outputs: [String: String]
        let sbatchOutput: String

        var allOutput: String { outputs.keys.sorted().map { "--- \($0)\n\(outputs[$0]!)" }.joined(separator: "\n") }
    }

    let folder: URL
    let node: String
    /// The environment for Slurm's client commands (SLURM_CONF set); jobs inherit it.
    private(set) var environment: [String: String]
    private var daemons: [(name: String, process: Daemon)] = []
    private var submitted = 0

    static let daemonPaths = ["munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"]
    static let clients = ["sbatch", "sinfo", "squeue", "scancel"]

    /// Starts munged, slurmctld and slurmd and waits (up to `timeout` seconds) until the node is idle.
    /// Throws `Unavailable` when not root, when the packages are missing, or when the daemons do not
    /// come up; whatever was started is stopped again first.
    static func start(timeout: TimeInterval = 30) throws -> LocalSlurm {
        guard getuid() == 0 else { throw Unavailable(description: "not root: slurmctld and slurmd are started as root (SlurmUser=root)") }
        let missing = daemonPaths.values.filter { !FileManager.default.isExecutableFile(atPath: $0) }
            + clients.filter { findExecutable($0) == nil }
        guard missing.isEmpty else {
            throw Unavailable(description: "not installed: \(missing.joined(separator: ", ")) (apt-get install slurm-wlm munge; `make setup` does)")
        }
        let slurm = try LocalSlurm()
        do {
            try slurm.launch(timeout: timeout)
        } catch {
            let logs = slurm.logTails()
            slurm.stop()
            throw Unavailable(description: "\(error)\n\(logs)")
        }
        return slurm
    }

    private init() throws {
        // Short: the munge socket path must fit in a sockaddr_un (108 bytes).
        folder = URL(fileURLWithPath: "/tmp/sidecar-slurm-\(UUID().uuidString.prefix(8))")
        do {
            for sub in ["munge", "key", "state", "spool", "log", "jobs"] {
                try FileManager.default.createDirectory(at: folder.appendingPathComponent(sub), withIntermediateDirectories: true)
            }
            // munged refuses a key others can read, and a socket folder others cannot enter.
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: folder.appendingPathComponent("key").path)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.appendingPathComponent("munge").path)
            var key = [UInt8](repeating: 0, count: 1024)
            var generator = SystemRandomNumberGenerator()
            for i in key.indices { key[i] = UInt8.random(in: 0...255, using: &generator) }
            let keyFile = folder.appendingPathComponent("key/munge.key")
            try Data(key).write(to: keyFile)
            try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: keyFile.path)

            var name = [CChar](repeating: 0, count: 256)
            gethostname(&name, name.count)
            // slurmctld checks SlurmctldHost against its own short host name.
            let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            node = host.split(separator: ".").first.map(String.init) ?? "localhost"
            let ports = try Self.freePorts(2)
            let conf = """
                ClusterName=sidecartest
                SlurmctldHost=\(node)(127.0.0.1)
                SlurmctldPort=\(ports[0])
                SlurmdPort=\(ports[1])
                AuthType=auth/munge
                CredType=cred/munge
                AuthInfo=socket=\(folder.path)/munge/munge.socket
                # No cgroups (containers and CI have no usable cgroup tree): plain process tracking.
                ProctrackType=proctrack/linuxproc
                TaskPlugin=task/none
                JobAcctGatherType=jobacct_gather/none
                AccountingStorageType=accounting_storage/none
                MpiDefault=none
                SlurmUser=root
                SlurmdUser=root
                StateSaveLocation=\(folder.path)/state
                SlurmdSpoolDir=\(folder.path)/spool
                SlurmctldPidFile=\(folder.path)/slurmctld.pid
                SlurmdPidFile=\(folder.path)/slurmd.pid
                SlurmctldLogFile=\(folder.path)/log/slurmctld.log
                SlurmdLogFile=\(folder.path)/log/slurmd.log
                SelectType=select/cons_tres
                SelectTypeParameters=CR_Core
                ReturnToService=2
                NodeName=\(node) NodeAddr=127.0.0.1 CPUs=\(ProcessInfo.processInfo.activeProcessorCount) State=UNKNOWN
                PartitionName=debug Nodes=\(node) Default=YES MaxTime=INFINITE State=UP

                """
            try conf.write(to: folder.appendingPathComponent("slurm.conf"), atomically: true, encoding: .utf8)
            environment = ProcessInfo.processInfo.environment
            environment["SLURM_CONF"] = folder.appendingPathComponent("slurm.conf").path
            // A test run inside a Slurm job must not hand its own job's variables to sbatch.
            for name in environment.keys where name.hasPrefix("SLURM_") && name != "SLURM_CONF" { environment[name] = nil }
        } catch {
            // Not started, so no stop() or deinit: the folder goes here.
            try? FileManager.default.removeItem(at: folder)
            throw error
        }
    }

    deinit { stop() }

    private func launch(timeout: TimeInterval) throws {
        let munge = folder.appendingPathComponent("munge").path
        try daemon("munged", ["-F", "--force", "--socket=\(munge)/munge.socket", "--key-file=\(folder.path)/key/munge.key",
                              "--pid-file=\(munge)/munged.pid", "--seed-file=\(munge)/munged.seed",
                              "--log-file=\(folder.path)/log/munged.log"])
        try waitFor("munged's socket", timeout: timeout) { FileManager.default.fileExists(atPath: "\(munge)/munge.socket") }
        let conf = folder.appendingPathComponent("slurm.conf").path
        try daemon("slurmctld", ["-D", "-f", conf])
        try daemon("slurmd", ["-D", "-f", conf, "-N", node])
        var state = ""
        try waitFor("the node to be idle in sinfo", timeout: timeout, detail: { "sinfo says: \(state)" }) {
            state = self.client("sinfo", ["-h", "-N", "-o", "%T %E"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
            return state.hasPrefix("idle")
        }
    }

    private func daemon(_ name: String, _ arguments: [String]) throws {
        let log = folder.appendingPathComponent("log/\(name).out").path
        // Through setpriv --pdeathsig, a test process killed outright (a timeout) takes its daemons
        // with it; XCTest runs tests on the main thread, whose end is the process's.
        let path = Self.daemonPaths[name]!
        let daemon = if let setpriv = Self.findExecutable("setpriv") {
            try Daemon(path: setpriv.path, arguments: ["--pdeathsig", "TERM", path] + arguments, environment: environment, log: log)
        } else {
            try Daemon(path: path, arguments: arguments, environment: environment, log: log)
        }
        daemons.append((name, daemon))
    }

    private func waitFor(_ what: String, timeout: TimeInterval, detail: () -> String = { "" }, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let dead = daemons.first(where: { !$0.process.isRunning }) {
                throw Unavailable(description: "\(dead.name) exited (\(dead.process.exit ?? "")) while waiting for \(what)")
            }
            if condition() { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw Unavailable(description: "timed out after \(Int(timeout)) s waiting for \(what). \(detail())")
    }

    /// Writes `script` (a batch script, #SBATCH lines allowed) and submits it with
    /// `sbatch --wait` plus `arguments` (e.g. ["--array=0-2"]); returns when every task has ended,
    /// or cancels the job after `timeout` seconds.
    func submit(script: String, arguments: [String] = [], timeout: TimeInterval = 300) throws -> JobResult {
        submitted += 1
        let jobs = folder.appendingPathComponent("jobs")
        let name = "sidecar-test-\(submitted)"
        let file = jobs.appendingPathComponent("\(name).sh")
        try script.write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
        let process = Process()
        process.executableURL = Self.findExecutable("sbatch")
        // --parsable prints the job id alone; the time limit (minutes) keeps a stuck task from living on.
        process.arguments = ["--wait", "--parsable", "--job-name=\(name)", "--time=10", "--output=\(jobs.path)/job-%A_%a.out",
                             "--chdir=\(jobs.path)"] + arguments + [file.path]
        process.environment = environment
        let output = folder.appendingPathComponent("jobs/\(name).sbatch")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var lastCheck = Date(), nodeState = ""
        while process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            // A node that drains (a task could not even start) never runs the rest: fail now.
            if Date().timeIntervalSince(lastCheck) > 1 {
                lastCheck = Date()
                nodeState = client("sinfo", ["-h", "-N", "-o", "%T %E"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
                if ["drain", "down", "fail"].contains(where: { nodeState.hasPrefix($0) }) { break }
            }
        }
        if process.isRunning {
            client("scancel", ["--name=\(name)"])
            process.terminate()
            process.waitUntilExit()
            throw JobFailure(description: "job \(name) did not finish (node: \(nodeState)); cancelled after "
                             + "\(Int(Date().timeIntervalSince(deadline) + timeout)) s\n\(logTails())")
        }
        try handle.close()
        let sbatchOutput = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        // The first line is "JOBID" (or "JOBID;CLUSTER").
        let jobID = sbatchOutput.split(separator: "\n").first.flatMap { $0.split(separator: ";").first }.map(String.init) ?? ""
        var outputs: [String: String] = [:]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: jobs.path)) ?? [] where !jobID.isEmpty && file.hasPrefix("job-\(jobID)_") {
            outputs[file] = (try? String(contentsOf: jobs.appendingPathComponent(file), encoding: .utf8)) ?? ""
        }
        return JobResult(status: process.terminationStatus, jobID: jobID, outputs: outputs, sbatchOutput: sbatchOutput)
    }

    /// Runs a Slurm client command with this cluster's configuration.
    @discardableResult
    func client(_ name: String, _ arguments: [String]) -> (status: Int32, out: String) {
        guard let path = Self.findExecutable(name) else { return (127, "\(name) is not installed") }
        let process = Process()
        process.executableURL = path
        process.arguments = arguments
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        do { try process.run() } catch { return (127, "\(name): \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Cancels what is still queued or running, stops the daemons this object started (SIGTERM,
    /// then SIGKILL after 10 s) and removes the folder. Safe to call twice.
    func stop() {
        // A launch that failed before its first daemon still made the folder.
        defer { try? FileManager.default.removeItem(at: folder) }
        guard !daemons.isEmpty else { return }
        // Every job on this private controller is this object's: cancel them and let slurmd end
        // their processes before it stops.
        if submitted > 0 && daemons.allSatisfy({ $0.process.isRunning }) {
            client("scancel", ["--user=root"])
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                let queue = client("squeue", ["-h"])
                if queue.status != 0 || queue.out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { break }
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
        // Reverse order: slurmd, slurmctld, then munged, which they authenticate through.
        for (_, process) in daemons.reversed() { process.stop() }
        daemons = []
    }

    /// The last lines of every daemon's log, for a failure or skip message.
    func logTails(lines: Int = 15) -> String {
        let logs = folder.appendingPathComponent("log")
        return ((try? FileManager.default.contentsOfDirectory(atPath: logs.path)) ?? []).sorted().map { name in
            let text = (try? String(contentsOf: logs.appendingPathComponent(name), encoding: .utf8)) ?? ""
            return "--- \(name) (last \(lines) lines)\n" + text.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    static func findExecutable(_ name: String) -> URL? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/usr/sbin:/bin:/sbin"
        return path.split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent(name) }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// `count` TCP ports free on 127.0.0.1 now (bound, read back, released).
    static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for s in sockets { close(s) } }
        return try (0..<count).map { _ in
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { throw Unavailable(description: "socket(): \(String(cString: strerror(errno)))") }
            sockets.append(s)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) == 0 && getsockname(s, $0, &length) == 0 }
            }
            guard bound else { throw Unavailable(description: "no free port: \(String(cString: strerror(errno)))") }
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }
}

/// A daemon started with posix_spawn and reaped with waitpid. Not Foundation's Process: daemons
/// close every inherited descriptor, which Process reads as their exit and then blocks its
/// monitoring thread in waitpid, so no other child is ever reaped.
final class Daemon {
    let pid: pid_t
    /// How it ended ("status 1", "signal 9"), once reaped.
    private(set) var exit: String?

    init(path: String, arguments: [String], environment: [String: String], log: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard status == 0 else { throw LocalSlurm.Unavailable(description: "cannot start \(path): \(String(cString: strerror(status)))") }
        self.pid = pid
    }

    var isRunning: Bool {
        guard exit == nil else { return false }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return true }
        let signal = status & 0x7f
        exit = signal == 0 ? "status \((status >> 8) & 0xff)" : "signal \(signal)"
        return false
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns once reaped.
    func stop(grace: TimeInterval = 10) {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { Thread.sleep(forTimeInterval: 0.05) }
        }
    }
}
