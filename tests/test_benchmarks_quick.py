"""benchmarks/freeze_cost.py runs in --quick mode and prints its table (no timing assertions)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_freeze_cost_quick_prints_the_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "freeze_cost.py"), "--quick", "--threads", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"^model\s+freeze point\s+trainable\s+step ms\s+fwd ms\s+step/fwd\s+graph nodes\s+peak MiB$",
                     text, re.M)
    for model in ("course", "resnet18"):
        rows = [line for line in text.splitlines() if line.startswith(model + " ")]
        assert len(rows) == 7, rows  # nothing frozen, freeze_to(1..4), head only, fastai
        assert "nothing frozen" in rows[0] and "head only" in rows[5] and "train_bn=True" in rows[6]
        assert all(re.search(r"\d+\.\d\dx\s+\d+\s+-$", r) for r in rows)  # ratio, graph nodes, "-" memory on CPU
        nodes = [int(r.split()[-2]) for r in rows]
        assert nodes[0] > nodes[5] and nodes[6] > nodes[5]  # head only records the least backward work
        assert re.search(rf"^  {model}: head-only \d+\.\d\dx forward \((meets|MISSES) the target\)", text, re.M)
    assert "resnet50" not in text
    assert "target: head-only <= 1.15x forward" in text
