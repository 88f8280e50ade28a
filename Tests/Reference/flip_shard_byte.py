"""Flips one bit of one byte inside a named section of a shard file, in place, leaving
every checksum as it was (what a bad disk or a bad copy does).

usage: flip_shard_byte.py SHARD.vidx SECTION POSITION

SECTION is a section name of Schemas/index-shard.md (ids, external_ids, coarse_codes,
fine_codes, ...); POSITION the byte within the section (negative: from its end). The
lowest bit is flipped, so a code below an even K stays below K.
"""
import sys

import vidx_index


def main():
    path, name, position = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with vidx_index.Shard(path, verify_checksums=False) as shard:
        entry = next(e for e in shard.sections if vidx_index._section_name(e["kind"]) == name)
        offset, length = entry["offset"], entry["length"]
    at = offset + (position if position >= 0 else length + position)
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ 1]))
    print(at)


if __name__ == "__main__":
    main()
