// `sidecar sweep`: expand a sweep file into trials, validate them all, print the plan, then train
// the trials in passes of several heads (in parallel processes with --jobs), one shard of a job
// array at a time, resuming from what the results folder already holds.
import ActivationStore
import ArgumentParser
import CMalloc
import Dispatch
import Foundation
import SideNetworks
import Sweep
import TensorCore
import Training

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Train many side networks from a sweep file (grids and random draws), resumably, on one machine or as a job array.",
        discussion: """
            The sweep file (TOML) has [base] (head, [base.training], [base.set]), any number of [[grid]] blocks \
            (every combination of their lists) and [[random]] blocks (`trials` seeded draws: a list is a choice, \
            {uniform = [lo, hi]}, {log_uniform = [lo, hi]}, {int = [lo, hi]}). Training keys: \
            \(TrialTraining.keys.joined(separator: ", ")). Every trial is checked against its head's schema \
            before anything runs; its id is a hash of its resolved config (a layer list in one spelling: \
            1,2,3 and 3,1-2 are one trial).

            Trials with the same training options (all but lr) train in one pass, up to --memory-budget and \
            --max-heads. Each finished trial appends one JSON line to RESULTS/trials-<i>-of-<N>.jsonl and keeps \
            its head in RESULTS/trials/<id>/. A rerun skips trials with an ok line (unless their folder lost its \
            head.safetensors, result.json or config.json) and retries failed ones (--no-retry-failed skips those too). Ctrl-C stops after the current batch (exit status 130; 143 for SIGTERM); rerun to resume. A \
            trial that diverges (loss NaN) or that the cache cannot build is recorded as failed and the sweep \
            goes on; the exit status is 0 when every trial of the shard has a line, 1 when a pass failed as a \
            whole (its trials are recorded as failed too).

            Sharding: --shard i/N, or from the environment: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT \
            (Slurm job arrays), or JOB_COMPLETION_INDEX of --shard-count / SIDECAR_SHARD_COUNT (Kubernetes \
            Indexed Jobs). A sharded run opens the cache with LMDB's no-lock mode (as --no-lock does), for a \
            cache on a read-only shared filesystem that nothing writes to. --emit slurm|k8s writes the job \
            file for --shards N tasks instead of running.
            """)

    @Option(help: "The sweep file (TOML).")
    var spec: String

    @Option(help: "The cache folder written by sidecar extract.")
    var cache: String

    @Option(help: "The results folder (created if missing).")
    var results: String

    @Flag(help: "Print the plan and exit without training.")
    var dryRun = false

    @Option(parsing: .unconditional, help: "Run this many passes at once in separate processes, each with about cores/N threads.")
    var jobs = 1

    @Option(parsing: .unconditional, help: "i/N: run the i-th of N disjoint parts (default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, else 0/1).")
    var shard: String?

    @Option(parsing: .unconditional, help: "N for a shard index taken from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID (else SIDECAR_SHARD_COUNT / SLURM_ARRAY_TASK_COUNT).")
    var shardCount: Int?

    @Flag(help: "Open the cache without LMDB's lock file (always so when sharded).")
    var noLock = false

    @Flag(help: "On a rerun, skip trials that failed before instead of retrying them.")
    var noRetryFailed = false

    @Option(parsing: .unconditional, help: "Estimated memory one pass may use, its heads and its decoded batches (bytes, or with K, M, G).")
    var memoryBudget = "4G"

    @Option(parsing: .unconditional, help: "The most heads trained in one pass.")
    var maxHeads = 16

    @Option(parsing: .unconditional, help: "Heads trained at once on separate cores in each pass (default: cores / --jobs).")
    var threads: Int?

    @Flag(help: "Decode the needed features once per pass and keep them in memory, when they take at most three quarters of the memory available (else the pass streams them and says so).")
    var inMemory = false

    @Option(help: "slurm or k8s: write a job file that runs the sweep as --shards N tasks, then exit.")
    var emit: String?

    @Option(help: "Where --emit writes (default: stdout).")
    var emitOut: String?

    @Option(parsing: .unconditional, help: "Tasks in the emitted job array (default: 4).")
    var shards: Int?

    @Option(help: "Container image for --emit k8s (default: REGISTRY/sidecar:latest).")
    var image: String?

    @Option(parsing: .unconditional, help: "CPUs per task in the emitted job file (default: 4).")
    var cpus: Int?

    @Option(help: "The sidecar binary in the emitted Slurm script (default: this one).")
    var binary: String?

    /// Internal: run only the trial ids read from stdin (a --jobs worker).
    @Flag(help: .hidden)
    var worker = false

    func validate() throws {
        // Processes and threads past a thousand would only exhaust the system's limits.
        if !(1...1024).contains(jobs) { throw ValidationError("--jobs must be in 1...1024, got \(jobs)") }
        if maxHeads < 1 { throw ValidationError("--max-heads must be at least 1, got \(maxHeads)") }
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be in 1...1024, got \(threads)") }
        if let shardCount, !(1...Shard.maxCount).contains(shardCount) { throw ValidationError("--shard-count must be in 1...\(Shard.maxCount), got \(shardCount)") }
        if let shards, !(1...Shard.maxCount).contains(shards) { throw ValidationError("--shards must be in 1...\(Shard.maxCount), got \(shards)") }
        // The emitted jobs run with --threads set to it, which is bounded so.
        if let cpus, !(1...1024).contains(cpus) { throw ValidationError("--cpus must be in 1...1024, got \(cpus)") }
        if let emit, !["slurm", "k8s"].contains(emit) { throw ValidationError("--emit \(emit): expected slurm or k8s") }
        // A flag that would change nothing is refused rather than passed over in silence.
        let emitOnly = [("--emit-out", emitOut != nil), ("--shards", shards != nil), ("--cpus", cpus != nil),
                        ("--image", image != nil), ("--binary", binary != nil)]
        if emit == nil, let flag = emitOnly.first(where: \.1)?.0 { throw ValidationError("\(flag) needs --emit slurm|k8s") }
        if emit == "slurm" && image != nil { throw ValidationError("--image is for --emit k8s; a Slurm task runs --binary") }
        if emit == "k8s" && binary != nil { throw ValidationError("--binary is for --emit slurm; a Kubernetes task runs the image's sidecar") }
        if emit != nil {
            // The job file is all --emit does: what would run here, or which shard, has no place in it.
            let runOnly = [("--jobs", jobs != 1), ("--shard", shard != nil), ("--shard-count", shardCount != nil),
                           ("--dry-run", dryRun), ("--no-lock", noLock)]
            if let flag = runOnly.first(where: \.1)?.0 {
                throw ValidationError("\(flag) is for a sweep run here; --emit writes a job array of --shards tasks, each run with its own shard")
            }
        }
        if shard != nil && shardCount != nil {
            throw ValidationError("--shard-count is for a shard index taken from the environment; --shard i/N gives N itself")
        }
        if let shardCount, shard == nil, !Shard.environmentHasIndex(ProcessInfo.processInfo.environment) {
            throw ValidationError("--shard-count \(shardCount): no shard index in the environment (JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID) to go with it")
        }
        _ = try budgetBytes()
        if isFolder(results) == false {
            throw ValidationError("--results \(results): is a file; the results go in a folder")
        }
        if isActivationCache(results) {
            throw ValidationError("--results \(results): is an activation cache; give the results a folder of their own")
        }
        if let shard {
            do { _ = try Shard.parse(shard) } catch { throw ValidationError("\(error)") }
        }
    }

    func budgetBytes() throws -> Int {
        // 4G, 4GB, 4GiB and 4g are all 4 GiB; a plain number is bytes.
        var digits = Substring(memoryBudget.trimmingCharacters(in: .whitespaces).uppercased())
        if digits.hasSuffix("IB") { digits = digits.dropLast(2) } else if digits.hasSuffix("B") { digits = digits.dropLast() }
        let units: [Character: Double] = ["K": 0x1p10, "M": 0x1p20, "G": 0x1p30, "T": 0x1p40]
        var scale = 1.0
        if let last = digits.last, let u = units[last] { digits = digits.dropLast(); scale = u }
        // At least a byte: 0.5 had become a budget of 0.
        // Decimal digits only: Double also reads hexadecimal ("0x10") and "nan".
        guard digits.wholeMatch(of: /[0-9]+(\.[0-9]+)?/) != nil, let v = Double(digits), v * scale >= 1, v * scale < 0x1p60 else {
            throw ValidationError("--memory-budget \(memoryBudget): expected a size from 1 byte to under 1 EiB, e.g. 4G or 512M")
        }
        return Int(v * scale)
    }

    func run() throws {
        let sweep: SweepSpec
        do { sweep = try SweepSpec.load(path: spec) } catch let e as SweepError { throw CommandError(e.description) }
        let quiet = worker
        let out: (String) -> Void = { if !quiet { Self.say($0) } }
        if let emit { return try emitJob(emit, sweep: sweep) }

        let shard: Shard
        do {
            shard = try self.shard.map { try Shard.parse($0) }
                ?? Shard.fromEnvironment(ProcessInfo.processInfo.environment, count: shardCount) ?? .whole
        } catch let e as ShardError {
            // A bad --shard is a usage error; the environment's array is not the command line's.
            if self.shard != nil { throw ValidationError(e.description) }
            throw CommandError(e.description)
        }
        // The cache and the plan are checked before the results folder is made: a refused sweep
        // leaves nothing behind (the lock's files would keep a folder it made).
        let opened = try ActivationCache.open(path: cache, noLock: noLock || shard.count > 1)
        // As fit refuses it: a sweep had planned on an unfinished cache and recorded every trial
        // as failed, and with --no-retry-failed those failures stayed after the cache was finished.
        try opened.requireComplete()
        try opened.requireClasses()
        var limits = PlanLimits()
        limits.memoryBudget = try budgetBytes()
        limits.maxHeadsPerGroup = maxHeads
        let plan = try SweepPlan.make(trials: sweep.trials, cache: opened, limits: limits)
        if !worker && !dryRun { try checkWritableFolder(results, flag: "--results") }
        // Each worker maps the cache as this process has and runs the products, on the threads it
        // is given (one per core by default, shared among --jobs workers).
        if !dryRun {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let trainingThreads = worker ? threads ?? 1 : jobs > 1 ? threads ?? max(1, cores / jobs) : threads ?? cores
            try checkAddressSpace("sidecar sweep", workingSet: plan.groups.map(\.memoryBytes).max() ?? 0, threads: trainingThreads + 1,
                                  smaller: "a smaller --memory-budget or --max-heads, or trials with a smaller batch_size")
        }
        // Held until this run ends (workers run under their parent's).
        let runLock = worker || dryRun ? nil : try ShardRunLock(folder: results, shard: shard)
        defer { withExtendedLifetime(runLock) {} }
        let finished = try FinishedTrials.read(folder: results)
        let cacheHash = try opened.describe().manifestHash
        if let (other, line) = finished.caches.first(where: { $0.key != cacheHash }) {
            throw CommandError("\(line): a trial that ran on another cache (manifest \(other); \(cache) has \(cacheHash)). "
                               + "Its results would be taken as this cache's; give another --results folder")
        }
        for warning in finished.warnings { standardError("warning: \(warning)\n") }
        var skip = finished.ok
        if noRetryFailed { skip.formUnion(finished.failed) }
        var only: Set<String>? = nil
        if worker {
            // A worker outlives a parent killed with SIGKILL unless the kernel ends it too; an
            // orphan still training while a rerun starts the same trials would write them twice.
            _ = sidecar_die_with_parent()
            if let parent = ProcessInfo.processInfo.environment["SIDECAR_SWEEP_PARENT"], Int32(parent) != getppid() {
                throw CommandError("--worker: the sweep that started this worker (process \(parent)) has exited")
            }
            let input = FileHandle.standardInput.readDataToEndOfFile()
            only = Set(String(decoding: input, as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init))
        }
        let mine = plan.groups(of: shard)
        // A finished trial whose folder lost part of its head (a file removed by hand, a disk
        // restored in part) trains again: its line alone had it skipped, and eval, export and predict found no
        // head. Its new line follows the old one (a report takes the later of two ok lines; a
        // failed one leaves the old line, and the report warns that its head is gone).
        let lost = Set(mine.flatMap(\.members).map(\.trial.id)).intersection(finished.ok)
            .filter { SweepRunner.lostHead(SweepRunner.trialFolder(results, $0)) }.sorted()
        if !lost.isEmpty && !worker {
            standardError("warning: " + SweepRunner.lostHeadsWarning(lost, results: results, then: "and run again") + "\n")
        }
        skip.subtract(lost)
        let pending: [TrialGroup] = mine.compactMap { g in
            plan.remaining(of: g) { !skip.contains($0.trial.id) && (only?.contains($0.trial.id) ?? true) }
        }
        let mineCount = mine.reduce(0) { $0 + $1.members.count }
        let pendingCount = pending.reduce(0) { $0 + $1.members.count }
        let retrying = pending.flatMap(\.members).filter { finished.failed.contains($0.trial.id) }.count
        let late = plan.groups.flatMap(\.members).filter { $0.lateError != nil }

        out("sweep \(spec): \(sweep.trials.count) trial(s)\(sweep.duplicates > 0 ? " (\(sweep.duplicates) repeated config(s) kept once)" : ""), \(plan.groups.count) pass(es) sharing data")
        if !late.isEmpty { out("  \(late.count) trial(s) cannot be built on this cache and will be recorded as failed: \(late[0].trial.id) \(late[0].trial.head): \(late[0].lateError!)") }
        if shard.count > 1 { out("shard \(shard): \(mine.count) pass(es), \(mineCount) trial(s)") }
        out("already finished: \(mineCount - pendingCount); to run: \(pendingCount) trial(s) in \(pending.count) pass(es)\(retrying > 0 ? ", \(retrying) retried after failing" : "")")
        // A trial alone over the budget still runs, alone: said, not passed over in silence.
        let over = pending.filter { $0.memoryBytes > limits.memoryBudget }
        if !worker, let largest = over.max(by: { $0.memoryBytes < $1.memoryBytes }) {
            standardError("warning: \(over.count) pass(es) of one trial each are estimated above --memory-budget \(memoryBudget) "
                          + String(format: "(the largest, %@, ~%.0f MiB); they run alone, as no pass can be smaller\n",
                                   largest.id, Double(largest.memoryBytes) / 1048576))
        }
        let parallel = max(1, min(jobs, pending.count))
        let serial = pending.reduce(0.0) { $0 + $1.estimatedSeconds }
        let longest = pending.map(\.estimatedSeconds).max() ?? 0
        out(String(format: "estimated time: about %@ (a rough estimate from the features the heads read and each head's operations per example, at rates measured once on another machine; each pass prints the time left at its own measured rate after every epoch)",
                   roughDuration(max(serial / Double(parallel), longest))))
        if dryRun {
            for g in pending {
                let heads = Dictionary(grouping: g.members, by: \.trial.head).map { "\($1.count) \($0)" }.sorted().joined(separator: ", ")
                out("  pass \(g.id): \(heads); epochs \(g.training.epochs), batch \(g.training.batchSize), seed \(g.training.seed); "
                    + "~\(roughDuration(g.estimatedSeconds)), " + String(format: "~%.0f MiB", Double(g.memoryBytes) / 1048576))
            }
            return
        }
        if pending.isEmpty {
            out("nothing to do: every trial of this shard has a result in \(results)")
            return
        }

        let stop = StopFlag()
        let children = ChildList()
        let sources = Self.installSignalHandlers(stop: stop, children: children, worker: worker)
        defer { sources.forEach { $0.cancel() } }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var failedPasses = 0, unwritten = 0
        do {
            if parallel > 1 && !worker {
                try runWorkers(pending, parts: parallel, shard: shard, threads: threads ?? max(1, cores / parallel), children: children, stop: stop)
            } else {
                var runner = SweepRunner(cache: opened, cachePath: cache, resultsFolder: results, shard: shard,
                                         parallelHeads: threads ?? (worker ? 1 : nil), stop: stop, log: Self.say)
                runner.inMemory = inMemory
                (_, _, failedPasses, unwritten) = try runner.run(pending)
            }
        } catch let e as SweepInterrupted {
            if !worker { standardError("sidecar sweep: \(e)\n") }
            // 128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM.
            throw ExitCode(128 + (stop.signal == 0 ? SIGINT : stop.signal))
        }
        let after = try FinishedTrials.read(folder: results)
        let ids = Set(pending.flatMap(\.members).map(\.trial.id))
        let okNow = ids.intersection(after.ok).count, failedNow = ids.intersection(after.failed).count
        out("done: \(okNow) ok, \(failedNow) failed; results in \(URL(userPath: results).appendingPathComponent(shard.fileName).path)")
        if okNow + failedNow < ids.count { throw CommandError("\(ids.count - okNow - failedNow) trial(s) have no results line; see the messages above") }
        // A trial that diverges is a result; a pass that could not run, or a head that could not be
        // written, is not (a job array must see the task fail).
        var faults: [String] = []
        if failedPasses > 0 { faults.append("\(failedPasses) pass(es) failed as a whole") }
        if unwritten > 0 { faults.append("\(unwritten) trained head(s) could not be written") }
        if !faults.isEmpty {
            throw CommandError(faults.joined(separator: " and ") + " (see the messages above); their trials are recorded as failed, and a rerun retries them")
        }
    }

    /// Splits the pending passes over `parts` worker processes of this same command and waits.
    func runWorkers(_ pending: [TrialGroup], parts: Int, shard: Shard, threads: Int, children: ChildList, stop: StopFlag) throws {
        var base = ["sweep", "--spec", spec, "--cache", cache, "--results", results, "--shard", shard.description, "--worker",
                    "--threads", String(threads), "--memory-budget", memoryBudget, "--max-heads", String(maxHeads)]
        if noLock || shard.count > 1 { base.append("--no-lock") }
        if noRetryFailed { base.append("--no-retry-failed") }
        if inMemory { base.append("--in-memory") }
        var environment = ProcessInfo.processInfo.environment
        // The trainer uses one BLAS thread per head; OpenBLAS must not start a pool per process.
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["SIDECAR_SWEEP_PARENT"] = String(getpid())
        Self.say("running \(pending.count) pass(es) in \(parts) processes, \(threads) thread(s) each")
        var processes: [Process] = []
        for part in SweepPlan.partition(pending, parts: parts) where !part.isEmpty {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.selfPath())
            process.arguments = base
            process.environment = environment
            let input = Pipe()
            process.standardInput = input
            try process.run()
            children.add(process.processIdentifier)
            input.fileHandleForWriting.write(Data(part.flatMap(\.members).map { $0.trial.id + "\n" }.joined().utf8))
            try input.fileHandleForWriting.close()
            processes.append(process)
        }
        var failures: [String] = []
        for p in processes {
            p.waitUntilExit()
            let (pid, status) = (p.processIdentifier, p.terminationStatus)
            if p.terminationReason == .uncaughtSignal {
                failures.append("worker \(pid) was killed by signal \(status)")
            } else if status == 128 + SIGINT || status == 128 + SIGTERM {
                // Stopped cleanly by a signal sent to it alone (one to this process is handled above).
                failures.append("worker \(pid) was stopped by \(status == 128 + SIGINT ? "SIGINT" : "SIGTERM") after its current batch")
            } else if status != 0 {
                failures.append("worker \(pid) exited with \(status)")
            }
        }
        if stop.isSet {
            let done = (try? FinishedTrials.read(folder: results))?.ok ?? []
            throw SweepInterrupted(finished: pending.flatMap(\.members).filter { done.contains($0.trial.id) }.count)
        }
        if !failures.isEmpty {
            // Every trial is recorded as it finishes, so whatever ended a worker, nothing it finished is lost.
            throw CommandError(failures.joined(separator: "; ") + "; the trials the workers finished are recorded, and the same command again runs the rest")
        }
    }

    func emitJob(_ kind: String, sweep: SweepSpec) throws {
        // Its ".." kept for the OS: standardizedFileURL drops "x/.." as text, another folder where x is a link.
        func absolute(_ p: String) -> String { URL(userPath: p).path }
        // The job's name goes into comment and directive lines: a line break in the spec's file
        // name would end one (bare YAML, or an sbatch script whose #SBATCH lines are ignored).
        let stem = URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent
        let name = "sidecar-sweep-" + String(String.UnicodeScalarView(stem.unicodeScalars.map {
            $0.properties.generalCategory == .control || [0x85, 0x2028, 0x2029].contains($0.value) ? "_" : $0
        }))
        // A path is made absolute as the other paths are (the job runs in another folder); a bare
        // name is left to the node's PATH.
        var job = JobSettings(binary: binary.map { $0.contains("/") ? absolute($0) : $0 } ?? Self.selfPath(), spec: absolute(spec), cache: absolute(cache), results: absolute(results),
                              shards: shards ?? 4, name: name, cpus: cpus ?? 4)
        job.image = image ?? "REGISTRY/sidecar:latest"
        // Threads as many as the cores each task is granted: the machine's count, the default, is
        // the whole node's where the scheduler does not bind tasks to their cores.
        job.extraArguments = ["--memory-budget", memoryBudget, "--max-heads", String(maxHeads), "--threads", String(threads ?? job.cpus)]
            + (noRetryFailed ? ["--no-retry-failed"] : []) + (inMemory ? ["--in-memory"] : [])
        let text = kind == "slurm" ? JobScripts.slurm(job) : JobScripts.kubernetes(job)
        let file = try emitOut.map { emitOut in
            let file = try outputFile(emitOut, flag: "--emit-out")
            if replacesSweepOutput(file, results: results) {
                throw CommandError("--emit-out \(emitOut) would replace what the sweep wrote in \(results); write the job script elsewhere")
            }
            if sameItem(file, spec) {
                throw CommandError("--emit-out \(emitOut) is the sweep file --spec \(spec), which the job reads; write the job script elsewhere")
            }
            return file
        }
        // Shards take whole passes; where the cache is reachable from here, say when some would idle.
        if let opened = try? ActivationCache.open(path: cache, noLock: true) {
            var limits = PlanLimits()
            limits.memoryBudget = try budgetBytes()
            limits.maxHeadsPerGroup = maxHeads
            if let passes = try? SweepPlan.make(trials: sweep.trials, cache: opened, limits: limits).groups.count, passes < job.shards {
                standardError("note: the sweep is \(passes) pass(es) over the cache, and a shard runs whole passes: "
                              + "\(job.shards - passes) of the \(job.shards) shards will have nothing to do\n")
            }
        }
        if let emitOut, let file {
            do { try Data(text.utf8).write(to: URL(userPath: file), options: .atomic) } catch {
                throw CommandError("--emit-out \(emitOut): cannot write: \(error.localizedDescription)")
            }
            if kind == "slurm" { chmod(file, 0o755) }
            print("wrote \(emitOut): \(sweep.trials.count) trial(s) in \(job.shards) shard(s); submit with \(kind == "slurm" ? "sbatch" : "kubectl apply -f") \(JobScripts.quote(emitOut))")
        } else {
            print(text, terminator: "")
        }
    }

    /// Prints a line and flushes it: a sweep's log is often a file or a pipe (Slurm, a worker), and
    /// progress must show while it runs. A line that cannot be written does not stop the sweep; the
    /// exit status says so at the end.
    static func say(_ line: String) {
        fputs(line + "\n", sidecar_stdout())
        fflush(sidecar_stdout())
    }

    static func selfPath() -> String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    }

    /// SIGINT/SIGTERM: the first asks for a clean stop (after the current batch) and is passed on to
    /// worker processes; in the main process a second one kills the workers and exits at once
    /// (nothing partial is written either way). Workers only stop cleanly, and silently: the main
    /// process says it once for all of them (each worker had repeated both of its lines).
    static func installSignalHandlers(stop: StopFlag, children: ChildList, worker: Bool) -> [DispatchSourceSignal] {
        handleStopSignals { sig in
            if stop.isSet {
                guard !worker else { return }
                for pid in children.all { kill(pid, SIGKILL) }
                Foundation.exit(128 + sig)
            }
            stop.set(signal: sig)
            if !worker { standardError("\nsidecar sweep: stopping after the current batch (again to quit now)\n") }
            for pid in children.all { kill(pid, SIGTERM) }
        }
    }
}

/// Worker process ids, for passing a stop request on.
final class ChildList: @unchecked Sendable {
    private let lock = NSLock()
    private var pids: [Int32] = []
    func add(_ pid: Int32) { lock.lock(); pids.append(pid); lock.unlock() }
    var all: [Int32] { lock.lock(); defer { lock.unlock() }; return pids }
}
