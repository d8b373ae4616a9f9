extension Duration {
    /// This duration in seconds (rates, logs and results files want a plain number).
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
