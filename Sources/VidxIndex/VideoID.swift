import VidxCore

/// A video's 64-bit id (Schemas/index-shard.md, Ids): stable across runs, machines and
/// re-shards, and the key that places the video in shard `id % S`.
public enum VideoID {
    /// The first 8 bytes of SHA-256 of `externalID`'s UTF-8 bytes, read as a little-endian u64.
    public static func of(_ externalID: String) -> UInt64 {
        let digest = SHA256Digest.raw(Array(externalID.utf8))
        var id: UInt64 = 0
        for i in 0..<8 { id |= UInt64(digest[i]) << (8 * UInt64(i)) }
        return id
    }
}
