/// A shard file that cannot be read or breaks Schemas/index-shard.md (or shard contents a
/// writer refuses): what kind of problem, in which file and section, and the details.
///
/// `description` is one line: `PATH: section fine_codes: bad checksum: stored 0x..., computed 0x...`.
public struct ShardError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The class of problem; raw values are those of `Pipelines/tools/vidx_index.py`.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// The file cannot be opened, stat'ed or mapped, or is not a regular file.
        case unreadable
        /// Shorter than its header, or than the `file_size` the header records.
        case truncated
        /// Not `VIDXSHRD` at the start or not `VIDXEND\0` at the end: not a shard, or damaged.
        case badMagic = "bad_magic"
        /// A format version newer than this code reads: upgrade vidx.
        case tooNew = "too_new"
        /// A format version older than this code still reads: rebuild the index.
        case tooOld = "too_old"
        /// A header (or trailer) field out of range: flags, reserved bytes, sizes, shape, shard index.
        case badHeader = "bad_header"
        /// `header_crc` does not match the header's bytes.
        case badHeaderChecksum = "bad_header_checksum"
        /// A table entry misplaced, overlapping, out of bounds, duplicated or missing.
        case badSectionTable = "bad_section_table"
        /// A section's length differs from what the header's counts require.
        case badSectionLength = "bad_section_length"
        /// A section kind this code does not know, marked required.
        case unknownRequiredSection = "unknown_required_section"
        /// A section's CRC or the file's CRC does not match the bytes.
        case badChecksum = "bad_checksum"
        /// The bytes are well placed but their values break a rule (order, shard, UTF-8, code range).
        case badContent = "bad_content"

        /// The kind in words, as `description` prints it ("bad checksum").
        public var text: String { rawValue.replacingUnderscores() }
    }

    public let kind: Kind
    /// The file, as given to the reader or writer.
    public let path: String
    /// The section's spec name (`fine_codes`, `section kind 99`), or nil when the problem is
    /// in the header, the table as a whole, the padding or the trailer.
    public let section: String?
    /// What is wrong, with the values found and expected.
    public let message: String

    public init(_ kind: Kind, path: String, section: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.section = section
        self.message = message
    }

    public var description: String {
        // Unknown kinds are already named "section kind N".
        let place = section.map { $0.hasPrefix("section ") ? "\($0): " : "section \($0): " } ?? ""
        return "\(path): \(place)\(kind.text): \(message)"
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        String(map { $0 == "_" ? " " : $0 })
    }
}
