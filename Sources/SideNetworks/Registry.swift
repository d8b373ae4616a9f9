// Heads by name. `fit`, `sweep` and the tests build heads only through here, so a name, a key or a
// value is validated in one place.

public enum HeadRegistry {
    /// Every head kind, in the order `--help` lists them.
    public static let kinds: [any HeadKind.Type] = [
        LinearHead.self, MLPHead.self, LoSAHead.self, LSTHead.self, UniPTHead.self, E3VAHead.self, ConsolidatorHead.self,
    ]

    public static var names: [String] { kinds.map { $0.name } }

    public static func kind(named name: String) throws -> any HeadKind.Type {
        guard let kind = kinds.first(where: { $0.name == name }) else {
            throw HeadError("unknown head '\(name)'; the heads are \(names.joined(separator: ", "))")
        }
        return kind
    }

    /// Resolves `settings` against the head's schema (unknown keys and bad values throw).
    public static func hyperparameters(head name: String, settings: [String: String]) throws -> Hyperparameters {
        try Hyperparameters(head: name, schema: kind(named: name).schema, settings: settings)
    }

    /// The values that identify a run of the head (a sweep trial's id): every resolved value but
    /// those of keys added later that hold their defaults, so ids recorded before a key existed
    /// stay the same, with a layer list in one spelling (`Hyperparameter.canonicalLayers`).
    public static func identifyingValues(head name: String, _ values: [String: HyperparameterValue]) -> [String: HyperparameterValue] {
        guard let schema = try? kind(named: name).schema else { return values }
        var identifying = values.filter { key, value in
            guard let parameter = schema.first(where: { $0.name == key }), parameter.addedLater else { return true }
            return (try? parameter.parse(parameter.defaultValue, head: name)) != value
        }
        // A layer list in one spelling: `1,2,3` and `3,1-2` train the same head.
        for parameter in schema {
            if case .layers = parameter.kind, case .string(let text)? = identifying[parameter.name],
               let canonical = Hyperparameter.canonicalLayers(text) {
                identifying[parameter.name] = .string(canonical)
            }
        }
        return identifying
    }

    /// Builds a head for a cache.
    public static func make(_ name: String, settings: [String: String], context: HeadContext, seed: UInt64) throws -> any Head {
        let kind = try kind(named: name)
        let h = try Hyperparameters(head: name, schema: kind.schema, settings: settings)
        return try kind.make(h, context: context, seed: seed)
    }
}
