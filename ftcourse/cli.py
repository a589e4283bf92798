"""`ftcourse doctor` (is everything here and intact?) and `ftcourse pretrain` (rebuild the backbone)."""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys

__all__ = ["main", "doctor"]

_PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "tqdm")


def doctor(out=print) -> bool:
    """Print versions, device and data checksums; return True if everything needed is OK."""
    from .files import ChecksumError, data_dir, read_manifest, verified_path

    ok = True
    out(f"python       {platform.python_version()} ({sys.executable})")
    for name in _PACKAGES:
        try:
            mod = importlib.import_module(name)
            out(f"{name:<12} {getattr(mod, '__version__', '?')}")
        except ImportError as exc:
            ok = False
            out(f"{name:<12} MISSING ({exc}); install with: pip install -e .")
    import torch

    cuda = torch.cuda.is_available()
    gpu = f", GPU: {torch.cuda.get_device_name(0)}" if cuda else ""
    out(f"device       FTCOURSE_DEVICE={os.environ.get('FTCOURSE_DEVICE', 'cpu (default)')}; "
        f"cuda available: {cuda}{gpu}; CPU threads: {torch.get_num_threads()}")
    out(f"data         {data_dir()}")
    try:
        files = read_manifest()["files"]
    except ChecksumError as exc:
        out(f"  FAIL  {exc}")
        return False
    for name in files:
        try:
            verified_path(name)
            out(f"  OK    {name} (sha256 {files[name]['sha256'][:12]}...)")
        except ChecksumError as exc:
            ok = False
            out(f"  FAIL  {exc}")
    if ok:
        from .models import load_pretrained

        load_pretrained()
        out("  OK    pretrained backbone loads (weights_only=True)")
    out("doctor: all good" if ok else "doctor: problems found (see FAIL lines above)")
    return ok


def _pretrain(args) -> int:
    from .files import read_manifest
    from .pretrain import pretrain

    summary = pretrain(out=args.out, epochs=args.epochs, progress=not args.quiet)
    for k, v in summary.items():
        print(f"{k:<22} {v}")
    if args.out:
        shipped = read_manifest().get("backbone", {})
        print(f"shipped backbone: source accuracy {shipped.get('source_test_accuracy')}, "
              f"sha256 {read_manifest()['files'][shipped['file']]['sha256'][:12]}...")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check versions, device and data checksums")
    p = sub.add_parser("pretrain", help="retrain the course backbone on the source task (about 1 min on 2 cores)")
    p.add_argument("--out", help="write the checkpoint here instead of data/backbone.pt (manifest untouched)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (for a quick try)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return 0 if doctor() else 1
    return _pretrain(args)


if __name__ == "__main__":
    sys.exit(main())
