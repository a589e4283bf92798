"""Every benchmark script runs: in --quick mode, or printing its shipped file (no timing assertions)."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def _run(script: str, *args: str) -> str:
    """stdout of `python benchmarks/SCRIPT --quick ARGS`; fails the test with stderr if it exits non-zero."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_fastai_freeze_quick_prints_cost_and_accuracy_tables():
    text = _run("fastai_freeze.py", "--threads", "1")
    assert re.search(r"^model\s+freeze\s+trainable\s+step ms\s+fwd ms\s+step/fwd\s+graph nodes\s+peak MiB$", text, re.M)
    for model in ("course", "resnet18"):
        rows = [line for line in text.splitlines() if line.startswith(model + " ")]
        assert len(rows) == 2 and "true freeze" in rows[0] and "fastai train_bn=True" in rows[1], rows
        assert all(re.search(r"\d+\.\d\dx\s+\d+\s+-$", r) for r in rows)  # ratio, graph nodes, "-" memory on CPU
        true_nodes, fastai_nodes = (int(r.split()[-2]) for r in rows)
        assert fastai_nodes > true_nodes  # BN trainable: backward runs through the body
        assert re.search(rf"^  {model}: fastai train_bn=True step costs \d+\.\d\dx a true-freeze step$", text, re.M)
    assert re.search(r"^per class\s+true freeze\s+fastai train_bn=True\s+fastai - true\s+seconds$", text, re.M)
    assert re.search(r"^\s+10\s+0\.\d{3} \(0\.\d\d-0\.\d\d\)\s+0\.\d{3} \(0\.\d\d-0\.\d\d\)\s+[+-]\d+\.\d pt", text, re.M)
    assert "resnet50" not in text


def test_cached_features_quick_prints_speedup_and_equal_heads():
    text = _run("cached_features.py", "--threads", "1")
    assert re.search(r"^model\s+images\s+features\s+recompute s/epoch\s+cached s/epoch\s+speed-up\s+caching s\s+"
                     r"pays off after\s+max \|head diff\|$", text, re.M)
    for model, features in (("course", 256), ("resnet18", 512)):
        row = next(line for line in text.splitlines() if line.startswith(model + " "))
        assert re.search(rf"\s{features}\s+\d+\.\d{{3}}\s+\d+\.\d{{4}}\s+\d+x\s+\d+\.\d\d\s+\d+\.\d epochs\s+"
                         r"(\d\.\de[+-]\d\d)$", row), row
        assert float(row.split()[-1]) < 1e-5  # same start, same batches, same steps: the same head
        assert re.search(rf"^  {model}: \d+x \((meets|MISSES) the target\)", text, re.M)
    assert "target: cached-feature epochs >= 20x faster" in text


def test_fold_bn_quick_prints_ratio_and_difference():
    text = _run("fold_bn.py", "--threads", "1")
    assert re.search(r"^model\s+input\s+BN folded\s+eval ms\s+folded ms\s+folded/eval\s+max \|diff\|\s+max \|out\|$",
                     text, re.M)
    for model, bns in (("course", 12), ("resnet18", 20)):
        row = next(line for line in text.splitlines() if line.startswith(model + " "))
        m = re.search(rf"\s{bns}/{bns}\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d\dx\s+(\S+)\s+\d+\.\d\d$", row)
        assert m, row
        assert float(m.group(1)) < 1e-3  # folding changes the maths only by float rounding
    assert "resnet50" not in text


def test_course_runtime_times_each_notebook_and_reports_a_failing_one(tmp_path):
    """Two small notebooks instead of lessons (nbval runs the lessons): rows, the budget line, an ERROR row."""
    import nbformat
    for name, source in (("a_ok.ipynb", "x = sum(range(10))"), ("b_fails.ipynb", "raise RuntimeError('broken cell')")):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), tmp_path / name)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "course_runtime.py"),
                          str(tmp_path / "a_ok.ipynb"), str(tmp_path / "b_fails.ipynb")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "1 lesson(s) failed to run" in out.stderr
    text = out.stdout
    assert re.search(r"^lesson\s+seconds\s+status$", text, re.M)
    assert re.search(r"^a_ok\.ipynb\s+\d+\.\d\s+OK$", text, re.M)
    assert re.search(r"^b_fails\.ipynb\s+\d+\.\d\s+ERROR: .*broken cell", text, re.M)
    assert re.search(r"^total\s+\d+\.\d\s+(OK|OVER)$", text, re.M)
    assert "budget 120 s per lesson, 10 min in all" in text


def test_course_runtime_quick_selects_lesson_00_only():
    spec = importlib.util.spec_from_file_location("course_runtime", ROOT / "benchmarks" / "course_runtime.py")
    course_runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course_runtime)
    lessons = sorted((ROOT / "lessons").glob("*.ipynb"))
    assert [p.name for p in course_runtime.lesson_paths([], quick=True)] == [lessons[0].name] == ["00_welcome_and_setup.ipynb"]
    assert course_runtime.lesson_paths([], quick=False) == lessons and len(lessons) == 7
    assert course_runtime.lesson_paths([Path("x.ipynb")], quick=True) == [Path("x.ipynb")]


def test_seed_studies_quick_writes_a_results_file_it_does_not_ship():
    shipped = sorted((ROOT / "data" / "results").glob("*.json"))
    before = {p: p.read_bytes() for p in shipped}
    text = _run("seed_studies.py")
    assert re.search(r"^  time_to_accuracy seed 0: \d+ s$", text, re.M)
    assert re.search(r"^time_to_accuracy: \S+time_to_accuracy\.json holds seeds \[0\]$", text, re.M)
    assert "data/results" not in text  # --quick writes into a temporary folder
    assert {p: p.read_bytes() for p in shipped} == before


def test_transfer_table_prints_the_data_size_study_without_training():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer_table.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "data/results/data_size.json" in out.stdout and "trained now" not in out.stdout
    seeds = json.loads((ROOT / "data" / "results" / "data_size.json").read_text())["seeds"].values()
    for k in (10, 50):
        row = next(line for line in out.stdout.splitlines() if line.startswith(f"{k:>9} |"))
        means = [float(m) for m in re.findall(r"(0\.\d{3}) \(", row)]
        expected = [sum(s[f"{k}/class test {key}"] for s in seeds) / len(seeds) for key in ("scratch", "probe", "fine-tune")]
        assert len(means) == 3 and all(abs(m - e) <= 0.0005 + 1e-9 for m, e in zip(means, expected)), (row, expected)


def test_transfer_table_quick_trains_three_methods():
    text = _run("transfer_table.py", "--threads", "1")
    assert re.search(r"trained now: seed 0, 10 steps per method, 1 threads", text)
    assert re.search(r"^\s+10 \| 0\.\d{3} \(0\.\d\d-0\.\d\d\) \| 0\.\d{3} \(0\.\d\d-0\.\d\d\) \| 0\.\d{3} \(0\.\d\d-0\.\d\d\) \|"
                     r"\s+[+-]\d+\.\d pt$", text, re.M), text



def test_seed_studies_resume_trains_only_the_seeds_the_file_lacks_and_names_other_code(tmp_path, monkeypatch,
                                                                                      capsys):
    spec = importlib.util.spec_from_file_location("seed_studies", ROOT / "benchmarks" / "seed_studies.py")
    seed_studies = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_studies)
    trained = []

    def fake(seed):
        trained.append(seed)
        return {"test x": seed / 10}

    monkeypatch.setitem(seed_studies.studies.STUDIES, "adabn", fake)
    assert seed_studies._seed_list("0-2,5") == [0, 1, 2, 5]
    code = seed_studies.shipped.code_fingerprint()
    seed_studies.run(["adabn"], [0, 1], tmp_path, "cmd")
    seed_studies.run(["adabn"], [0, 1, 2], tmp_path, "cmd", resume=True)
    stored = json.loads((tmp_path / "adabn.json").read_text())
    assert trained == [0, 1, 2] and stored["seeds"] == {"0": {"test x": 0.0}, "1": {"test x": 0.1}, "2": {"test x": 0.2}}
    assert stored["code"] == {"0": code, "1": code, "2": code}
    stored["code"] = "other"  # an older file: one fingerprint, from other code; its seeds are kept and named
    (tmp_path / "adabn.json").write_text(json.dumps(stored))
    seed_studies.run(["adabn"], [0, 3], tmp_path, "cmd", resume=True)
    stored = json.loads((tmp_path / "adabn.json").read_text())
    assert trained == [0, 1, 2, 3] and "seeds [0, 1, 2] were written by other code" in capsys.readouterr().out
    assert stored["code"] == {"0": "other", "1": "other", "2": "other", "3": code}


def test_recipe_ablation_table_pairs_every_arm_with_the_recipe_over_merged_files(tmp_path):
    from ftcourse.lab import studies
    arms = [*studies.ABLATION_BASELINES, *studies.ABLATION_ARMS]

    def numbers(seed):  # "shifts of up to 4 px" 5 points above the recipe on every seed, the rest equal to it
        out = {}
        for arm in arms:
            gain = 0.05 if arm == "shifts of up to 4 px" else 0.0
            base = 0.6 + 0.01 * seed + (0.001 * seed * seed if arm == "AdamW" else 0.0)
            out |= {f"far 10/class val {arm}": base + gain, f"far 10/class test {arm}": base + gain,
                    f"far 10/class seconds {arm}": 10.0}
        return out

    for name, seeds in (("a", (0, 1, 2)), ("b", (3, 4))):
        (tmp_path / f"{name}.json").write_text(json.dumps({"seeds": {str(s): numbers(s) for s in seeds}}))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "recipe_ablation_table.py"),
                          str(tmp_path / "a.json"), str(tmp_path / "b.json")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "far 10/class: each arm minus recipe (mean, wins), seeds [0, 1, 2, 3, 4]" in text
    assert "near 10/class" not in text and "far 50/class" not in text  # only what the files hold
    row = next(line for line in text.splitlines() if line.startswith("shifts of up to 4 px"))
    assert re.search(r"\+5\.0 \(5/5\)\s+ahead\s+\+5\.0 \(5/5\)\s+ahead\s+10\.0$", row), row
    rows = [line for line in text.splitlines() if line.startswith(tuple(a for a in arms if a != "recipe"))]
    assert len(rows) == len(arms) - 1
    (tmp_path / "c.json").write_text(json.dumps({"seeds": {"4": numbers(4)}}))
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "recipe_ablation_table.py"),
                            str(tmp_path / "b.json"), str(tmp_path / "c.json")], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode != 0 and "seed 4 is in more than one file" in again.stderr


def test_merge_ablation_joins_parts_checks_repeats_and_completes_the_forced_adabn_arms(tmp_path):
    from ftcourse.lab import studies
    arms = [*studies.ABLATION_BASELINES, *studies.ABLATION_ARMS]
    cells = [f"{t} {k}/class" for t in studies.ABLATION_TASKS for k in studies.ABLATION_SHOTS]
    forced = ("shifts, one rate 0.03, always AdaBN", "shifts, one rate 0.03, never AdaBN")

    def numbers(seed):  # every arm but the two forced ones; AdaBN applied on far only
        out = {}
        for cell in cells:
            for i, arm in enumerate(a for a in arms if a not in forced):
                out |= {f"{cell} val {arm}": 0.5 + 0.01 * i + seed, f"{cell} test {arm}": 0.4 + 0.01 * i,
                        f"{cell} seconds {arm}": 10.0 + seed}
                if arm in studies.ABLATION_ARMS:
                    out |= {f"{cell} chosen rate {arm}": 0.03, f"{cell} adabn {arm}": float(cell.startswith("far"))}
        return out

    def supplement(seed):  # each forced arm where the gap decided the other way, as /tmp supplement runs wrote it
        out = {"_seconds": 5.0}
        for cell in cells:
            arm = forced[1] if cell.startswith("far") else forced[0]
            out |= {f"{cell} val {arm}": 0.9, f"{cell} test {arm}": 0.8, f"{cell} seconds {arm}": 1.0,
                    f"{cell} chosen rate {arm}": 0.03, f"{cell} adabn {arm}": float(arm == forced[0])}
        return out

    (tmp_path / "a.json").write_text(json.dumps({"seeds": {"0": numbers(0), "1": numbers(1)}, "seconds": 7.0,
                                                 "machine": "x86_64, 1 threads"}))
    again = {"seeds": {"1": {k: v + (1.0 if " seconds " in k else 0.0) for k, v in numbers(1).items()}}}
    (tmp_path / "b.json").write_text(json.dumps(again))  # seed 1 again: equal but for wall seconds
    for seed in (0, 1):
        (tmp_path / f"supp_seed{seed}.json").write_text(json.dumps(supplement(seed)))
    script = str(ROOT / "benchmarks" / "merge_ablation.py")
    parts = [str(tmp_path / n) for n in ("a.json", "b.json", "supp_seed0.json", "supp_seed1.json")]
    out = subprocess.run([sys.executable, script, "--out", str(tmp_path / "m.json"), *parts], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "seeds [0, 1], 12 cells copied from a parent run" in out.stdout  # 2 seeds x (4 + 2) cells
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["machine"] == "x86_64, 1 threads" and merged["seconds"] == 17.0
    one = merged["seeds"]["1"]
    parent = "shifts, one rate 0.03, no short runs"
    assert one[f"far 10/class test {forced[0]}"] == one[f"far 10/class test {parent}"]  # AdaBN applied: the parent
    assert one[f"far 10/class test {forced[1]}"] == 0.8 and one[f"near 50/class test {forced[0]}"] == 0.8
    assert one[f"near 50/class test {forced[1]}"] == one[f"near 50/class test {parent}"]
    assert one[f"near 50/class seconds {parent}"] == 11.0  # the first part's wall time
    again["seeds"]["1"]["far 10/class test recipe"] += 0.001  # a recomputed arm that does not agree
    (tmp_path / "b.json").write_text(json.dumps(again))
    bad = subprocess.run([sys.executable, script, "--out", str(tmp_path / "m2.json"), *parts], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "seed 1: 'far 10/class test recipe' is" in bad.stderr
    short = subprocess.run([sys.executable, script, "--out", str(tmp_path / "m3.json"), parts[0]], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert short.returncode != 0 and "numbers missing" in short.stderr and not (tmp_path / "m3.json").exists()


def test_recipe_wall_time_times_the_recipe_and_every_bar_on_a_cell(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "recipe_wall_time.py"), "--tasks", "far",
                          "--shots", "10", "--repeats", "1", "--steps", "5", "--save", str(tmp_path / "w.json"),
                          "--arm", "run_recipe", "shifts, one rate 0.03, always AdaBN"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Median wall seconds of 1 runs, seed 0" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("far 10/class"))
    assert len(row.split()) == 2 + 5 + 2  # the cell, five methods' seconds, and one ratio per arm
    saved = json.loads((tmp_path / "w.json").read_text())
    assert saved["arm"] == "run_recipe" and saved["repeats"] == 1 and "--save" in saved["command"]
    assert saved["arms"] == ["run_recipe", "shifts, one rate 0.03, always AdaBN"]
    (cell,) = saved["rows"]
    bar = cell["one call, shifts of up to 4 px"]
    assert cell["cell"] == "far 10/class" and cell["recipe / one call + shifts"] == pytest.approx(cell["run_recipe"] / bar)
    assert cell["shifts, one rate 0.03, always AdaBN / one call + shifts"] == pytest.approx(
        cell["shifts, one rate 0.03, always AdaBN"] / bar)
