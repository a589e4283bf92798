"""Claims of lesson 02 (warming up the head) on seeds 0-9, with the functions that made its seed tables.

`ftcourse.lab.studies.warm_up_study` and `data_size_study` are what `benchmarks/seed_studies.py` ran to
write data/results/warm_up.json and data_size.json, which the lesson prints. The fresh seeds (seed 0
in `make test`; $FTCOURSE_CLAIM_SEEDS, e.g. 0-5, in `make claims`) are trained once each (module
fixtures) and compared with the shipped files (within what differs between machines), so the files
cannot drift. A claim about one run holds on every seed, fresh or as shipped (test ids say which); a claim
that one recipe beats another is the paired verdict over all the seeds (`ftcourse.paired`), as the lesson prints it.
"""
import pytest

from ftcourse.lab import shipped, studies
from claim_seeds import FRESH, SEEDS_OF, SEED_IDS_OF, SHIPPED_AND_FRESH, lesson_aware, results_per_seed
from claim_seeds import verdict as _paired

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warm(notebooks_in_session):
    """Per seed, warm_up_study; on seed 0 nothing is trained here when lesson 02 runs in this session (it trains it all)."""
    study = lesson_aware("warm_up", studies.warm_up_study, notebooks_in_session, lambda seed, part, done: done)
    return results_per_seed("warm_up", study, SEEDS_OF["warm_up"], FRESH)


@pytest.fixture(scope="module")
def sizes(notebooks_in_session):
    """Per seed, data_size_study at 1 and 250 per class; lesson 02 trains seed 0's 1/class runs when it runs here
    (then `make test` trains no more of it: tests/claims/test_transfer_claims.py trains seed 0 at 10 per class)."""
    study = lesson_aware(
        "data_size", lambda seed: studies.data_size_study(seed, sizes=(1, 250)), notebooks_in_session,
        lambda seed, part, done: done | studies.data_size_study(seed, sizes=tuple(n for n in (1, 250) if n not in part)),
        quick_rest=lambda seed, part, done: done)
    sized = results_per_seed("data_size", study, SEEDS_OF["data_size"], FRESH)
    stored = shipped.read_results("data_size")["seeds"]
    return {s: (stored[str(s)] | r if str(s) in stored else r) for s, r in sized.items()}  # 10, 50: as shipped


@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH["warm_up"])
def test_the_shipped_tables_are_what_this_code_measures(warm, sizes, seed):
    assert not shipped.differences_from_shipped("warm_up", seed, warm[seed])
    shipped_sizes = shipped.read_results("data_size")["seeds"][str(seed)]
    assert not shipped.differences_from_shipped("data_size", seed, sizes[seed] | {  # sizes 10, 50 not rerun here
        k: v for k, v in shipped_sizes.items() if not k.startswith(("1/", "250/"))})
    assert SHIPPED_AND_FRESH["warm_up"] == SHIPPED_AND_FRESH["data_size"]


@pytest.mark.parametrize("seed", SEEDS_OF["warm_up"], ids=SEED_IDS_OF["warm_up"])
def test_random_head_does_not_send_larger_gradients_into_the_body(warm, seed):
    w = warm[seed]
    assert w["loss random"] > 1.5 * w["loss warmed"]  # the random head's errors are larger (1.8-5.5x, seeds 0-9)...
    assert w["head norm warmed"] > 2 * w["head norm random"]  # ...its weights smaller...
    assert w["body grad warmed"] > w["body grad random"]  # ...and the product smaller


def test_lp_ft_changes_features_less_than_fine_tuning(warm):
    assert _paired(warm, "1 - CKA FT", "1 - CKA LP-FT") == "ahead"
    assert _paired(warm, "relative change FT", "relative change LP-FT") == "ahead"
    assert all(w["1 - CKA FT"] < 0.5 for w in warm.values())  # a change, not a destruction


def test_the_warm_up_verdicts_the_lesson_prints(warm):
    for split in ("val", "test"):  # in distribution, training the body beats the linear probe
        assert _paired(warm, f"{split} FT", f"{split} LP") == "ahead", split
        assert _paired(warm, f"{split} LP-FT", f"{split} LP") == "ahead", split
    assert _paired(warm, "OOD LP-FT", "OOD FT") == "ahead"  # Kumar et al.'s claim
    for split in ("val", "test"):  # in distribution, warming the head up first costs nothing detectable
        assert _paired(warm, f"{split} LP-FT", f"{split} FT") not in ("ahead", "behind"), split
    assert all(w[f"OOD {k}"] < w[f"test {k}"] - 0.1 for w in warm.values() for k in ("LP", "FT", "LP-FT"))


def test_scratch_overtakes_the_linear_probe_only_with_plenty_of_data(sizes):
    for split in ("val", "test"):
        for n in (1, 10, 50):
            assert _paired(sizes, f"{n}/class {split} probe", f"{n}/class {split} scratch") == "ahead", (split, n)
        assert _paired(sizes, f"250/class {split} probe", f"250/class {split} scratch") == "behind", split


def test_with_one_image_per_class_fine_tuning_memorises_and_gains_nothing_reliable(sizes):
    assert all(s["1/class train fine-tune"] == 1.0 and s["1/class test fine-tune"] < 0.7 for s in sizes.values())
    assert _paired(sizes, "1/class val fine-tune", "1/class val probe") not in ("ahead", "behind")
    for n in (10, 50, 250):
        assert _paired(sizes, f"{n}/class val fine-tune", f"{n}/class val probe") == "ahead", n
