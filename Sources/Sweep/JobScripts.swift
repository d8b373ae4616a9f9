// Job files for existing engines: a Slurm job array or a Kubernetes Indexed Job, each task running
// one shard of the sweep. Nothing coordinates the tasks; each reads the same spec and cache, takes
// its shard from the engine's environment and appends to its own results file.
import Foundation

public struct JobSettings: Sendable {
    /// The sidecar binary as the job's nodes see it.
    public var binary: String
    public var spec: String
    public var cache: String
    public var results: String
    public var shards: Int
    public var name: String
    public var cpus: Int
    /// Extra flags passed through to every shard (e.g. --memory-budget).
    public var extraArguments: [String] = []
    public var image = "REGISTRY/sidecar:latest"

    public init(binary: String, spec: String, cache: String, results: String, shards: Int, name: String, cpus: Int) {
        self.binary = binary
        self.spec = spec
        self.cache = cache
        self.results = results
        self.shards = shards
        self.name = name
        self.cpus = cpus
    }
}

public enum JobScripts {
    /// A YAML double-quoted scalar. Characters YAML does not print, and its line breaks (which it
    /// folds into a space), go as escapes.
    static func yamlString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x5C: out += "\\\\"
            case 0x22: out += "\\\""
            case 0x0A: out += "\\n"
            case 0x09: out += "\\t"
            case 0x0D: out += "\\r"
            case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF: out += String(format: "\\u%04X", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Single-quotes a word for bash.
    public static func quote(_ s: String) -> String {
        s.allSatisfy({ $0.isLetter || $0.isNumber || "/._-=:,+@%".contains($0) }) && !s.isEmpty
            ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// A value for an #SBATCH line: sbatch splits those at white space outside quotes (either
    /// kind) and takes a backslash anywhere as an escape.
    static func directive(_ s: String) -> String {
        guard s.contains(where: { $0.isWhitespace || "\"'\\".contains($0) }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Text for a comment line: a line break in a path or name had ended the comment, and what
    /// followed ran as a command of the batch script (or became YAML). Such characters, and the
    /// other controls, show as U+FFFD.
    static func comment(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { u in
            switch u.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator, .format: "\u{FFFD}"
            default: u
            }
        }))
    }

    /// A Kubernetes object name (an RFC 1123 label): lower-case letters, digits and inner hyphens,
    /// at most 63 characters.
    static func kubernetesName(_ s: String) -> String {
        var name = ""
        for c in s.lowercased() {
            let ok = c.isASCII && (c.isLetter || c.isNumber)
            if ok { name.append(c) } else if !name.isEmpty && name.last != "-" { name.append("-") }
        }
        name = String(name.prefix(63))
        while name.last == "-" { name.removeLast() }
        return name.isEmpty ? "sidecar-sweep" : name
    }

    /// A Slurm batch script: `sbatch` it; task i runs shard i/N (from SLURM_ARRAY_TASK_ID).
    public static func slurm(_ j: JobSettings) -> String {
        let words = [j.binary, "sweep", "--spec", j.spec, "--cache", j.cache, "--results", j.results] + j.extraArguments
        return """
            #!/bin/bash
            # Sidecar sweep \(comment(j.name)): \(j.shards) shard(s) as a Slurm job array. Submit with `sbatch FILE`.
            # Array task i runs shard i/\(j.shards) (from SLURM_ARRAY_TASK_ID), opens the cache read-only
            # without a lock file and appends to \(comment(j.results))/trials-<i>-of-\(j.shards).jsonl.
            # Resubmitting the same script resumes: finished trials are skipped.
            #SBATCH --job-name=\(directive(j.name))
            #SBATCH --array=0-\(j.shards - 1)
            #SBATCH --cpus-per-task=\(j.cpus)
            #SBATCH --ntasks=1
            set -euo pipefail
            mkdir -p \(quote(j.results))
            # The task's log, appended to (a requeued task keeps its first attempt's), is opened
            # here once the folder exists: as #SBATCH --output, it failed every task of a
            # resubmission into a removed results folder. Slurm's own messages go to its default file.
            exec >>\(quote(j.results))/"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out" 2>&1
            export OPENBLAS_NUM_THREADS=1
            exec \(words.map(quote).joined(separator: " ")) --no-lock --shard "${SLURM_ARRAY_TASK_ID}/\(j.shards)"

            """
    }

    /// A Kubernetes Indexed Job: pod i runs shard i/N (from JOB_COMPLETION_INDEX). The cache and
    /// results paths must be mounted in the pods at the same paths (a read-only volume for the cache).
    public static func kubernetes(_ j: JobSettings) -> String {
        let command = ["sidecar", "sweep", "--spec", j.spec, "--cache", j.cache, "--results", j.results] + j.extraArguments
            + ["--no-lock", "--shard-count", String(j.shards)]
        let name = kubernetesName(j.name)
        return """
            # Sidecar sweep \(comment(j.name)): \(j.shards) shard(s) as a Kubernetes Indexed Job. Apply with `kubectl apply -f FILE`.
            # Pod i reads JOB_COMPLETION_INDEX and runs shard i/\(j.shards). Mount the cache (read-only), the spec and
            # the results folder at the paths in the command; set the image to one with sidecar on its PATH.
            apiVersion: batch/v1
            kind: Job
            metadata:
              name: \(name)
            spec:
              completionMode: Indexed
              completions: \(j.shards)
              parallelism: \(j.shards)
              backoffLimit: \(j.shards)
              template:
                spec:
                  restartPolicy: Never
                  containers:
                    - name: sweep
                      image: \(yamlString(j.image))
                      command: [\(command.map(yamlString).joined(separator: ", "))]
                      env:
                        - name: OPENBLAS_NUM_THREADS
                          value: "1"
                      resources:
                        requests:
                          cpu: "\(j.cpus)"

            """
    }
}
