// File URLs for the paths users type (flags, arguments, paths inside their spec files).
import Foundation

extension URL {
    /// A file URL for `path` as the OS would open it, a relative path against the current folder.
    ///
    /// `URL(fileURLWithPath:)` makes a relative path absolute by dropping "x/.." as text, while the
    /// OS follows a link x first: "sub/link/../cache" had named `sub/cache`, not the folder beside
    /// the link's target that the OS opens. Made absolute as text instead, the ".." stays for the OS
    /// to resolve. Only "." components and repeated slashes go, which never involve a link.
    public init(userPath path: String) {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let components = absolute.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        self.init(fileURLWithPath: "/" + components.joined(separator: "/"))
    }
}
