"""The plain-text table every benchmark prints (shared by the scripts in this folder)."""


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
