"""What the benchmark scripts in this folder share: device set-up, the model list, and printing a table."""

import os

import torch

import ftcourse


def bench_device(name: str, threads: int) -> torch.device:
    """The device to measure on, with the CPU thread count fixed; a clear exit if CUDA is asked for but absent."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    os.environ["FTCOURSE_THREADS"] = str(threads)  # seed_everything (called by every recipe) sets this count
    torch.set_num_threads(threads)
    return torch.device(name)


def pick_models(models: str | None, quick: bool, sizes: dict) -> list[tuple[str, int, int]]:
    """(name, image size, batch) for each model asked for (comma-separated), or the default set; clear error otherwise."""
    names = (models or ("course,resnet18" if quick else "course,resnet18,resnet50")).split(",")
    unknown = [n for n in names if n not in sizes]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; choose from {', '.join(sizes)}")
    return [(n, *sizes[n]) for n in names]


def print_table(rows: list[dict], fmt: dict) -> None:
    """The rows as ftcourse's one table type: text columns left-aligned, numbers right-aligned, '-' for None."""
    print(ftcourse.Table(rows, formats=fmt))
