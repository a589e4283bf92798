"""The one table type every report and benchmark prints through: rows of dicts as text (print) or HTML (notebook)."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

__all__ = ["Table", "TableReport", "format_cell"]


def format_cell(v, fmt: str | None = None) -> str:
    """One cell as text: `fmt` if given ("{:.2f}"), '-' for None, thousands separators for ints, 3 digits for floats."""
    if v is None:
        return "-"
    if fmt is not None:
        return fmt.format(v)
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


@dataclass
class Table:
    """Rows of dicts shown as a text table (print) or an HTML table (notebook); warnings and notes listed below.

    Columns are the rows' keys in order of appearance; `formats` maps a column to a format string.
    Text columns are left-aligned, numeric ones right-aligned.
    """

    rows: list[dict]
    warnings: list[str] = field(default_factory=list)
    title: str = ""
    formats: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def columns(self) -> list[str]:
        """Column names in order of first appearance."""
        return list(dict.fromkeys(k for row in self.rows for k in row))

    def cells(self) -> list[list[str]]:
        """The formatted text of every cell, one list per row."""
        return [[format_cell(row.get(c), self.formats.get(c)) if c in row else "" for c in self.columns()]
                for row in self.rows]

    def _numeric(self) -> list[bool]:
        return [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in self.rows)
                and any(isinstance(r.get(c), (int, float)) for r in self.rows) for c in self.columns()]

    def __str__(self) -> str:
        cols, cells = self.columns(), self.cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]

        def line(values, numeric):
            return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

        numeric = self._numeric()
        out = ([self.title] if self.title else []) + [line(cols, numeric), line(["-" * w for w in widths], numeric)]
        out += [line(r, numeric) for r in cells]
        out += [f"WARNING: {w}" for w in self.warnings] + list(self.notes)
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns())
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.cells())
        title = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        warn = "".join(f"<p><b>WARNING:</b> {html.escape(w)}</p>" for w in self.warnings)
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{warn}{notes}"




class TableReport:
    """Mixin for a report that shows itself as a Table: print it for text, a notebook shows the HTML.

    The subclass defines `table() -> Table`; a dataclass subclass needs `@dataclass(repr=False)` to keep this repr.
    """

    def table(self) -> Table:
        raise NotImplementedError(f"{type(self).__name__} must define table() -> Table")

    def __str__(self) -> str:
        return str(self.table())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()
