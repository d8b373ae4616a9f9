// swift-tools-version:6.0
// Sidecar: extract a frozen backbone's activations once (stage one), train many side networks on
// the cache (stage two). Stage-two targets never import the encoder targets; build with
// `--explicit-target-dependency-import-check error` so that boundary is a build error.
import PackageDescription

// The kernels' loops and SIMD types vectorise only when the compiler may use AVX2 and FMA; for the
// default x86-64 baseline (SSE2) GELU alone measured 25× slower. Haswell (2013) and newer CPUs.
#if arch(x86_64)
let vectorCode: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let vectorCode: [SwiftSetting] = []
#endif
// The numeric targets are optimised in debug builds too: the tests run the real backbone, and
// unoptimised kernels make them ten times slower.
let numericCode = vectorCode + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "Sidecar",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sidecar", targets: ["sidecar"]),
        .executable(name: "sidecar-bench", targets: ["Benchmarks"]),
        .executable(name: "sidecar-fuzz", targets: ["Fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // System libraries from Debian: libopenblas-dev, liblmdb-dev, libzstd-dev, libpng-dev,
        // libturbojpeg0-dev, zlib1g-dev, libdnnl-dev.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB"),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),

        // Shared core.
        .target(name: "TensorCore", dependencies: ["CBLAS", "CMalloc"], swiftSettings: numericCode),
        .target(name: "Autodiff", dependencies: ["TensorCore"], swiftSettings: numericCode),
        .target(name: "SafeTensors", dependencies: ["TensorCore"]),
        .target(name: "ActivationStore", dependencies: ["TensorCore", "SafeTensors", "CLMDB", "CZstd"], exclude: ["README.md"], swiftSettings: numericCode),

        // Stage one: inputs and the frozen backbones.
        .target(name: "Datasets", dependencies: ["TensorCore", "CPNG", "CTurboJPEG", "CZlib"]),
        // The encoders' bf16 products (oneDNN); stage two never links it.
        .target(name: "OneDNN", dependencies: ["TensorCore", "CDNNL"], swiftSettings: numericCode),
        .target(name: "Encoders", dependencies: ["TensorCore", "SafeTensors", "OneDNN"], swiftSettings: numericCode),
        .target(name: "Extract", dependencies: ["Encoders", "Datasets", "ActivationStore", "SafeTensors", "TensorCore", "OneDNN"]),

        // Stage two: side networks on the cache, and the trainer that streams batches from it.
        .target(name: "SideNetworks", dependencies: ["TensorCore", "Autodiff", "ActivationStore", "OneDNN"], swiftSettings: numericCode),
        .target(name: "Training", dependencies: ["SideNetworks", "Autodiff", "TensorCore", "ActivationStore", "SafeTensors", "OneDNN"],
                swiftSettings: numericCode),
        // Sweeps: a TOML spec expanded into trials, grouped into shared passes, sharded for job arrays;
        // their results files and the report (HTML + inline SVG).
        .target(name: "Sweep", dependencies: ["Training", "SideNetworks", "ActivationStore", "TensorCore", .product(name: "TOMLKit", package: "TOMLKit")]),

        // Inference on raw inputs: the one place where the encoders and the heads meet.
        .target(name: "Predict", dependencies: ["Extract", "Training", "SideNetworks", "ActivationStore", "Datasets", "Autodiff", "TensorCore", "OneDNN"],
                swiftSettings: numericCode),

        // The command-line tool and the benchmarks.
        .executableTarget(
            name: "sidecar",
            dependencies: [
                "TensorCore", "Autodiff", "SafeTensors", "ActivationStore", "Datasets", "Encoders", "Extract",
                "SideNetworks", "Training", "Predict", "Sweep", "CMalloc", "OneDNN", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "Benchmarks",
            dependencies: ["TensorCore", "Autodiff", "CBLAS", "ActivationStore", "Encoders", "Extract", "SideNetworks", "Training", "Predict", "Datasets", "OneDNN",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            exclude: ["peers"]),
        // libFuzzer targets for the parsers of untrusted input (`make fuzz` builds them with
        // --sanitize=fuzzer; an ordinary build only replays files), seed corpora in Corpus/.
        .executableTarget(
            name: "Fuzz",
            dependencies: ["SafeTensors", "Encoders", "Datasets", "ActivationStore", "TensorCore", "CPNG", "CTurboJPEG", "CZlib"],
            exclude: ["Corpus"]),

        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"]),
        .testTarget(name: "AutodiffTests", dependencies: ["Autodiff", "TensorCore"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TensorCore"], exclude: ["Fixtures"]),
        .testTarget(name: "ActivationStoreTests", dependencies: ["ActivationStore", "CLMDB", "TensorCore"]),
        .testTarget(
            name: "DatasetsTests",
            dependencies: ["Datasets", "CPNG", "CTurboJPEG", "CZlib"],
            exclude: ["Fixtures"]),
        .testTarget(name: "EncodersTests", dependencies: ["Encoders", "TensorCore", "OneDNN"], exclude: ["Fixtures"]),
        .testTarget(name: "ExtractTests", dependencies: ["Extract", "ActivationStore", "Encoders", "Datasets", "TensorCore", "OneDNN"]),
        .testTarget(name: "SideNetworksTests", dependencies: ["SideNetworks", "ActivationStore", "Autodiff", "TensorCore", "OneDNN"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "SideNetworks", "ActivationStore", "Autodiff", "TensorCore", "SafeTensors", "sidecar"]),
        .testTarget(name: "SidecarCLITests", dependencies: ["sidecar", "Encoders", "CPNG", "ActivationStore", "TensorCore", "OneDNN"]),
        .testTarget(name: "SweepTests", dependencies: ["Sweep", "Training", "SideNetworks", "ActivationStore", "TensorCore", "Datasets", "sidecar"]),
    ]
)
