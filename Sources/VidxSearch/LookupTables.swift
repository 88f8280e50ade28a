import Dispatch
import VidxQuantization

/// Lookup tables regrouped for the scan kernel: queries in lane groups of 8, each group's
/// tables interleaved so that entry (l, m, c) holds the 8 queries' values side by side
/// (`vidx_scan_level8`, Sources/CVidxScan). A last group with fewer than 8 queries has
/// zero tables in its unused lanes, which nothing reads back.
final class LaneTables: @unchecked Sendable {
    let queries: Int
    let groups: Int
    /// Floats per (group, level): M * K * 8.
    let levelStride: Int
    let levels: Int
    private let storage: UnsafeMutablePointer<Float>

    /// The lane-group tables of `tables`' queries in `range`.
    init(_ tables: LookupTables, queries range: Range<Int>) {
        queries = range.count
        groups = (range.count + 7) / 8
        levels = tables.levels
        levelStride = tables.subspaces * tables.codewords * 8
        let count = groups * levels * levelStride
        storage = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
        storage.initialize(repeating: 0, count: count)
        let perQuery = tables.stride, base = range.lowerBound
        tables.values.withUnsafeBufferPointer { src in
            for q in 0..<queries {
                let from = src.baseAddress! + (base + q) * perQuery
                let to = storage + (q / 8) * levels * levelStride + q % 8
                for e in 0..<perQuery { to[e * 8] = from[e] }
            }
        }
    }

    deinit { storage.deallocate() }

    /// Group `group`'s table for `level`: M * K * 8 floats.
    @inline(__always)
    func table(group: Int, level: Int) -> UnsafePointer<Float> {
        UnsafePointer(storage + (group * levels + level) * levelStride)
    }
}
