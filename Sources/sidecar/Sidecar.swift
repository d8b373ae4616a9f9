// The `sidecar` command: a thin shell over the library targets. Each subcommand parses its flags,
// calls the library and prints; no logic lives here that a test of the library could not reach.
import ArgumentParser
import CMalloc
import Foundation
import TensorCore
import Training

@main
struct Sidecar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract: "Cache a frozen backbone's activations once, then train many side networks on the cache.",
        discussion: """
            Stage one runs the frozen backbone once over a dataset and stores per-layer activations in an \
            LMDB cache; stage two trains lightweight side networks on that cache with no backbone in memory.
            """,
        version: "0.1.0",
        subcommands: [ExtractCommand.self, MergeCommand.self, InspectCommand.self, FitCommand.self, EvalCommand.self, PredictCommand.self,
                      ExportCommand.self, SweepCommand.self, ReportCommand.self, HeadsCommand.self, TokenizeCommand.self, Info.self])

    static func main() {
        openClosedStandardStreams()
        checkResourceLimits()
        // One heap arena from the start: each thread's own reserved 64 MiB of address space, which
        // made what a command maps vary from run to run under a limit.
        keepFreedMemory()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            guard code == .success else {
                guard addressSpaceLimit() != nil else { exit(withError: error) }
                standardError(fullMessage(for: error) + "\n")
                leaveUnderALimit(code.rawValue)
            }
            // Help and the version go through standard output's buffer like any output, so that
            // text that did not arrive (a full disk) fails the command: ArgumentParser's own exit
            // would have reported success whatever became of it.
            let text = fullMessage(for: error)
            if !text.isEmpty { print(text) }
        }
        checkStandardOutput()
        if addressSpaceLimit() != nil { leaveUnderALimit(0) }
    }

    /// Under an address-space limit, OpenBLAS may have failed to start a thread, and an exit then
    /// waits for it forever in OpenBLAS's own clean-up (seen from `--version` under 200 MiB): so
    /// the process leaves without running the libraries' clean-up, once its output is flushed.
    /// Nothing here needs it: every file is written and synced, or closed, before this.
    static func leaveUnderALimit(_ status: Int32) -> Never {
        fflush(sidecar_stdout())
        _exit(status)
    }

    /// A standard stream the caller closed (`>&-`) is opened on /dev/null, as git does: otherwise the
    /// next file opened takes its number, and a child process (python3 finding the backbone) wrote
    /// into that file, or failed with a misleading error.
    static func openClosedStandardStreams() {
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let null = open("/dev/null", O_RDWR)
            if null >= 0 && null != fd {
                dup2(null, fd)
                close(null)
            }
        }
    }

    /// Output that did not reach standard output (a full disk, a pipe closed while SIGPIPE is
    /// ignored) fails the command: the caller would otherwise take a cut-off result for a whole one.
    static func checkStandardOutput() {
        let out = sidecar_stdout()
        let flushed = fflush(out) == 0
        // errno tells why only when this flush failed; an earlier failed write left just the flag.
        let reason = flushed ? "" : " (\(String(cString: strerror(errno))))"
        if !flushed || ferror(out) != 0 {
            standardError("Error: could not write to standard output\(reason)\n")
            Foundation.exit(1)
        }
    }

    /// An open-file limit under which Foundation traps while it starts a child process (python3,
    /// a sweep's workers), or fails with "Bad file descriptor", is raised or refused up front; so
    /// is an address-space limit in which no command runs.
    static func checkResourceLimits() {
        #if os(Linux)
        let resourceFiles = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resourceFiles = RLIMIT_NOFILE
        #endif
        var files = rlimit()
        if getrlimit(resourceFiles, &files) == 0 {
            // The soft limit goes up toward the hard one first, to 4096 at most: more than
            // anything here opens.
            if files.rlim_cur < 4096 && files.rlim_max > files.rlim_cur {
                var raised = files
                raised.rlim_cur = min(files.rlim_max, 4096)
                if setrlimit(resourceFiles, &raised) == 0 { files = raised }
            }
            if files.rlim_cur < 256 {
                standardError("Error: the open-file limit is \(files.rlim_cur) (ulimit -n); sidecar needs at least 256\n")
                Foundation.exit(1)
            }
        }
        // Under 1 GiB of address space no command runs here (predict and extract had crashed
        // loading the backbone, or failed with a raw Foundation error).
        if let limit = addressSpaceLimit(), limit < 1 << 30 {
            standardError("Error: the address-space limit is \(limit >> 20) MiB (ulimit -v); sidecar needs at least 1024 MiB, "
                          + "and more for a cache or a backbone: raise the limit, or lift it (ulimit -v unlimited)\n")
            leaveUnderALimit(1)
        }
    }
}

/// Under an address-space limit (`ulimit -v`, or a scheduler's, as Grid Engine's h_vmem), whether
/// what `what` maps from here on still fits: OpenBLAS's buffers for `threads` threads running
/// products at once (`reservedAddressSpace`; where it cannot map them it retries forever at full
/// CPU) and `workingSet`, the command's estimate of its batches; a failed allocation stops a
/// Swift process with a crash report. Called once the big maps (the cache, the backbone) are
/// made, so that the room left is measured, not guessed: a probe of that much address space,
/// given back at once. `smaller` names what the user can turn down instead. The working set is
/// estimated only under a limit (it reads records of the cache).
func checkAddressSpace(_ what: String, workingSet: @autoclosure () -> Int = 0, threads: Int = productThreads,
                       smaller: String? = nil) throws {
    guard let limit = addressSpaceLimit() else { return }
    let workingSet = workingSet()
    let needed = reservedAddressSpace(threads: threads) + workingSet
    let probe = mmap(nil, needed, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if probe != MAP_FAILED {
        munmap(probe, needed)
        return
    }
    func mib(_ bytes: Int) -> Int { (bytes + (1 << 20) - 1) >> 20 }
    let mapped = mappedBytes()
    // Rounded up, with room for what moves between runs (thread stacks, the heap).
    let suggested = ((mapped ?? 0) + needed + (128 << 20) + (256 << 20) - 1) / (256 << 20) * (256 << 20)
    throw CommandError("\(what): the address-space limit (ulimit -v) is \(mib(limit)) MiB"
                       + (mapped.map { " and \(mib($0)) MiB are mapped already" } ?? "") + "; about \(mib(needed)) MiB more are needed "
                       + "(OpenBLAS maps 129 MiB for each of the \(threads) threads that may run products at once, and would wait for it "
                       + "forever\(workingSet > 0 ? "; the batches about \(mib(workingSet)) MiB" : "")). Raise the limit to at least "
                       + "\(mib(suggested)) MiB, or lift it (ulimit -v unlimited)" + (smaller.map { ", or give \($0)" } ?? ""))
}

/// Writes to standard error, ignoring failures (FileHandle's older `write(_:)` traps on them): a
/// progress line that cannot be shown is no reason to stop a command.
func standardError(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
}

/// Writes to standard output through the buffer `print` uses, so that the two keep their order,
/// and flushes it: output streams (a reader of predict's answers waits for each), and an error on
/// stderr after it comes after it. A failed write is an error.
func standardOutput(_ text: String) throws {
    let out = sidecar_stdout()
    clearerr(out)
    guard fputs(text, out) >= 0, fflush(out) == 0, ferror(out) == 0 else {
        throw CommandError("could not write to standard output (\(String(cString: strerror(errno))))")
    }
}

/// Whether `folder` holds an LMDB environment (a cache, or a shard of one): no command writes
/// anything else into it.
func isActivationCache(_ folder: String) -> Bool {
    FileManager.default.fileExists(atPath: URL(userPath: folder).appendingPathComponent("data.mdb").path)
}

/// Refuses, for a command that writes a cache (`extract`, `merge`), a folder that holds files of
/// its own and no cache: extraction had written its LMDB files beside a sweep's results (which
/// sweep and report then refused to read) and into a dataset's folder, without a word.
func checkCacheFolder(_ folder: String, flag: String = "--out") throws {
    guard isFolder(folder) == true, !isActivationCache(folder) else { return }
    // What an extraction stopped before its first record may have left.
    let cacheFiles: Set<String> = ["data.mdb", "lock.mdb", "writer.lock"]
    let others = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { !cacheFiles.contains($0) }.sorted()
    guard others.isEmpty else {
        let named = others.prefix(3).joined(separator: ", ") + (others.count > 3 ? ", …" : "")
        throw CommandError("\(flag) \(folder): a folder that holds other files (\(named)) and no cache; give a new or empty folder for the cache")
    }
}

/// Ctrl-C and SIGTERM taken from their default (ending the process at once) and handed to
/// `handler` on a queue, with the signal; the sources must be kept, and cancelled when done.
func handleStopSignals(_ handler: @escaping @Sendable (Int32) -> Void) -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { handler(sig) }
        source.resume()
        return source
    }
}

/// Whether `path` is a folder (true) or another file (false); nil when nothing is there.
func isFolder(_ path: String) -> Bool? {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) ? isDirectory.boolValue : nil
}

/// Checks that `folder` can be made and written: its nearest existing ancestor (itself, when it
/// exists) must be a folder in which this process can make a folder, and the names still to be
/// made must fit the file system. Checked by making and removing a probe folder there: root passes
/// every permission check, yet /proc or a read-only mount refuse, which had been found only after
/// a fit's last epoch. A refused command leaves nothing behind.
func checkWritableFolder(_ folder: String, flag: String = "--out") throws {
    guard !folder.isEmpty else { throw CommandError("\(flag) is empty; give a folder") }
    let target = URL(userPath: folder)
    guard target.path.utf8.count < Int(PATH_MAX) else {
        throw CommandError("\(flag) \(folder.prefix(40))…: the path is \(target.path.utf8.count) bytes, more than the system allows (\(Int(PATH_MAX) - 1))")
    }
    let (url, missing) = nearestExisting(target)
    guard isFolder(url.path) == true else {
        throw CommandError("\(flag) \(folder): \(url == target ? "is" : "\(url.path) is") a file, not a folder")
    }
    // A link that leads nowhere is not there to the checks above, yet no folder can be made in
    // its place.
    let dangling = missing.lazy.compactMap { url in (try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)).map { (url, $0) } }
    if let (link, target) = dangling.first {
        throw CommandError("\(flag) \(folder): \(link.path) is a symbolic link to \(target), which does not exist")
    }
    let nameLimit = pathconf(url.path, Int32(_PC_NAME_MAX))
    if nameLimit > 0, let long = missing.map(\.lastPathComponent).first(where: { $0.utf8.count > nameLimit }) {
        throw CommandError("\(flag) \(folder): the name \(long.prefix(24))… is \(long.utf8.count) bytes, more than the file system allows (\(nameLimit))")
    }
    var template = Array(url.appendingPathComponent(".sidecar-probe-XXXXXX").path.utf8CString)
    guard let probe = mkdtemp(&template) else {
        throw CommandError("\(flag) \(folder): cannot make a folder in \(url.path) (\(String(cString: strerror(errno))))")
    }
    rmdir(probe)
}

/// The nearest of `url` and its ancestors that exists, and the folders below it still to be made,
/// outermost first.
func nearestExisting(_ url: URL) -> (existing: URL, missing: [URL]) {
    var url = url, missing: [URL] = []
    while isFolder(url.path) == nil {
        // "x/.." names x's parent, no folder to be made (or removed again).
        if url.lastPathComponent != ".." { missing.insert(url, at: 0) }
        // The last name dropped as text: URL's deletingLastPathComponent leaves a path that ends
        // in ".." as it is, so the loop would never end.
        url = URL(fileURLWithPath: (url.path as NSString).deletingLastPathComponent)
    }
    return (url, missing)
}

/// Makes `folder` and its missing parents as `mkdir -p` does, one name at a time along the path
/// as typed (its ".." kept for the OS), and returns the folders it made, outermost first: only
/// those whose mkdir succeeded. Working it out beforehand had counted "new/../e" as one to make
/// (it cannot be looked at while new is missing), though it is the existing e. Where it fails,
/// what it made is removed again before it says why.
func makeFolders(_ folder: String, flag: String) throws -> [String] {
    var made: [String] = [], prefix = ""
    func fail(_ why: String) -> CommandError {
        for path in made.reversed() { rmdir(path) }
        return CommandError("\(flag) \(folder): cannot make the folder (\(why))")
    }
    for name in URL(userPath: folder).path.split(separator: "/") {
        prefix += "/" + name
        if mkdir(prefix, 0o777) == 0 {
            made.append(prefix)
        } else if errno != EEXIST {
            throw fail("\(prefix): \(String(cString: strerror(errno)))")
        }
    }
    if isFolder(folder) != true {
        var info = stat()
        let dangling = lstat(prefix, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
        throw fail(dangling ? "\(prefix) is a symbolic link that leads nowhere" : "\(prefix) is a file")
    }
    return made
}

/// An exclusive advisory lock (flock) on a folder, for as long as this object lives, so that two
/// commands do not write into one folder at once. The folder and any missing parents are made, as
/// `mkdir -p` makes them; when the lock goes and the folder is still empty (the command failed
/// before writing), the folders made for it are removed again, so that a failed command leaves
/// nothing behind. A folder with the command's output keeps them: the path as typed must still
/// lead there.
final class FolderLock {
    private let fd: Int32
    private let folder: String
    /// The folders this lock made, outermost first.
    private let made: [String]

    init(_ folder: String, flag: String, command: String) throws {
        let made = try makeFolders(folder, flag: flag)
        // The properties are set only once the lock is held, so a refused init runs no deinit:
        // the folder is then the holder's, in use, not ours to remove.
        let descriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CommandError("\(flag) \(folder): cannot open the folder (\(String(cString: strerror(errno))))")
        }
        // Without flock (some network file systems) there is nothing to hold.
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK {
            close(descriptor)
            throw CommandError("\(flag) \(folder): another \(command) is writing into this folder; wait for it to end or give another folder")
        }
        fd = descriptor
        self.folder = folder
        self.made = made
    }

    deinit {
        // Removed while still locked, so that no other command takes the folder in between;
        // innermost first, and only where nothing was written.
        if (try? FileManager.default.contentsOfDirectory(atPath: folder))?.isEmpty == true {
            for path in made.reversed() {
                if rmdir(path) != 0 { break }
            }
        }
        close(fd)
    }
}

/// Whether two paths name the same existing file or folder (device and inode, links followed):
/// comparing path strings misses a folder reached through a link.
func sameItem(_ a: String, _ b: String) -> Bool {
    var x = stat(), y = stat()
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
}

/// Whether writing `file` (links followed) would replace what a sweep wrote in `results`: a
/// results file, that is any `*.jsonl` directly in the folder (the next report reads every one,
/// so a new one counts too), or anything in a trial's folder under `trials/`.
func replacesSweepOutput(_ file: String, results: String) -> Bool {
    let url = URL(fileURLWithPath: resolvedPath(file))
    let parent = url.deletingLastPathComponent()
    if url.pathExtension == "jsonl" && sameItem(parent.path, results) { return true }
    let trials = URL(userPath: results).appendingPathComponent("trials").path
    var folder = parent
    while folder.path != "/" {
        if sameItem(folder.path, trials) { return true }
        folder = folder.deletingLastPathComponent()
    }
    return false
}

/// `path` with its links and ".." followed as the OS follows them. resolvingSymlinksInPath alone
/// drops "x/.." as text where the path does not exist (a file still to be written), and a link x
/// makes that another folder; so the names not there yet are put after their resolved folder.
func resolvedPath(_ path: String) -> String {
    let url = URL(userPath: path)
    if url.path == "/" || FileManager.default.fileExists(atPath: url.path) { return url.resolvingSymlinksInPath().path }
    // Not there (a link that leads nowhere stays as it is): nothing to follow, so ".." is the
    // textual parent of its resolved folder.
    let folder = resolvedPath((url.path as NSString).deletingLastPathComponent) as NSString
    return url.lastPathComponent == ".." ? folder.deletingLastPathComponent : folder.appendingPathComponent(url.lastPathComponent)
}

/// The file an output flag names, with symlinks followed: written by a temporary file renamed over
/// it, the path must be a regular file or nothing. A device, FIFO or socket is refused (renamed
/// over, `--out /dev/null` had replaced root's /dev/null with a file), and a symlink is written
/// through to its target rather than replaced.
func outputFile(_ path: String, flag: String = "--out") throws -> String {
    // A name ending in a slash is a folder's to the OS (open refuses to make it a file), while the
    // paths below, joined as text, would drop the slash and write a file by that name.
    if path.hasSuffix("/") || path.hasSuffix("/.") || path.hasSuffix("/..") || path == "." || path == ".." {
        throw CommandError("\(flag) \(path): names a folder; give a file to write")
    }
    var resolved = resolvedPath(path)
    // A link to a file not made yet is left as it is by resolvedPath; it is followed here, so
    // that the file is made where the link points (it had been refused as a device). A relative
    // target is read from the link's folder, as the OS reads it.
    for _ in 0..<32 {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: resolved) else { break }
        resolved = resolvedPath(target.hasPrefix("/") ? target : (resolved as NSString).deletingLastPathComponent + "/" + target)
    }
    // An LMDB environment's folder is the cache's alone: a file written there could be its data.mdb.
    let folder = URL(fileURLWithPath: resolved).deletingLastPathComponent().path
    if isActivationCache(folder) {
        throw CommandError("\(flag) \(path): \(folder) is an activation cache (it holds data.mdb); write the file elsewhere")
    }
    // What fit and sweep wrote, whatever the command: an export over another head's weights had
    // left a head that no longer loads, and one over a results file a sweep that no longer reports.
    let name = URL(fileURLWithPath: resolved).lastPathComponent
    if FitOutput.headFiles.contains(name) && isHeadFolder(folder) {
        throw CommandError("\(flag) \(path) would replace the head folder's own \(name) (in \(folder)); write the file elsewhere")
    }
    if name.hasSuffix(".jsonl") && isSweepResults(folder) {
        // A new one too: the next report or sweep reads every .jsonl there as results.
        throw CommandError("\(flag) \(path) would replace what the sweep wrote in \(folder), or be read with it as results; write the file elsewhere")
    }
    var status = stat()
    guard lstat(resolved, &status) == 0 else {
        // Checked now, before the work whose result it holds: the write would find it only at the end.
        guard isFolder(folder) == true else {
            throw CommandError("\(flag) \(path): " + (isFolder(folder) == nil ? "the folder \(folder) does not exist" : "\(folder) is not a folder"))
        }
        guard access(folder, W_OK | X_OK) == 0 else {
            throw CommandError("\(flag) \(path): cannot write in \(folder) (\(String(cString: strerror(errno))))")
        }
        return resolved
    }
    switch status.st_mode & S_IFMT {
    case S_IFREG: return resolved
    case S_IFDIR: throw CommandError("\(flag) \(path): is a folder; give a file to write")
    case S_IFLNK: throw CommandError("\(flag) \(path): is a symbolic link that leads to no file (a loop of links); give a file to write")
    default: throw CommandError("\(flag) \(path): is not a regular file (a device, FIFO or socket); give a file to write")
    }
}

/// Whether `folder` holds a head `fit` wrote: its config and another of its files (a head that
/// lost its weights and result is one still: its config and log are kept from other writes).
func isHeadFolder(_ folder: String) -> Bool {
    let fm = FileManager.default
    return fm.fileExists(atPath: folder + "/config.json")
        && ["head.safetensors", "result.json", "log.tsv"].contains { fm.fileExists(atPath: folder + "/" + $0) }
}

/// Whether `folder` is a sweep's results folder: it holds a shard's results file
/// (`trials-<i>-of-<N>.jsonl`) or the trials' folder.
func isSweepResults(_ folder: String) -> Bool {
    if isFolder(folder + "/trials") == true { return true }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.contains { $0.wholeMatch(of: /trials-[0-9]+-of-[0-9]+\.jsonl/) != nil }
}

/// A fault found while a command runs (a file it read, a folder it must write): printed as
/// "Error: …" without the usage text a `ValidationError` brings, since the flags themselves parsed.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
