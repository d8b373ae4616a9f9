// A trained head read back: from its fit folder (config.json + head.safetensors, the trainable
// parameters exactly as trained) or from an exported file (the deployable tensors, with the same
// config in its metadata). The head is rebuilt through the registry with the recorded
// hyperparameters and seed, then its tensors are loaded by name, so nothing but the numbers comes
// from the file.
import ActivationStore
import Foundation
import OneDNN
import SafeTensors
import SideNetworks
import TensorCore

public struct TrainedHead {
    /// Where it was read from (a folder or a .safetensors file), for messages.
    public let source: String
    public let config: FitOutput.Config
    /// The stored tensors by name.
    public let tensors: [String: Tensor]
    /// True for an exported file (deployable form, e.g. the consolidator's merged matrices).
    public let exported: Bool

    /// The format tags written into head.safetensors and exported files.
    static let fitFormat = "sidecar-head-2"
    static let exportFormat = "sidecar-export-1"

    public init(source: String, config: FitOutput.Config, tensors: [String: Tensor], exported: Bool) {
        self.source = source
        self.config = config
        self.tensors = tensors
        self.exported = exported
    }

    /// Reads a head folder written by `fit`, or a file written by `export`.
    public static func load(_ path: String) throws -> TrainedHead {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw HeadError("--head \(path): no such head folder or file")
        }
        if isDirectory.boolValue {
            // A running fit holds its head folders' locks until every file is written: read in
            // between, one fit's config and result.json had been paired with the next one's weights.
            let folder = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { if folder >= 0 { close(folder) } }
            if folder >= 0 && flock(folder, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK {
                throw HeadError("\(path): a sidecar fit is writing into this folder; wait for it to end")
            }
            // Joined as text: URL(fileURLWithPath:) drops "x/.." before the file system follows a
            // link x, so "link/../head" had named another folder than the one the OS opens.
            func inFolder(_ names: String...) -> String { ([path.hasSuffix("/") ? String(path.dropLast()) : path] + names).joined(separator: "/") }
            let configPath = inFolder("config.json")
            let weightsPath = inFolder("head.safetensors")
            guard let data = FileManager.default.contents(atPath: configPath) else {
                // A fit of several heads writes each into a numbered folder of its own.
                let inside = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().filter {
                    FileManager.default.fileExists(atPath: inFolder($0, "config.json"))
                }
                if !inside.isEmpty {
                    throw HeadError("\(path): not a head folder but the heads of one fit (\(inside.joined(separator: ", "))); "
                                    + "give one of them, or several as --head flags for an ensemble")
                }
                if FileManager.default.fileExists(atPath: configPath) {
                    throw HeadError("\(configPath): cannot be read as a file (a folder, FIFO or device in its place?)")
                }
                throw HeadError("\(path): not a head folder (no config.json); give a folder written by sidecar fit")
            }
            let config: FitOutput.Config
            do { config = try JSONDecoder().decode(FitOutput.Config.self, from: data) } catch {
                throw HeadError("\(configPath): not a head config (\(describeDecoding(error, data, as: FitOutput.Config.self)))")
            }
            // fit writes result.json last, so without it the weights and config.json may be from
            // two different fits.
            guard let resultData = FileManager.default.contents(atPath: inFolder("result.json")) else {
                throw HeadError("\(path): no result.json; the fit that wrote this folder did not finish, fit the head again")
            }
            if !FileManager.default.fileExists(atPath: weightsPath) {
                if let failure = (try? JSONDecoder().decode(FitResult.self, from: resultData))?.failure {
                    throw HeadError("\(path): this head's fit failed (\(failure)); it has no weights")
                }
                throw HeadError("\(path): no head.safetensors; the fit that wrote this folder did not finish")
            }
            let file = try SafeTensorsFile(path: weightsPath)
            guard file.metadata["format"] == fitFormat else {
                throw HeadError("\(weightsPath): format \(file.metadata["format"] ?? "none"), expected \(fitFormat); fit the head again with this version")
            }
            return TrainedHead(source: path, config: config, tensors: try tensors(of: file), exported: false)
        }
        let file = try SafeTensorsFile(path: path)
        guard file.metadata["format"] == exportFormat, let text = file.metadata["config"] else {
            throw HeadError("\(path): not a head exported by sidecar export (metadata format \(file.metadata["format"] ?? "none"))")
        }
        let config: FitOutput.Config
        do { config = try JSONDecoder().decode(FitOutput.Config.self, from: Data(text.utf8)) } catch {
            throw HeadError("\(path): the exported config is unreadable (\(describeDecoding(error, Data(text.utf8), as: FitOutput.Config.self)))")
        }
        return TrainedHead(source: path, config: config, tensors: try tensors(of: file), exported: true)
    }

    /// Every tensor, each checked to be finite: fit keeps no diverged head, so a NaN or infinity
    /// is damage, which had given "nan" predictions with exit status 0.
    private static func tensors(of file: SafeTensorsFile) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in file.names {
            let tensor = try file.tensor(name)
            if let i = tensor.scalars.firstIndex(where: { !$0.isFinite }) {
                let value = tensor.scalars[i].isNaN ? "a NaN" : "\(tensor.scalars[i])"
                throw HeadError("\(file.path): tensor \(name) holds \(value) at element \(i); the head is damaged, fit it again")
            }
            out[name] = tensor
        }
        return out
    }

    /// The extraction settings of the cache the head was trained on (backbone identity, layers,
    /// token policy, preprocessing).
    public func extraction() throws -> ExtractionSettings {
        guard let settings = config.extraction else {
            throw HeadError("\(source): the head records no extraction settings (written by an older version); fit it again")
        }
        // A hand-edited or damaged config must fail here, not as a shape fault deep in a head.
        if let fault = settings.fault {
            throw HeadError("\(source): the recorded extraction is not one sidecar writes: \(fault); the head was edited or is damaged")
        }
        guard !config.labels.isEmpty, ExtractionSettings.sameLabels(config.labels, settings.labels) else {
            // Counts alone said "(3) differ from (3)" for the same labels in another order.
            let (mine, theirs) = (config.labels, settings.labels)
            let first = zip(mine, theirs).enumerated().first { !ExtractionSettings.sameLabels([$0.element.0], [$0.element.1]) }
            let detail = first.map { "label \($0.offset + 1) is \"\($0.element.0)\" in labels, \"\($0.element.1)\" in extraction.labels" }
                ?? "\(mine.count) labels, \(theirs.count) in extraction.labels"
            throw HeadError("\(source): the config's labels differ from those of the cache it was trained on (\(detail))")
        }
        return settings
    }

    /// Refuses heads that are one head read from different files: a copied folder (the same kind,
    /// settings and stored weights), or a folder and its export (the same kind, settings, training
    /// options and cache, one of them exported: an export may hold other tensors than its folder,
    /// as the consolidator's merged matrices). An ensemble would count the head twice in its
    /// mean; `paths` name them in the message.
    public static func checkDistinct(_ heads: [TrainedHead], paths: [String]) throws {
        for later in heads.indices {
            for earlier in 0..<later {
                let (a, b) = (heads[earlier], heads[later])
                // Settings compared as a sweep tells trials apart (`1,2` and `2,1` are one layer list).
                func identifying(_ h: TrainedHead) -> [String: HyperparameterValue] {
                    HeadRegistry.identifyingValues(head: h.config.head, h.config.hyperparameters.values)
                }
                guard a.config.head == b.config.head && identifying(a) == identifying(b) else { continue }
                if a.tensors == b.tensors {
                    throw HeadError("\(paths[later]) holds the same head as \(paths[earlier]) (\(b.config.head), the same settings and "
                                    + "weights); an ensemble's heads must differ")
                }
                if a.exported != b.exported && a.isSameFit(as: b) {
                    throw HeadError("\(paths[later]) holds the same head as \(paths[earlier]) (\(b.config.head), the same settings, training "
                                    + "and cache, one of them exported: one fit); an ensemble's heads must differ")
                }
            }
        }
    }

    /// Whether both come from one fit as far as their configs tell: the same training options
    /// (seed included), learning rate and cache. Training is deterministic, so two such fits
    /// give one head. Options that change no weight are left out: the learning rate as given
    /// (the one used is compared), whether the features were held in memory, and the threads.
    private func isSameFit(as other: TrainedHead) -> Bool {
        func weighing(_ options: TrainingOptions) -> TrainingOptions {
            var options = options
            (options.learningRate, options.inMemory, options.parallelHeads) = (nil, false, nil)
            return options
        }
        return weighing(config.training) == weighing(other.config.training) && config.learningRate == other.config.learningRate
            && config.cacheManifestHash == other.config.cacheManifestHash
    }

    /// Rebuilds the head for `context` and loads its tensors; a missing, extra or misshapen
    /// tensor is an error naming it.
    public func instantiate(context: HeadContext) throws -> any Head {
        let kind = try HeadRegistry.kind(named: config.head)
        // JSON does not keep 0.0 apart from 0, so the recorded values are resolved against the
        // schema again, as text, exactly as `--set` values are.
        let hyperparameters: Hyperparameters
        do {
            hyperparameters = try Hyperparameters(head: config.head, schema: kind.schema,
                                                  settings: config.hyperparameters.values.mapValues(\.description))
        } catch let error as HeadError {
            throw HeadError("\(source): the recorded hyperparameters: \(error)")
        }
        // `layers=all` is resolved against the layers of the cache the head was trained on: another
        // cache's (1,4,6 for 0,3,6) would feed the weights other layers without a word.
        var trainedContext = context
        if let trained = config.extraction?.layers { trainedContext.layers = trained }
        let head: any Head
        do {
            head = try kind.make(hyperparameters, context: trainedContext, seed: config.training.seed)
        } catch let error as HeadError {
            // Named by the head folder: "--set layers=99" alone reads as if the user had typed it.
            throw HeadError("\(source): \(error)")
        }
        let unstored = head.features.filter { !context.layers.contains($0.layer) }
        if !unstored.isEmpty {
            throw HeadError("\(source) reads \(unstored.map(\.description).joined(separator: " ")), which this cache does not store "
                            + "(it has layers \(context.layers.map(String.init).joined(separator: ",")); the head was trained on "
                            + "layers \(trainedContext.layers.map(String.init).joined(separator: ","))); extract with --layers that include them")
        }
        if exported {
            try head.loadExported(tensors, source: source)
        } else {
            try head.parameters.load(tensors, source: source)
        }
        return head
    }

    /// Checks that a cache holds the same backbone, the same kind of features (token policy,
    /// pooling, tokenizer or image preprocessing) and the same labels as the head was trained with.
    /// The dataset may differ, and so may the storage type and compute path, which only round.
    public func checkCompatible(with settings: ExtractionSettings, cachePath: String) throws {
        // Without the recorded settings nothing could be compared, and a head had been scored on
        // features of another kind.
        let trained = try extraction()
        if trained.backbone != settings.backbone {
            let differences = settings.backbone.differences(from: trained.backbone).map { "\($0.name) \($0.mine), trained with \($0.theirs)" }
            throw HeadError("\(cachePath) was extracted with another backbone than \(source) was trained on: \(differences.joined(separator: "; "))")
        }
        // Where the dataset's columns are and its file format say nothing about the features.
        let compared = [("token policy", trained.tokens.rawValue, settings.tokens.rawValue),
                        ("pooling", trained.pooling ?? "default", settings.pooling ?? "default")]
            + trained.preprocessingDifferences(from: settings, included: { $0 != "format" && !$0.hasSuffix("_column") })
            .map { ($0.name, $0.mine, $0.theirs) }
        let differences = compared.filter { $0.1 != $0.2 }.map { "\($0.0) \($0.2), trained with \($0.1)" }
        if !differences.isEmpty {
            throw HeadError("\(cachePath) holds other features than \(source) was trained on: \(differences.joined(separator: "; "))")
        }
        guard ExtractionSettings.sameLabels(settings.labels, config.labels) else {
            throw HeadError("\(cachePath) has labels \(settings.labels), but \(source) was trained with \(config.labels)")
        }
    }
}

extension ExtractionSettings {
    /// What a head may know of a cache with these settings; blobs come from `loadBlob`.
    public func headContext(path: String, loadBlob: @escaping @Sendable (String) throws -> Blob?) throws -> HeadContext {
        guard let layout = RowLayout(rawValue: tokens.rawValue) else {
            throw CacheError("\(path): token policy \(tokens.rawValue) is unknown to stage two")
        }
        let pooling: PoolingMode = self.pooling.flatMap(PoolingMode.init(rawValue:))
            ?? (backbone.architecture.lowercased().contains("vit") ? .cls : .mean)
        return HeadContext(
            width: backbone.hiddenSize, layerCount: backbone.layerCount, layers: layers, streams: streams ?? [],
            layout: layout, pooling: pooling, classes: labels.count, maxTokens: maxTokens,
            backboneHeads: nil, compute: try ComputePath.recorded(compute), blobNames: blobs ?? [], loadBlob: loadBlob)
    }
}

/// What a decoding error of `data` as a `T` says, with the key where the decoder names one.
func describeDecoding<T: Decodable>(_ error: Error, _ data: Data, as: T.Type) -> String {
    switch error {
    // Foundation's decoder reports a number its field cannot hold (a seed of -1 or 2^64, a learning
    // rate of 1e39) as invalid JSON, with no key.
    case DecodingError.dataCorrupted(let c) where c.codingPath.isEmpty && (try? JSONSerialization.jsonObject(with: data)) != nil:
        (refusedNumber(in: data) { (try? JSONDecoder().decode(T.self, from: $0)) != nil }
            .map { "the JSON is valid, but \($0.path) holds \($0.value), out of range for that field" }
            ?? "the JSON is valid, but a number is out of range for its field")
            + " (a negative or too large whole number, or a value a 32-bit float cannot hold)"
    case DecodingError.keyNotFound(let key, _): "no key \(key.stringValue)"
    case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c), DecodingError.dataCorrupted(let c):
        (c.codingPath.map(\.stringValue).joined(separator: ".") + " " + c.debugDescription).trimmingCharacters(in: .whitespaces)
    default: "\(error)"
    }
}
