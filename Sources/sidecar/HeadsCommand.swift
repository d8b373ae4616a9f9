// `sidecar heads`: every head with its hyperparameters, types, ranges and defaults.
import ArgumentParser
import SideNetworks

struct HeadsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heads",
        abstract: "List the side networks and probes `fit` can train, with their hyperparameters.")

    func run() {
        for kind in HeadRegistry.kinds {
            print("\(kind.name): \(kind.summary) (default lr \(kind.defaultLearningRate))")
            for parameter in kind.schema { print("  --set \(parameter.usage)") }
        }
    }
}
