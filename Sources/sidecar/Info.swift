// `sidecar info`: the versions and settings of the numeric and storage libraries this build links.
import ActivationStore
import ArgumentParser
import Foundation
import OneDNN
import TensorCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the linked libraries (OpenBLAS, oneDNN, LMDB, zstd) and their settings.")

    func run() throws {
        print("sidecar   \(Sidecar.configuration.version)")
        print("OpenBLAS  \(BLAS.configuration)")
        // A core named in the environment wins over OpenBLAS's own choice: an AVX2 set named on an
        // AVX-512 CPU made LoSA's training take 30–46% more CPU time here, so say where it came from.
        let chosen = BLAS.kernelSelection.map { _ in " (chosen by sidecar: OpenBLAS fell back to generic kernels)" }
            ?? ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].map { _ in " (named by OPENBLAS_CORETYPE)" } ?? ""
        print("          kernels \(BLAS.coreName)\(chosen), \(BLAS.threadCount) threads")
        print("oneDNN    \(OneDNN.version), \(OneDNN.instructionSet); bf16 products \(OneDNN.supportsBF16 ? "available" : "unavailable")"
              + ", --compute auto → \(ComputePath.automatic.rawValue)")
        print("LMDB      \(LMDBEnvironment.version)")
        print("zstd      \(ZstdDecompressor.version)")
    }
}
