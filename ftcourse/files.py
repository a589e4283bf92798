"""Where the shipped data lives, how its checksums are checked, and atomic writes (bottom layer, no torch)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ChecksumError", "course_folder", "data_dir", "sha256_file", "read_manifest", "verified_path", "atomic_path",
           "atomic_write_bytes", "atomic_write_text"]


class ChecksumError(RuntimeError):
    """A shipped file is missing, or its sha256 differs from data/MANIFEST.json."""


def course_folder(checkout_name: str, packaged_name: str, marker: str) -> Path:
    """A folder the course ships: `checkout_name` next to the package in a checkout (or `pip install -e .`),
    else `packaged_name` inside the installed package (a wheel carries it there); `marker` (a glob) tells a real
    course folder from an unrelated one of the same name."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / checkout_name
    return checkout if any(checkout.glob(marker)) else package / packaged_name


def data_dir() -> Path:
    """The course's data folder: $FTCOURSE_DATA if set, else `data/` of the checkout, else the installed package's
    copy (ftcourse/course_data, in a wheel)."""
    env = os.environ.get("FTCOURSE_DATA")
    return Path(env) if env else course_folder("data", "course_data", "MANIFEST.json")


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
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChecksumError(f"{path} is not valid JSON ({exc}): restore it with `git checkout -- data/`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ChecksumError(f"{path} has no 'files' table: restore it with `git checkout -- data/`")
    return manifest


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


def _fsync(path: Path) -> None:
    """Flush a file's bytes (or, on POSIX, a folder's entries) to disk."""
    if path.is_dir() and os.name != "posix":
        return  # folders cannot be opened for fsync on Windows; os.replace is atomic there anyway
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; if the block succeeds, fsync it and os.replace it onto `path`.

    Readers see the old file or the complete new one, never a half-written one; if the block raises
    (or the process dies), `path` is untouched and the temporary file is deleted (or, after a crash,
    left as a hidden `.NAME.*.tmp`). An existing target keeps its permission bits.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # some file systems cannot sync a folder; the file itself is safe
        _fsync(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_path): the old content stays if anything fails."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (see atomic_path): the old content stays if anything fails."""
    atomic_write_bytes(path, text.encode("utf-8"))
