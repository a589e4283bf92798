"""The claim tests' shared set-up: which notebooks run in this session, and no empty seed parametrizations.

Their seeds and the scheduling of what is trained where are in `claim_seeds.py` (importable: this folder
is on sys.path, pytest's rootdir-relative "prepend" import mode).
"""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def notebooks_in_session(request):
    """File names of the lesson notebooks this pytest session runs through nbval (all of them in `make test`).

    A lesson trains part of its study's seed 0 live and checks it against the shipped file in a claim cell;
    the claim tests then train only the rest (`claim_seeds.lesson_aware`).
    """
    return {Path(str(item.fspath)).name for item in request.session.items if str(item.fspath).endswith(".ipynb")}


def pytest_collection_modifyitems(config, items):
    """Deselect, not skip, a test parametrized over no seeds.

    A claim file's comparison with the shipped file runs on the seeds that are both shipped and fresh
    (`FTCOURSE_CLAIM_SEEDS`); with only unseen seeds (3,4,5) there is nothing to compare, which is not a
    check that was skipped. The deselected count in pytest's summary shows it.
    """
    empty = [item for item in items
             if any(str(m.kwargs.get("reason", "")).startswith("got empty parameter set")
                    for m in item.iter_markers("skip"))]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]
