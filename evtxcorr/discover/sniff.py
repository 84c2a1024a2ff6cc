"""What a file is, from its first bytes: the SIGNATURES table, read top to bottom, first match wins."""

from __future__ import annotations

from pathlib import Path

HEAD_SIZE = 4096 + 8  # enough to see a chunk signature behind a damaged file header

# (kind, offset, magic). 'evtx' also when only the first chunk's signature is intact.
SIGNATURES: tuple[tuple[str, int, bytes], ...] = (
    ("evtx", 0, b"ElfFile\x00"),
    ("evtx", 4096, b"ElfChnk\x00"),
    ("zip", 0, b"PK\x03\x04"),
    ("zip", 0, b"PK\x05\x06"),  # empty archive
    ("zip", 0, b"PK\x07\x08"),  # spanned archive marker before the first local header
    ("7z", 0, b"7z\xbc\xaf\x27\x1c"),
    ("cab", 0, b"MSCF\x00\x00\x00\x00"),  # Microsoft Cabinet (diagnostic packages)
    ("gzip", 0, b"\x1f\x8b"),  # .gz, .tar.gz, .tgz
    ("bzip2", 4, b"\x31\x41\x59\x26\x53\x59"),  # 'BZh9' then the block magic
    ("xz", 0, b"\xfd7zXZ\x00"),
    ("tar", 257, b"ustar"),
    ("rar", 0, b"Rar!\x1a\x07"),
    ("xml", 0, b"<?xml"),
    ("xml", 0, b"\xef\xbb\xbf<?xml"),
    ("xml", 0, b"<Events"),
    ("text", 0, b"\xef\xbb\xbf"),  # UTF-8 BOM
    ("text", 0, b"\xff\xfe"),  # UTF-16LE BOM (Event Viewer / PowerShell exports)
    ("text", 0, b"\xfe\xff"),
)


def sniff_bytes(head: bytes) -> str:
    """A kind of SIGNATURES, 'text', 'empty' or 'unknown' for the first bytes of a file."""
    if not head:
        return "empty"
    for kind, offset, magic in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:4096]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(sample) - 4  # a multi-byte character cut by the sample end
    return True


def sniff(path: Path) -> str:
    """Kind of the file at `path` (raises OSError when it cannot be read)."""
    with path.open("rb") as fh:
        return sniff_bytes(fh.read(HEAD_SIZE))
