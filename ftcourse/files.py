"""Where the shipped data lives and how its checksums are checked (bottom layer, no torch)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["ChecksumError", "data_dir", "sha256_file", "read_manifest", "verified_path"]


class ChecksumError(RuntimeError):
    """A shipped file is missing, or its sha256 differs from data/MANIFEST.json."""


def data_dir() -> Path:
    """The course's data folder: $FTCOURSE_DATA if set, else `data/` next to the package."""
    env = os.environ.get("FTCOURSE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest() -> dict:
    """data/MANIFEST.json as a dict (files -> sha256, size, source, licence, how made)."""
    path = data_dir() / "MANIFEST.json"
    if not path.exists():
        raise ChecksumError(f"{path} not found: is FTCOURSE_DATA pointing at the course's data/ folder?")
    return json.loads(path.read_text())


def verified_path(name: str) -> Path:
    """Path of a shipped file after checking its sha256 against the manifest."""
    entry = read_manifest()["files"].get(name)
    if entry is None:
        raise ChecksumError(f"{name!r} is not listed in data/MANIFEST.json")
    path = data_dir() / name
    if not path.exists():
        raise ChecksumError(f"{path} is missing; run `ftcourse doctor` (and see README, 'Data')")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ChecksumError(
            f"{path} has sha256 {digest[:12]}..., expected {entry['sha256'][:12]}... "
            "(file changed or corrupted; restore it with `git checkout -- data/`)"
        )
    return path
