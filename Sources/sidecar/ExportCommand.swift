// `sidecar export`: a trained head's deployable weights as one safetensors file.
import ActivationStore
import ArgumentParser
import Foundation
import Predict
import SideNetworks
import Synchronization
import TensorCore
import Training

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a trained head's inference weights alone to one .safetensors file.",
        discussion: """
            Consolidator heads are written consolidated (each block linear's branches merged into one \
            matrix); low-rank heads (LoSA, E3VA) keep their factors, which are smaller than the product. \
            The file's metadata holds the head's config, so eval and predict take it as --head. Heads that \
            read weights stored in the cache (LST, Consolidator) need that cache, or the backbone.
            """)

    @Option(help: "The head folder written by sidecar fit.")
    var head: String

    @Option(help: "The .safetensors file to write.")
    var out: String

    @Option(help: "The cache the head was trained on, for the weights some heads read from it (default: the one its config records).")
    var cache: String?

    @Option(help: "Take those weights from this backbone instead (\"minilm\" or a folder).")
    var backbone: String?

    func run() throws {
        let trained = try TrainedHead.load(head)
        guard !trained.exported else { throw CommandError("--head \(head) is already an exported file") }
        // Checked before the work (a head folder's own files are refused there, this one's and any other's).
        _ = try outputFile(out)
        let model: any Head
        if let backbone {
            model = try Predictor(head: head, backbone: backbone, offersForce: false).head
        } else {
            let opened: Result<ActivationCache, Error> = Result { try ActivationCache.open(path: cache ?? trained.config.cache) }
            switch opened {
            case .success(let opened):
                try trained.checkCompatible(with: opened.manifest.settings, cachePath: opened.path)
                model = try trained.instantiate(context: try opened.describe().context)
            case .failure(let openError):
                if cache != nil { throw openError }
                // The training cache is gone: heads that read no weights from it need only its settings.
                let askedForBlob = Mutex(false)
                do {
                    model = try trained.instantiate(context: try trained.extraction().headContext(path: head, loadBlob: { _ in
                        askedForBlob.withLock { $0 = true }
                        return nil
                    }))
                } catch where askedForBlob.withLock({ $0 }) {
                    // Its own message would blame the cache for lacking a blob the config lists.
                    throw CommandError("head \(trained.config.head) reads weights from its training cache, which cannot be opened (\(openError)); "
                                       + "give --cache or --backbone")
                }
            }
        }
        try FitOutput.export(model, config: trained.config, to: try outputFile(out))
        let count = try model.exportedTensors().reduce(0) { $0 + $1.1.count }
        print("exported \(trained.config.head) (\(count) values, \(model.parameterCount) trained) to \(out)")
    }
}
