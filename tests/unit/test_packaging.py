"""The package metadata, the conda environment and the layering rules agree."""
import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_mirrors_pyproject():
    meta = _pyproject()["project"]
    wanted = set(meta["dependencies"]) | set(meta["optional-dependencies"]["test"])
    env = (ROOT / "environment.yml").read_text()
    pip_lines = set(re.findall(r"^\s{6}- (\S+)\s*$", env, flags=re.M)) - {"-e", "."}
    pip_lines = {line for line in pip_lines if not line.startswith("-")}
    assert pip_lines == wanted


def test_dependencies_are_ranges_not_pins():
    meta = _pyproject()["project"]
    for req in meta["dependencies"] + meta["optional-dependencies"]["test"]:
        assert "==" not in req, f"{req}: use a range, not an exact pin (STYLE.md)"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module.split(".")[0])
    return names


# bottom to top; a module may import only modules in an earlier layer or its own layer's lower entries
LAYERS = [["inputs", "files", "runtime", "tables", "workspace", "distributed"], ["data", "models", "bn"], ["groups"], ["optim"],
          ["cost", "features", "grads", "audit", "compare"], ["train"], ["recipes", "fastai_style", "explore", "pretrain",
          "ddp_finetune"], ["autopilot"], ["plots", "check"], ["widgets"], ["cli"]]


def test_modules_are_layered_without_cycles():
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    modules = {p.stem: p for p in (ROOT / "ftcourse").glob("*.py") if p.stem != "__init__"}
    missing = set(modules) - set(rank)
    assert not missing, f"modules not placed in a layer: {missing}"
    for name, path in modules.items():
        for dep in _imports(path):
            assert rank[dep] < rank[name] or (rank[dep] == rank[name] and dep != name and
                                               LAYERS[rank[name]].index(dep) < LAYERS[rank[name]].index(name)), \
                f"ftcourse.{name} imports ftcourse.{dep}, which sits above it"


def _imports_anywhere(path: Path) -> set[str]:
    """Every module a file imports, absolute names (relative imports resolved from the ftcourse package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            package = ["ftcourse", "lab"] if path.parent.name == "lab" else ["ftcourse"]
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(x for x in (base, node.module or "") if x)
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
    return found


def test_the_toolkit_never_imports_the_lab():
    """`ftcourse.lab` (studies, results files, claim lines, DDP workers, slides) may import the toolkit, never the reverse."""
    toolkit = list((ROOT / "ftcourse").glob("*.py"))
    assert len(toolkit) > 20 and (ROOT / "ftcourse" / "lab" / "studies.py").exists()
    for path in toolkit:
        lab = {m for m in _imports_anywhere(path) if m == "ftcourse.lab" or m.startswith("ftcourse.lab.")}
        assert not lab, f"ftcourse/{path.name} imports the lab: {sorted(lab)}"
    assert "ftcourse.lab" not in {m.split(".lab")[0] + ".lab" for m in _imports_anywhere(ROOT / "ftcourse" / "__init__.py")
                                   if ".lab" in m}
    studies = _imports_anywhere(ROOT / "ftcourse" / "lab" / "studies.py")  # the check sees the lab's own imports
    assert "ftcourse.recipes" in studies and "ftcourse.autopilot.run_recipe" in studies


def test_package_never_imports_lessons():
    for path in (ROOT / "ftcourse").glob("*.py"):
        assert "lessons" not in _imports(path)


def test_no_side_effects_on_import():
    import subprocess
    import sys

    code = ("import torch; before = (torch.initial_seed(), torch.get_num_threads(), "
            "torch.are_deterministic_algorithms_enabled()); import ftcourse; "
            "after = (torch.initial_seed(), torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()); "
            "assert before == after, (before, after)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_code_has_no_undefined_or_unused_names():
    """pyflakes over the package, benchmarks, scripts and tests (star re-exports in __init__ aside)."""
    import subprocess
    import sys

    dirs = [str(ROOT / d) for d in ("ftcourse", "benchmarks", "scripts", "tests")]
    out = subprocess.run([sys.executable, "-m", "pyflakes", *dirs], capture_output=True, text=True,
                         timeout=300).stdout
    problems = [line for line in out.splitlines() if "__init__.py" not in line]
    assert not problems, "\n".join(problems)


def test_no_package_module_names_a_lesson():
    """Modules are named and sectioned by topic, never by lesson (code outlives the lesson order)."""
    for path in (ROOT / "ftcourse").glob("*.py"):
        hits = re.findall(r"lessons? \d+", path.read_text(), flags=re.I)
        assert not hits, f"{path.name} names a lesson: {hits}"


def test_every_module_says_what_it_holds():
    """Each module opens with a docstring; the public names it exports are defined in it."""
    for path in (ROOT / "ftcourse").glob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no opening docstring"
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        defined |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        if path.name == "__init__.py":  # the flat namespace re-exports what the modules define
            defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        exported = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                         and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)), [])
        assert set(exported) <= defined, f"{path.name} exports names it does not define: {set(exported) - defined}"


def test_no_function_in_the_package_is_longer_than_a_screen():
    """One screen per idea: no function or method of ftcourse (toolkit and lab) over 60 lines."""
    long = []
    for path in (ROOT / "ftcourse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_no_line_in_the_package_is_longer_than_120_characters():
    long = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "ftcourse").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 120]
    assert not long, long


def test_the_oldest_set_pins_every_runtime_and_test_dependency_at_its_lower_bound():
    import importlib.util
    spec = importlib.util.spec_from_file_location("oldest", ROOT / "scripts" / "oldest_constraints.py")
    oldest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oldest)
    pins = dict(p.split("==") for p in oldest.lowest_pins())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, _, bound = req.partition(">=")
        assert pins[name.strip()] == bound.split(",")[0].strip(), req
    assert pins["torch"] == "2.6" and pins["torchvision"] == "0.21"  # the 24-month rule's floor, January 2025
    assert "make test-oldest" in (ROOT / ".ci" / "run").read_text()
