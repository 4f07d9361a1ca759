"""Tests for scripts/fetch_training_photos.py: the Qt .rcc (v3) reader and the pure helpers.

No network and no .deb here: the rcc file is built byte by byte from the format description.
"""
from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_training_photos.py"


def _load():
    name = "fetch_training_photos"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look the module up while the class is built
    spec.loader.exec_module(mod)
    return mod


ftp = _load()


def _build_rcc_v3(dirname: str, files: list[tuple[str, bytes, bool]]) -> bytes:
    """A Qt binary resource (version 3): root -> ``dirname`` -> files; (name, bytes, zlib?)."""
    # data section: u32 size + payload; zlib payloads carry a 4-byte BE uncompressed size first
    data = b""
    data_offsets = []
    for _, content, compress in files:
        payload = struct.pack(">I", len(content)) + zlib.compress(content) if compress else content
        data_offsets.append(len(data))
        data += struct.pack(">I", len(payload)) + payload
    # names section: u16 length, u32 hash (unused by readers here), UTF-16BE characters
    names = b""
    name_offsets = {}
    for n in [dirname] + [f[0] for f in files]:
        name_offsets[n] = len(names)
        names += struct.pack(">HI", len(n), 0x1234ABCD) + n.encode("utf-16-be")
    # tree: 22-byte nodes; 0 = root dir, 1 = dirname, 2.. = files
    mtime = struct.pack(">Q", 1_700_000_000_000)
    tree = struct.pack(">IHII", 0, 0x02, 1, 1) + mtime
    tree += struct.pack(">IHII", name_offsets[dirname], 0x02, len(files), 2) + mtime
    for (n, _, compress), doff in zip(files, data_offsets):
        tree += struct.pack(">IHHHI", name_offsets[n], 0x01 if compress else 0x00, 0, 1, doff)
        tree += mtime
    data_off = 24
    names_off = data_off + len(data)
    tree_off = names_off + len(names)
    header = b"qres" + struct.pack(">IIIII", 3, tree_off, data_off, names_off, 0)
    assert len(header) == 24
    return header + data + names + tree


A_BYTES = b"hello zlib " * 50 + bytes(range(256))
B_BYTES = bytes(range(256))[::-1] + b"\x00raw\xff"


def test_rcc_v3_round_trip_names_and_bytes():
    blob = _build_rcc_v3("photos", [("a.webp", A_BYTES, True), ("b.bin", B_BYTES, False)])
    files = ftp.extract_rcc(blob)
    assert files == {"photos/a.webp": A_BYTES, "photos/b.bin": B_BYTES}


def test_rcc_entry_flags_and_stored_payload():
    blob = _build_rcc_v3("d", [("z", A_BYTES, True), ("r", B_BYTES, False)])
    entries = {e.path: e for e in ftp.parse_rcc(blob)}
    assert entries["d/z"].compression == "zlib"
    assert entries["d/r"].compression == "none"
    assert entries["d/r"].payload == B_BYTES  # raw entries are stored verbatim
    assert entries["d/z"].payload[:4] == struct.pack(">I", len(A_BYTES))
    assert len(entries["d/z"].payload) < len(A_BYTES)  # really compressed


def test_rcc_non_ascii_names():
    blob = _build_rcc_v3("Ünïcødé", [("ñame é.txt", b"x", False)])
    assert ftp.extract_rcc(blob) == {"Ünïcødé/ñame é.txt": b"x"}


def test_rcc_bad_magic_and_truncation_are_clear_errors():
    with pytest.raises(ftp.FetchError, match="qres"):
        ftp.parse_rcc(b"nope" + bytes(40))
    blob = _build_rcc_v3("d", [("a", A_BYTES, True)])
    with pytest.raises(ftp.FetchError):
        ftp.parse_rcc(blob[:-30])  # tree cut short


def test_rcc_zlib_size_mismatch_detected():
    blob = bytearray(_build_rcc_v3("d", [("a", b"abc" * 10, True)]))
    # the declared uncompressed size sits right after the u32 entry size at data offset 24
    blob[28:32] = struct.pack(">I", 999)
    with pytest.raises(ftp.FetchError, match="declared"):
        ftp.extract_rcc(bytes(blob))


def test_dep5_last_matching_stanza_wins():
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: Everyone\nLicense: GPL-2+\n\n"
        "Files: nature/a.jpg\n nature/b.jpg\nCopyright: Alice\nLicense: CC0-1.0\n"
        " some licence text\n"
    )
    assert ftp.dep5_lookup(text, "nature/b.jpg") == ("CC0-1.0", "Alice")
    assert ftp.dep5_lookup(text, "other/c.jpg") == ("GPL-2+", "Everyone")


def test_normalise_licence():
    assert ftp.normalise_licence("CC-BY-SA 4.0") == "CC-BY-SA-4.0"
    assert ftp.normalise_licence("Public Domain") == "public-domain"
    assert ftp.normalise_licence("CC0-1.0") == "CC0-1.0"


def test_prepare_image_rgb_and_short_side(tmp_path):
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("LA", (1000, 800), (128, 255)).save(buf, format="PNG")
    im, size = ftp.prepare_image(buf.getvalue())
    assert size == (1000, 800)
    assert im.mode == "RGB" and min(im.size) == 768 and im.size == (960, 768)
    small = BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(small, format="PNG")
    im2, _ = ftp.prepare_image(small.getvalue())
    assert im2.size == (300, 200)  # never upscaled


def test_selection_excludes_forbidden_and_drops():
    members = [m for s in ftp.SOURCES for m in s.members] + [r for s in ftp.SOURCES for r, _ in s.rcc]
    assert not any(ftp.FORBIDDEN.search(m) for m in members)
    assert not any("umang_" in m or "analogpattern_" in m for m in members)
    assert sum(s.expected for s in ftp.SOURCES if s.kind == "deb") == 213
    assert all(len(s.sha256) == 64 for s in ftp.SOURCES)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    src = next(s for s in ftp.SOURCES if s.tag == "imgaug")
    (tmp_path / "wheel").mkdir()
    (tmp_path / "wheel" / src.filename).write_bytes(b"not the real wheel")
    with pytest.raises(ftp.FetchError, match="SHA-256 mismatch") as err:
        ftp.fetch(src, tmp_path)  # file present: no download is attempted
    assert src.sha256 in str(err.value)


def test_refuses_shared_eval_data(tmp_path):
    with pytest.raises(ftp.FetchError, match="eval-data"):
        ftp.run(Path("/work/shared/eval-data/x"), tmp_path)
