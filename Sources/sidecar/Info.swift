// `sidecar info`: the versions and settings of the numeric and storage libraries this build links.
import ActivationStore
import ArgumentParser
import OneDNN
import TensorCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the linked libraries (OpenBLAS, oneDNN, LMDB, zstd) and their settings.")

    func run() throws {
        print("sidecar   \(Sidecar.configuration.version)")
        print("OpenBLAS  \(BLAS.configuration)")
        let chosen = BLAS.kernelSelection.map { _ in " (chosen by sidecar: OpenBLAS fell back to generic kernels)" } ?? ""
        print("          kernels \(BLAS.coreName)\(chosen), \(BLAS.threadCount) threads")
        print("oneDNN    \(OneDNN.version), \(OneDNN.instructionSet); bf16 products \(OneDNN.supportsBF16 ? "available" : "unavailable")"
              + ", --compute auto → \(ComputePath.automatic.rawValue)")
        print("LMDB      \(LMDBEnvironment.version)")
        print("zstd      \(ZstdDecompressor.version)")
    }
}
