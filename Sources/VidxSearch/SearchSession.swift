import Foundation
import VidxCore
import VidxIndex
import VidxQuantization

/// A search as `vidx-search` runs it, callable in-process: a generation opened with every
/// check, queries read from a file or rebuilt from an indexed video, scanned in bounded
/// batches, and every hit checked before it is handed out.
public final class SearchSession: @unchecked Sendable {
    public let generation: IndexGeneration
    public let searcher: Searcher
    /// Seconds spent opening the generation (its checks included).
    public let openSeconds: Double

    /// One returned hit, checked: its stored id is the hash of its external id.
    public struct Hit: Sendable, Equatable {
        public var query: Int
        /// 1 for the best.
        public var rank: Int
        public var id: UInt64
        public var externalID: String
        public var score: Float

        /// The hit as one JSON line (no newline): `{"query":0,"rank":1,"id":...,"external_id":"...","score":...}`.
        public var jsonLine: String {
            let ext = String(decoding: (try? makeJSONEncoder().encode(externalID)) ?? Data("\"\"".utf8), as: UTF8.self)
            return "{\"query\":\(query),\"rank\":\(rank),\"id\":\(id),\"external_id\":\(ext),\"score\":\(score)}"
        }
    }

    /// Opens generation `generation` (default: `CURRENT`'s) of `index`.
    /// - Parameter verifyChecksums: verify every shard section's checksum while opening.
    /// - Throws: `IndexError`, `ShardError` naming the file and the problem.
    public init(index: String, generation: String? = nil, verifyChecksums: Bool = true, threads: Int) throws {
        let clock = ContinuousClock(), start = clock.now
        self.generation = try IndexGeneration(indexDirectory: index, generation: generation, verifyChecksums: verifyChecksums)
        searcher = Searcher(generation: self.generation, threads: threads)
        openSeconds = SearchSession.seconds(clock.now - start)
    }

    /// Values per query: L x D.
    public var queryStride: Int { generation.quantizer.layout.vectorCount }

    /// Query vectors from a file: a `.npy` array, or a safetensors file with tensor
    /// `queries`, of shape (L, D) or (Q, L, D), finite.
    /// - Returns: (Q, L, D) values and Q.
    /// - Throws: `IndexError` naming the file when its shape or values do not fit the index.
    public func queries(fromFile path: String) throws -> (vectors: [Float], count: Int) {
        let shape: [Int], values: [Float]
        if path.hasSuffix(".npy") {
            let a = try NPY.read(path: path)
            (shape, values) = (a.shape, a.values)
        } else {
            let file = try SafeTensorsFile(path: path)
            guard let info = file.info("queries") else {
                throw IndexError(path: path, "no tensor 'queries' (expected F32 (L, D) or (Q, L, D))")
            }
            (shape, values) = (info.shape, try file.floats("queries"))
        }
        let m = generation.manifest, per = queryStride
        guard values.count % per == 0, !values.isEmpty, shape.count >= 2, shape.suffix(2) == [m.levels, m.dimension] else {
            throw IndexError(path: path, "query shape \(shape) is not (\(m.levels), \(m.dimension)) or (Q, \(m.levels), \(m.dimension)) as this index needs")
        }
        guard values.allSatisfy({ $0.isFinite }) else { throw IndexError(path: path, "query holds NaN or infinity") }
        return (values, values.count / per)
    }

    /// The query that finds videos like `externalID`: its levels rebuilt from its codes.
    /// - Throws: `IndexError` when no live video has that id.
    public func query(like externalID: String) throws -> [Float] {
        guard let (s, r) = generation.locate(externalID: externalID) else {
            throw IndexError(path: generation.indexDirectory, "no live video '\(externalID)' in generation \(generation.name)")
        }
        return generation.quantizer.reconstruct(generation.shards[s].codes(at: r))
    }

    /// The best `k` hits of every query, `Searcher.queriesPerPass` queries at a time (one
    /// batch's tables and hits in memory, however many queries there are), handed to
    /// `deliver` batch by batch in query order.
    /// - Parameters:
    ///   - rerank: coarse-to-fine with that many candidates; nil: a full scan.
    ///   - repeats: scan everything this many times (benchmarks); only the last pass is delivered.
    /// - Returns: the seconds the scans took.
    /// - Throws: `IndexError` for a damaged hit (its batch is not delivered), or what
    ///   `deliver` throws.
    @discardableResult
    public func search(_ vectors: [Float], count: Int, k: Int, rerank: Int? = nil, repeats: Int = 1,
                       deliver: ([Hit]) throws -> Void) throws -> Double {
        precondition(vectors.count == count * queryStride && repeats >= 1)
        let per = queryStride, batch = Searcher.queriesPerPass
        let clock = ContinuousClock(), start = clock.now
        for pass in 0..<repeats {
            var q0 = 0
            while q0 < count {
                let q1 = min(count, q0 + batch)
                let tables = searcher.tables(for: Array(vectors[(q0 * per)..<(q1 * per)]), count: q1 - q0)
                let results = searcher.search(tables, k: k, rerank: rerank)
                if pass == repeats - 1 {
                    var hits: [Hit] = []
                    for (q, list) in results.enumerated() {
                        for (rank, h) in list.enumerated() {
                            let ext = try generation.checkedExternalID(shard: Int(h.shard), row: Int(h.row))
                            hits.append(Hit(query: q0 + q, rank: rank + 1, id: h.id, externalID: ext, score: h.score))
                        }
                    }
                    try deliver(hits)
                }
                q0 = q1
            }
        }
        return SearchSession.seconds(clock.now - start)
    }

    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) * 1e-18
    }
}
