// Every module that imports VidxCore also sees the byte layer (MappedFile, ByteCursor,
// Checked, UTF8Validation, RegularFile) without importing it.
@_exported import VidxBytes
