"""What the benchmark scripts in this folder share: device set-up and the plain-text table they print."""

import torch


def bench_device(name: str, threads: int) -> torch.device:
    """The device to measure on, with the CPU thread count fixed; a clear exit if CUDA is asked for but absent."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
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
    """A plain text table: text columns left-aligned, numbers right-aligned, '-' for None."""
    cols = list(rows[0])
    cells = [[("-" if r[c] is None else fmt.get(c, "{}").format(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    left = [all(isinstance(r[c], str) for r in rows) for c in cols]

    def line(values):
        return "  ".join(v.ljust(w) if lf else v.rjust(w) for v, w, lf in zip(values, widths, left)).rstrip()

    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
