/// What a built-in expert produces for one video: a time series of feature vectors, each
/// with the time window it summarises (the `v{i}/{E}/features` and `v{i}/{E}/times` tensors
/// of Schemas/features.md).
///
/// Layouts: `features` is (rows, width), Float32, row-major; `times` is (rows, 2), Float32,
/// row-major: start then end of each row's window in seconds from the start of the video.
/// Rows are in time order. Zero rows means the expert is missing for the video.
public struct ExpertSeries: Sendable, Equatable {
    /// The length of one feature vector.
    public var width: Int
    /// The number of feature vectors.
    public var rows: Int
    /// (rows, width), row-major.
    public var features: [Float]
    /// (rows, 2), row-major: start, end seconds.
    public var times: [Float]

    /// A series over `features` and `times`.
    /// - Precondition: `features.count == rows * width` and `times.count == rows * 2`.
    public init(width: Int, rows: Int, features: [Float], times: [Float]) {
        precondition(width >= 0 && rows >= 0, "ExpertSeries dimensions must be non-negative")
        precondition(features.count == rows * width,
                     "ExpertSeries has \(features.count) feature values for \(rows) rows of \(width)")
        precondition(times.count == rows * 2, "ExpertSeries has \(times.count) time values for \(rows) rows")
        self.width = width
        self.rows = rows
        self.features = features
        self.times = times
    }

    /// An empty series (zero rows) of vectors of `width` values.
    public init(width: Int) {
        self.init(width: width, rows: 0, features: [], times: [])
    }

    /// Appends one row: `vector` (exactly `width` values) over the window [start, end] seconds.
    mutating func append<C: Collection>(_ vector: C, start: Double, end: Double) where C.Element == Float {
        precondition(vector.count == width, "ExpertSeries row has \(vector.count) values, expected \(width)")
        features.append(contentsOf: vector)
        times.append(Float(start))
        times.append(Float(end))
        rows += 1
    }
}
