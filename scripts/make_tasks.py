"""Rebuild the two extra target tasks' data files, data/uci_digits.npy.gz and data/textures.npy.gz.

    pip install scikit-learn scikit-image && python scripts/make_tasks.py
    python scripts/make_tasks.py --out /tmp/check    # rebuild elsewhere and compare with data/MANIFEST.json

scikit-learn and scikit-image are needed only here (they hold the source images); ftcourse reads the
outputs with numpy. Both files are byte-for-byte reproducible (pure numpy arithmetic, gzip mtime 0);
their sha256 are in data/MANIFEST.json and the script says whether the rebuilt files match them.

File format (both): gzip of a .npy uint8 array (N, 1026): 1024 pixels of a 32x32 grey image, the label,
then the split (0 = few-shot training pool, 1 = validation, 2 = test), fixed here once and for all.

near task, uci_digits.npy.gz: the UCI optical-recognition handwritten digits bundled with scikit-learn
(`sklearn.datasets.load_digits`: 1,797 8x8 images, 17 grey levels 0..16, other writers than MNIST;
Alpaydin & Kaynak 1998, UCI ML repository, CC BY 4.0). Each digit fills its 8x8 box in height, as an
MNIST digit fills a 20-pixel box, so it is scaled bilinearly to 20x20 and centred on a 32x32 black canvas.
174 images of each digit (the rarest digit's count), split 70 pool / 24 validation / 80 test per class.
`ftcourse.near_task` adds the course's clutter (fragments of other digits) when it loads them.

far task, textures.npy.gz: 32x32 patches of five grey textures shipped inside scikit-image's wheel
(`skimage.data`): brick, grass, gravel (CC0), immunohistochemistry (no known copyright restrictions) and
a 512x512 crop of the Hubble deep field (NASA, public domain). Each 512x512 image is cut into 16x16
non-overlapping 32x32 tiles, grouped in 4x4 blocks of 4x4 tiles (128x128 pixels); whole blocks go to one
split (8 blocks pool, 2 validation, 6 test, the same block pattern for every image), so no patch of one
split overlaps a patch of another: 128 pool, 32 validation and 96 test patches per class.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data"
NEAR, FAR = "uci_digits.npy.gz", "textures.npy.gz"
POOL, VAL, TEST = 0, 1, 2

NEAR_PER_CLASS = 174  # the rarest digit (8) has 174 images
NEAR_SPLIT = (70, 24, 80)  # pool, validation, test per class
NEAR_SEED = 2024  # which image of each digit goes to which split

TEXTURES = ("brick", "grass", "gravel", "immunohistochemistry", "hubble_deep_field")
TILE, GRID = 32, 16  # 16x16 tiles of 32x32 pixels per 512x512 image
# split of each 128x128 block (4x4 blocks per image): 8 pool, 2 validation, 6 test, spread over the image
BLOCKS = np.array([[0, 2, 0, 2],
                   [2, 0, 1, 0],
                   [0, 2, 0, 2],
                   [1, 0, 2, 0]])


# sha256 of the inputs as read with scikit-learn 1.9.1 / scikit-image 0.26.0 (numpy 2.4.6): if a later release
# changes a bundled image, the script says which one, since the outputs then cannot match the manifest
SOURCE_SHA256 = {
    "sklearn digits": "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826",
    "brick": "664a145c5253f0d66db1a12776785f0ea35a44cc7447ffc933f6d6118dc58643",
    "grass": "b18dae4c68bf850a7a7b28a29d1846c76be890665117b57fd125fe29c4d4ede6",
    "gravel": "3d51ad45f789cd8b98534b7af6bce774e499ead45421135afd757358c7230009",
    "immunohistochemistry": "89a2c065e53d64c99fd7d8558486951638204ee89abebc9c89d6eedbb257ee6f",
    "hubble_deep_field": "f586696712f31156f61fffda737c3c1f7e6af3ba280d5d71d12778c8335b1762",
}


def _check_source(name: str, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256[name]:
        print(f"warning: the input {name!r} differs from the one the shipped file was built from "
              f"(sha256 {digest[:12]}..., expected {SOURCE_SHA256[name][:12]}...); install the versions named above")


def bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a 2-D float64 array to (size, size), pixel centres aligned (align_corners=False)."""
    def weights(n_in: int) -> np.ndarray:
        pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        w = np.zeros((size, n_in))
        w[np.arange(size), lo] += 1 - (pos - lo)
        w[np.arange(size), hi] += pos - lo
        return w
    return weights(image.shape[0]) @ image @ weights(image.shape[1]).T


def near_table() -> np.ndarray:
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = d.images, d.target
    _check_source("sklearn digits", images.astype(np.uint8).tobytes() + labels.astype(np.uint8).tobytes())
    rng = np.random.default_rng(NEAR_SEED)
    rows = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))[:NEAR_PER_CLASS]
        bounds = np.cumsum((0,) + NEAR_SPLIT)
        for split in (POOL, VAL, TEST):
            for i in idx[bounds[split]:bounds[split + 1]]:
                canvas = np.zeros((32, 32))
                canvas[6:26, 6:26] = bilinear(images[i] / 16.0, 20)
                pixels = np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8).ravel()
                rows.append(np.concatenate([pixels, [c, split]]).astype(np.uint8))
    return np.stack(rows)


def _grey(name: str) -> np.ndarray:
    """A texture as a uint8 512x512 grey image (luminance 0.2125 R + 0.7154 G + 0.0721 B for colour)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = np.rint(img[..., :3].astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])).astype(np.uint8)
    h, w = img.shape
    top, left = (h - 512) // 2, (w - 512) // 2  # the central 512x512 (only the Hubble field is larger)
    img = np.ascontiguousarray(img[top:top + 512, left:left + 512])
    _check_source(name, img.tobytes())
    return img


def far_table() -> np.ndarray:
    images = [_grey(name) for name in TEXTURES]
    rows = []
    for split in (POOL, VAL, TEST):
        for c, img in enumerate(images):
            for ty in range(GRID):
                for tx in range(GRID):
                    if BLOCKS[ty // 4, tx // 4] == split:
                        tile = img[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE]
                        rows.append(np.concatenate([tile.ravel(), [c, split]]).astype(np.uint8))
    return np.stack(rows)


def write(table: np.ndarray, path: Path) -> str:
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=False)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DATA, help="folder to write the two files to (default: data/)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((DATA / "MANIFEST.json").read_text())["files"]
    mismatches = 0
    for name, table in ((NEAR, near_table()), (FAR, far_table())):
        path = args.out / name
        digest = write(table, path)
        known = manifest.get(name, {}).get("sha256")
        verdict = "matches MANIFEST.json" if digest == known else ("DIFFERS from MANIFEST.json" if known else "new")
        mismatches += bool(known) and digest != known
        print(f"wrote {path}: {path.stat().st_size} bytes, {len(table)} images, sha256 {digest} ({verdict})")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
