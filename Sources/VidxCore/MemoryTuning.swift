#if canImport(Glibc)
// glibc's mallopt(3); <malloc.h> is not part of Swift's Glibc module.
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let glibcMmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
private let glibcTrimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
#endif

/// Process-wide allocator settings for the compute-heavy stages.
public enum MemoryTuning {
    /// Keeps freed large blocks in glibc's heap instead of returning them to the kernel.
    ///
    /// The encoder allocates and frees the same few large activation matrices (megabytes
    /// each) for every layer of every batch. By default glibc serves blocks that large with
    /// `mmap` and unmaps them on `free`, so each allocation faults in and zeroes fresh pages:
    /// a visible share of `vidx-encode`'s wall time (`make bench-encode`), all of it on the
    /// thread that the BLAS workers wait for. With these settings the blocks are reused;
    /// resident memory stays at the high-water mark of one batch. A no-op off glibc.
    public static func reuseLargeAllocations() {
        #if canImport(Glibc)
        _ = glibcMallopt(glibcMmapThreshold, 512 << 20)   // blocks up to 512 MiB come from the heap
        _ = glibcMallopt(glibcTrimThreshold, 1 << 30)     // and are not trimmed back after free
        #endif
    }

    /// Serves every block of 128 KiB or more with `mmap` and unmaps it on `free`, with
    /// glibc's dynamic threshold turned off (setting it does that).
    ///
    /// By default glibc raises its threshold to the size of the last large block freed, so
    /// later blocks of that size come from the heap; `vidx-search` allocates and frees one
    /// batch's lookup tables (32 MB at HCQ's shape) between small allocations that live
    /// longer, the heap fragments, and its resident memory grew with the number of batches,
    /// without bound, depending on thread timing (`IndexSafetyTests.boundedQueries` holds
    /// 2,048 queries under 300 MiB). A no-op off glibc.
    public static func returnLargeAllocations() {
        #if canImport(Glibc)
        _ = glibcMallopt(glibcMmapThreshold, 128 << 10)
        #endif
    }
}
