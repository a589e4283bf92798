"""Claims of lessons/05_the_recipe.ipynb on seeds 0-2, with the functions that made its tables.

`ftcourse.lab.studies.recipe_study` and `surgical_study` wrote data/results/recipe.json and surgical.json
(`benchmarks/seed_studies.py --study recipe,surgical`), which the lesson prints. The fresh seeds (seed 0
in `make test`; $FTCOURSE_CLAIM_SEEDS in `make claims`) are trained here and compared with the files;
when the lesson runs in the same session it trains seed 0's near-task recipe and fastai runs and the
inverted-source surgical runs itself (and compares them with the file), so they are not trained twice.
Every claim is asserted on every seed, fresh or as shipped (test ids say which).
"""
import pytest

from ftcourse.lab import shipped, studies
from claim_seeds import FRESH, SEEDS, SEED_IDS, SHIPPED_AND_FRESH, lesson_aware, results_per_seed

pytestmark = pytest.mark.slow


def _recipe_rest(seed, part, shipped):
    """Seed 0 without the lesson's runs (`part`: task -> methods), which come from the file."""
    out = dict(shipped)
    for name in studies.RECIPE_TASKS:
        methods = tuple(m for m in studies.RECIPE_METHODS if m not in part.get(name, ()))
        out |= studies.recipe_study(seed, tasks=(name,), methods=methods) if methods else {}
    return out


def _recipe_quick_rest(seed, part, shipped):
    """`make test`: of the rest of seed 0, the three plain methods on the lesson's task (the other tasks run the
    same code)."""
    return dict(shipped) | studies.recipe_study(seed, tasks=("near",), methods=("scratch", "linear probe", "fine-tune"))


@pytest.fixture(scope="module")
def recipe(notebooks_in_session):
    study = lesson_aware("recipe", studies.recipe_study, notebooks_in_session, _recipe_rest, _recipe_quick_rest)
    return results_per_seed("recipe", study, SEEDS, FRESH)


@pytest.fixture(scope="module")
def surgical(notebooks_in_session):
    study = lesson_aware(
        "surgical", studies.surgical_study, notebooks_in_session,
        lambda seed, part, done: done | studies.surgical_study(
            seed, tasks=tuple(t for t in studies.SURGICAL_TASKS if t not in part)),
        quick_rest=lambda seed, part, done: done)  # make test: the lesson's task only (the others, the same code)
    return results_per_seed("surgical", study, SEEDS, FRESH)


@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["recipe"])  # surgical: the same seeds
def test_the_shipped_tables_are_what_this_code_measures(recipe, surgical, seed):
    fresh = recipe[seed]
    chaotic = {k: v for k, v in fresh.items() if k.endswith((" recipe", " scratch"))}
    assert not shipped.differences_from_shipped("recipe", seed, {k: v for k, v in fresh.items() if k not in chaotic},
                                                partial=True)
    # run_recipe's final run at the rate it chose (up to 0.1), and 200 steps from a random start, amplify
    # summation-order differences more than a fine-tune at 0.01: the far task's recipe, seed 0, gave 0.860 with
    # 1 torch thread and 0.798 with 2 (same choices); the near task's scratch, seed 1, 0.243 and 0.301
    assert not shipped.differences_from_shipped("recipe", seed, chaotic, acc_tol=studies.RECIPE_MACHINE_TOL,
                                                partial=True)
    assert set(fresh) == set(shipped.read_results("recipe")["seeds"][str(seed)])  # every quantity measured
    assert not shipped.differences_from_shipped("surgical", seed, surgical[seed])


def _gain(r, name):
    return max(r[f"{name} test {m}"] for m in ("linear probe", "fine-tune", "recipe")) - r[f"{name} test scratch"]


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_pretraining_gains_much_less_on_the_far_task_than_on_the_near_one(recipe, seed):
    r = recipe[seed]
    assert _gain(r, "far") < _gain(r, "near") - 0.1
    assert _gain(r, "near") > 0.2  # other writers' digits: the pretrained features carry over


def _mean(runs, name, method):
    return sum(r[f"{name} test {method}"] for r in runs) / len(runs)


def test_the_one_call_beats_the_recipe_on_the_mean_of_every_task(recipe):
    """The bar the recipe was built for (match fastai's fine_tune) is not met: the lesson says so and why."""
    runs = [recipe[s] for s in SEEDS]
    for name in studies.RECIPE_TASKS:
        assert _mean(runs, name, "fastai fine_tune") > _mean(runs, name, "recipe"), name


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_every_pretrained_method_beats_scratch_on_the_digit_tasks(recipe, seed):
    r = recipe[seed]
    for name in ("digits", "near"):
        assert all(r[f"{name} test {m}"] > r[f"{name} test scratch"] + 0.1
                   for m in ("linear probe", "fine-tune", "fastai fine_tune", "recipe")), name


def test_on_the_far_task_a_linear_probe_is_no_better_than_scratch(recipe):
    runs = [recipe[s] for s in SEEDS]
    assert _mean(runs, "far", "linear probe") - _mean(runs, "far", "scratch") < 0.02  # seeds 0-2: -0.4, 0-5: -4.4 points
    assert _mean(runs, "near", "linear probe") - _mean(runs, "near", "scratch") > 0.15


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_for_inverted_inputs_the_first_block_alone_beats_all_which_beats_the_last(surgical, seed):
    r = surgical[seed]
    assert r["inverted source test block 1"] > r["inverted source test all"] + 0.05
    assert r["inverted source test all"] > r["inverted source test block 4"] + 0.03
    assert r["inverted source test block 1"] > r["inverted source test start"] + 0.3  # most of the shift's cost recovered


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_for_blurred_inputs_the_first_block_beats_the_last(surgical, seed):
    r = surgical[seed]
    assert r["blurred source test block 1"] > r["blurred source test block 4"]


def test_for_new_labels_training_every_block_beats_the_best_single_block_on_the_mean(surgical):
    runs = [surgical[s] for s in SEEDS]
    for name in ("digits", "near"):
        best = max(_mean(runs, name, f"block {b}") for b in (1, 2, 3, 4))
        assert _mean(runs, name, "all") > best, name
