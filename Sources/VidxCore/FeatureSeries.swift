/// One expert's features for one video: a time series of feature vectors, each with the
/// time window it summarises. What an expert produces, what a features file stores
/// (the `v{i}/{E}/features` and `v{i}/{E}/times` tensors of Schemas/features.md) and what
/// the encoder reads.
///
/// Layouts: `features` is (rows, width), Float32, row-major; `times` is (rows, 2), Float32,
/// row-major: start then end of each row's window in seconds from the start of the video
/// (-1, -1 for experts without timing). Rows are in time order. Zero rows, or a first
/// value that is NaN (`isMaskedByNaN`), means the expert is missing for the video.
public struct FeatureSeries: Sendable, Equatable {
    /// The number of feature vectors.
    public private(set) var rows: Int
    /// The length of one feature vector.
    public let width: Int
    /// (rows, width), row-major.
    public private(set) var features: [Float]
    /// (rows, 2), row-major: start, end seconds.
    public private(set) var times: [Float]

    /// A series over `features` and `times`.
    /// - Precondition: `features.count == rows * width` and `times.count == rows * 2`.
    public init(rows: Int, width: Int, features: [Float], times: [Float]) {
        precondition(width >= 0 && rows >= 0, "FeatureSeries dimensions must be non-negative")
        precondition(features.count == rows * width,
                     "FeatureSeries has \(features.count) feature values for \(rows) rows of \(width)")
        precondition(times.count == rows * 2, "FeatureSeries has \(times.count) time values for \(rows) rows")
        self.rows = rows
        self.width = width
        self.features = features
        self.times = times
    }

    /// An empty series (zero rows) of vectors of `width` values.
    public init(width: Int) {
        self.init(rows: 0, width: width, features: [], times: [])
    }

    /// Appends one row: `vector` (exactly `width` values) over the window [start, end] seconds.
    public mutating func append<C: Collection>(_ vector: C, start: Double, end: Double) where C.Element == Float {
        precondition(vector.count == width, "FeatureSeries row has \(vector.count) values, expected \(width)")
        features.append(contentsOf: vector)
        times.append(Float(start))
        times.append(Float(end))
        rows += 1
    }

    /// Whether HCQ treats this matrix as missing because its first value is NaN (its
    /// reference code does; NaN anywhere else is an error, `bad_features`).
    public var isMaskedByNaN: Bool { rows > 0 && !features.isEmpty && features[0].isNaN }
}
