import CVidxScan
import Dispatch
import VidxIndex
import VidxQuantization

/// Scores queries against a generation's live entries with lookup tables (Documentation/HCQ-inference.md, Scoring).
///
/// Full scan: 256 table reads per video (L * M), every live video. Coarse-to-fine
/// (`rerank: K`, the EERCF scheme): read only the 32 coarse bytes of every video, keep the
/// best K by the coarse level's partial score, then score those K with all levels and
/// keep the best k. Queries are scanned eight at a time (lane groups: one 32-byte table
/// read serves eight queries, see CVidxScan), up to 64 per pass over the codes. Shards are
/// cut into row chunks scanned on `threads` threads; each chunk keeps its own top lists,
/// merged at the end. Rankings use a total order (score,
/// then id), and a video's score is always summed in the same order, so results do not
/// depend on the thread count or the chunking (Documentation/Determinism.md, "Search").
public struct Searcher: Sendable {
    public let generation: IndexGeneration
    public let threads: Int
    /// Rows per work item: large, because every item keeps its own top lists (with
    /// coarse-to-fine, K candidates per query) that are merged at the end.
    public static let chunkRows = 131_072

    public init(generation: IndexGeneration, threads: Int) {
        precondition(threads >= 1, "threads must be at least 1")
        self.generation = generation
        self.threads = threads
    }

    /// The scale that turns a table sum into HCQ's score: 1 / (L * M).
    public var scale: Float {
        1 / Float(generation.manifest.levels * generation.manifest.subspaces)
    }

    /// Lookup tables for (Q, L, D) query vectors.
    public func tables(for queries: [Float], count: Int) -> LookupTables {
        generation.quantizer.lookupTables(queries, count: count)
    }

    /// The best `k` live videos per query, best first. With `rerank`, coarse-to-fine with
    /// that many candidates; otherwise a full scan.
    public func search(_ tables: LookupTables, k: Int, rerank: Int? = nil) -> [[SearchHit]] {
        precondition(k >= 1)
        if let rerank {
            let candidates = scan(tables, keep: max(rerank, k), coarseOnly: true)
            // Re-rank each query's candidates, queries spread over the threads.
            let out = UnsafeMutableBufferPointer<[SearchHit]>.allocate(capacity: max(candidates.count, 1))
            out.initialize(repeating: [])
            defer { out.deinitialize(); out.deallocate() }
            nonisolated(unsafe) let slots = out
            let count = candidates.count, workers = min(threads, count)
            DispatchQueue.concurrentPerform(iterations: max(workers, 1)) { w in
                for q in Swift.stride(from: w, to: count, by: max(workers, 1)) {
                    slots[q] = rescore(tables, query: q, hits: candidates[q], k: k)
                }
            }
            return Array(out.prefix(count))
        }
        return scan(tables, keep: k, coarseOnly: false)
    }

    // MARK: Kernels

    /// Sum of `t[m * K + c[m]]` over m < count, in four interleaved partial sums (a fixed
    /// order, whatever the caller): the order `vidx_scan_level8` (CVidxScan) follows in
    /// every lane. Used to re-rank candidates one at a time.
    ///
    /// The codes are read eight at a time as one little-endian UInt64 and split with shifts,
    /// so each table read costs one load instead of two (a byte load and a float load).
    @inline(__always)
    static func tableSum(_ t: UnsafePointer<Float>, _ c: UnsafePointer<UInt8>, count: Int, K: Int) -> Float {
        K == 256 ? tableSum256(t, c, count: count) : tableSumAnyK(t, c, count: count, K: K)
    }

    /// ``tableSum(_:_:count:K:)`` for K = 256 (HCQ's): the table offsets are constants the
    /// compiler folds into the addressing, so nothing spills out of registers.
    @inline(__always)
    static func tableSum256(_ t: UnsafePointer<Float>, _ c: UnsafePointer<UInt8>, count: Int) -> Float {
        var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
        var m = 0
        var tp = t
        let raw = UnsafeRawPointer(c)
        while m &+ 8 <= count {
            let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: m, as: UInt64.self))
            a0 += tp[Int(truncatingIfNeeded: w & 0xFF)]
            a1 += tp[256 &+ Int(truncatingIfNeeded: (w &>> 8) & 0xFF)]
            a2 += tp[512 &+ Int(truncatingIfNeeded: (w &>> 16) & 0xFF)]
            a3 += tp[768 &+ Int(truncatingIfNeeded: (w &>> 24) & 0xFF)]
            a0 += tp[1024 &+ Int(truncatingIfNeeded: (w &>> 32) & 0xFF)]
            a1 += tp[1280 &+ Int(truncatingIfNeeded: (w &>> 40) & 0xFF)]
            a2 += tp[1536 &+ Int(truncatingIfNeeded: (w &>> 48) & 0xFF)]
            a3 += tp[1792 &+ Int(truncatingIfNeeded: w &>> 56)]
            tp += 2048
            m &+= 8
        }
        while m < count {
            a0 += tp[Int(c[m])]
            tp += 256
            m &+= 1
        }
        return (a0 + a1) + (a2 + a3)
    }

    /// ``tableSum(_:_:count:K:)`` for any K, in the same order.
    @inline(__always)
    static func tableSumAnyK(_ t: UnsafePointer<Float>, _ c: UnsafePointer<UInt8>, count: Int, K: Int) -> Float {
        var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
        var m = 0
        var tp = t
        let raw = UnsafeRawPointer(c)
        while m &+ 8 <= count {
            let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: m, as: UInt64.self))
            a0 += tp[Int(truncatingIfNeeded: w & 0xFF)]
            a1 += tp[K &+ Int(truncatingIfNeeded: (w &>> 8) & 0xFF)]
            a2 += tp[2 &* K &+ Int(truncatingIfNeeded: (w &>> 16) & 0xFF)]
            a3 += tp[3 &* K &+ Int(truncatingIfNeeded: (w &>> 24) & 0xFF)]
            a0 += tp[4 &* K &+ Int(truncatingIfNeeded: (w &>> 32) & 0xFF)]
            a1 += tp[5 &* K &+ Int(truncatingIfNeeded: (w &>> 40) & 0xFF)]
            a2 += tp[6 &* K &+ Int(truncatingIfNeeded: (w &>> 48) & 0xFF)]
            a3 += tp[7 &* K &+ Int(truncatingIfNeeded: w &>> 56)]
            tp += 8 &* K
            m &+= 8
        }
        while m < count {
            a0 += tp[Int(c[m])]
            tp += K
            m &+= 1
        }
        return (a0 + a1) + (a2 + a3)
    }

    struct ShardView: @unchecked Sendable {
        let coarse: UnsafePointer<UInt8>?
        let fine: UnsafePointer<UInt8>?
        let ids: UnsafePointer<UInt64>?
        let count: Int
    }

    func views() -> [ShardView] {
        generation.shards.map { s in
            ShardView(coarse: s.coarseCodes.baseAddress, fine: s.fineCodes.baseAddress, ids: s.ids.baseAddress,
                      count: s.count)
        }
    }

    /// A video's full score (all levels), scaled: level 0's sum, plus level 1's, ... in
    /// level order, times 1 / (L M). The one definition of the sum order: the lane scan
    /// (``scanPass(_:keep:coarseOnly:)``) adds level by level in the same order, so a full
    /// scan and a re-ranking agree to the bit.
    @inline(__always)
    static func fullScore(_ t: UnsafePointer<Float>, coarse: UnsafePointer<UInt8>, fine: UnsafePointer<UInt8>,
                          M: Int, L: Int, K: Int, scale: Float) -> Float {
        var s = tableSum(t, coarse, count: M, K: K)
        for l in 1..<max(L, 1) {
            s += tableSum(t + l * M * K, fine + (l - 1) * M, count: M, K: K)
        }
        return s * scale
    }

    /// Queries scanned together in one pass over the codes. Their lane-group tables
    /// (2 MB per 8 queries for HCQ's shapes) are built for the pass and dropped after it.
    public static let queriesPerPass = 64
    /// Rows per block. A level's lane-group table (M x K x 8 floats, 256 KB for HCQ) stays
    /// in L2 while the block's rows read it, each entry about 8192 * 32 / 8192 = 32 times;
    /// the codes stream past it. 8192 rows was the fastest block size on `make bench-search`
    /// (AMD Zen 4, 1 MB L2); larger blocks let the block's scores, 32 bytes a row, crowd L2
    /// too. Retune by changing it and rerunning the benchmark.
    public static let blockRows = 8192

    func scan(_ tables: LookupTables, keep: Int, coarseOnly: Bool) -> [[SearchHit]] {
        var out: [[SearchHit]] = []
        out.reserveCapacity(tables.queries)
        var q0 = 0
        while q0 < tables.queries {
            let q1 = min(tables.queries, q0 + Searcher.queriesPerPass)
            out += scanPass(LaneTables(tables, queries: q0..<q1), keep: keep, coarseOnly: coarseOnly)
            q0 = q1
        }
        return out
    }

    /// One pass over every live row for the queries of `lanes`, level-major over blocks of
    /// rows: for each block, each lane group, each level, the C kernel adds the level's
    /// table sums for eight queries at once (`vidx_scan_level8`). The additions and their
    /// order are fullScore's, lane by lane, so scores do not depend on the grouping.
    func scanPass(_ lanes: LaneTables, keep: Int, coarseOnly: Bool) -> [[SearchHit]] {
        let m = generation.manifest
        let M = m.subspaces, L = m.levels, K = m.codewords
        let scale = self.scale
        let shards = views()
        var chunks: [(shard: Int, start: Int, end: Int)] = []
        for (s, v) in shards.enumerated() {
            var start = 0
            while start < v.count {
                chunks.append((s, start, min(v.count, start + Searcher.chunkRows)))
                start += Searcher.chunkRows
            }
        }
        let items = chunks
        let Q = lanes.queries, groups = lanes.groups
        let levels = coarseOnly ? 1 : max(L, 1)
        let results = UnsafeMutableBufferPointer<[TopK]>.allocate(capacity: max(items.count, 1))
        results.initialize(repeating: [])
        defer { results.deinitialize(); results.deallocate() }
        let generation = self.generation
        nonisolated(unsafe) let out = results
        let work = { (i: Int) in
            let item = items[i]
            let v = shards[item.shard]
            guard let coarse = v.coarse, let ids = v.ids else { return }
            let fine = v.fine ?? coarse  // no fine bytes when L == 1; never read then
            var tops = (0..<Q).map { _ in TopK(k: keep) }
            let block = Searcher.blockRows
            let scores = UnsafeMutableRawPointer.allocate(byteCount: block * 32, alignment: 64)
                .bindMemory(to: Float.self, capacity: block * 8)
            let rows = UnsafeMutablePointer<UInt32>.allocate(capacity: block)
            let masks = UnsafeMutablePointer<UInt8>.allocate(capacity: block)
            defer { scores.deallocate(); rows.deallocate(); masks.deallocate() }
            var threshold = [Float](repeating: .infinity, count: 8)
            var b0 = item.start
            while b0 < item.end {
                let n = min(item.end, b0 + block) - b0
                for g in 0..<groups {
                    for l in 0..<levels {
                        let codes = l == 0 ? coarse + b0 * M : fine + (b0 * (L - 1) + l - 1) * M
                        vidx_scan_level8(lanes.table(group: g, level: l), codes, l == 0 ? M : (L - 1) * M, n,
                                         UInt32(M), UInt32(K), scores, l == 0 ? 0 : 1)
                    }
                    // Rows where some lane reaches its query's bar at the block's start (bars
                    // only rise, so this is a superset), then each lane against its current bar.
                    let q0 = g * 8, width = min(8, Q - q0)
                    for lane in 0..<width { threshold[lane] = tops[q0 + lane].threshold }
                    let found = vidx_scan_select8(scores, n, scale, coarseOnly ? 0 : 1, threshold, rows, masks)
                    for f in 0..<found {
                        let j = Int(rows[f]), r = b0 + j
                        guard generation.isLive(shard: item.shard, row: r) else { continue }
                        let mask = Int(masks[f])
                        for lane in 0..<width where mask & (1 << lane) != 0 {
                            let score = scores[j * 8 + lane]
                            if score >= tops[q0 + lane].threshold {
                                tops[q0 + lane].offer(SearchHit(score: score, id: ids[r], shard: item.shard, row: r))
                            }
                        }
                    }
                }
                b0 += n
            }
            out[i] = tops
        }
        let workers = min(threads, items.count), itemCount = items.count
        if workers > 1 {
            nonisolated(unsafe) let run = work  // each item writes only its own result slot
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for i in Swift.stride(from: w, to: itemCount, by: workers) { run(i) }
            }
        } else {
            for i in items.indices { work(i) }
        }
        var merged = (0..<Q).map { _ in TopK(k: keep) }
        for i in items.indices {
            for q in 0..<Q where q < results[i].count { merged[q].merge(results[i][q]) }
        }
        return merged.map { $0.sorted() }
    }

    /// Full scores for `hits` (coarse-stage candidates), best `k` of them.
    func rescore(_ tables: LookupTables, query q: Int, hits: [SearchHit], k: Int) -> [SearchHit] {
        let m = generation.manifest
        let M = m.subspaces, L = m.levels, K = m.codewords
        let shards = views()
        var top = TopK(k: k)
        tables.values.withUnsafeBufferPointer { tv in
            let t = tv.baseAddress! + q * tables.stride
            for h in hits {
                let v = shards[Int(h.shard)]
                let r = Int(h.row)
                let score = Searcher.fullScore(t, coarse: v.coarse! + r * M, fine: (v.fine ?? v.coarse!) + r * (L - 1) * M,
                                               M: M, L: L, K: K, scale: scale)
                top.offer(SearchHit(score: score, id: h.id, shard: Int(h.shard), row: r))
            }
        }
        return top.sorted()
    }
}
