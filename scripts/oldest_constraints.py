"""Print pip constraints that pin every dependency of ftcourse (and of its test extra) to its lower bound.

    python scripts/oldest_constraints.py > constraints.txt
    pip install -c constraints.txt -e ".[test]"

`make test-oldest` builds .venv-oldest this way and runs the unit tests and every lesson there: each lower bound in
pyproject.toml is then a version the course was tested on, all of them at once. A bound `>=2.6` pins `==2.6`
(pip reads it as 2.6.0); a requirement without a lower bound is left free.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lowest_pins(extras=("test",)) -> list[str]:
    """'name==lower bound' for every runtime requirement and those of `extras`, in pyproject.toml's order."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    pins = []
    for req in reqs:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*([^;]*)", req)
        low = re.search(r">=\s*([0-9][0-9.]*)", m.group(2))
        if low:
            pins.append(f"{m.group(1)}=={low.group(1)}")
    return pins


if __name__ == "__main__":
    sys.stdout.write("".join(p + "\n" for p in lowest_pins(sys.argv[1:] or ("test",))))
