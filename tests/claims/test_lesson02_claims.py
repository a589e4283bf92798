"""Claims of lesson 02 (warming up the head) on seeds 0-2, with the functions that made its seed table.

`ftcourse.lab.studies.warm_up_study` and `data_size_study` are what `benchmarks/seed_studies.py` ran to
write data/results/warm_up.json and data_size.json, which the lesson prints. The fresh seeds (seed 0
in `make test`; $FTCOURSE_CLAIM_SEEDS, e.g. 0-5, in `make claims`) are trained once each (module
fixtures) and compared with the shipped files (within what differs between machines), so the files
cannot drift; every claim is asserted on every seed, fresh or as shipped (test ids say which).
"""
import pytest

from ftcourse.lab import shipped, studies
from claim_seeds import FRESH, SEEDS, SEED_IDS, SHIPPED_AND_FRESH, lesson_aware, results_per_seed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warm(notebooks_in_session):
    """Per seed, warm_up_study; on seed 0 nothing is trained here when lesson 02 runs in this session (it trains it all)."""
    study = lesson_aware("warm_up", studies.warm_up_study, notebooks_in_session, lambda seed, part, done: done)
    return results_per_seed("warm_up", study, SEEDS, FRESH)


@pytest.fixture(scope="module")
def sizes(notebooks_in_session):
    """Per seed, data_size_study at 1 and 250 per class; lesson 02 trains seed 0's 1/class runs when it runs here."""
    study = lesson_aware(
        "data_size", lambda seed: studies.data_size_study(seed, sizes=(1, 250)), notebooks_in_session,
        lambda seed, part, done: done | studies.data_size_study(seed, sizes=tuple(n for n in (1, 250) if n not in part)))
    return results_per_seed("data_size", study, SEEDS, FRESH)


@pytest.mark.parametrize("seed", SHIPPED_AND_FRESH)
def test_the_shipped_tables_are_what_this_code_measures(warm, sizes, seed):
    assert not shipped.differences_from_shipped("warm_up", seed, warm[seed])
    shipped_sizes = shipped.read_results("data_size")["seeds"][str(seed)]
    assert not shipped.differences_from_shipped("data_size", seed, sizes[seed] | {  # sizes 10, 50 not rerun here
        k: v for k, v in shipped_sizes.items() if not k.startswith(("1/", "250/"))})


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_random_head_does_not_send_larger_gradients_into_the_body(warm, seed):
    w = warm[seed]
    assert w["loss random"] > 2 * w["loss warmed"]  # the random head's errors are larger...
    assert w["head norm warmed"] > 2 * w["head norm random"]  # ...its weights smaller...
    assert w["body grad warmed"] > w["body grad random"]  # ...and the product smaller


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_lp_ft_changes_features_less_than_fine_tuning(warm, seed):
    w = warm[seed]
    assert w["1 - CKA FT"] > 1.3 * w["1 - CKA LP-FT"]
    assert w["relative change FT"] > w["relative change LP-FT"]
    assert w["1 - CKA FT"] < 0.5  # a change, not a destruction


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_in_distribution_training_the_body_beats_the_linear_probe(warm, seed):
    w = warm[seed]
    assert w["test FT"] > w["test LP"] + 0.03 and w["test LP-FT"] > w["test LP"] + 0.03


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_out_of_distribution_lp_ft_beats_fine_tuning(warm, seed):
    w = warm[seed]
    assert w["OOD LP-FT"] > w["OOD FT"]
    assert all(w[f"OOD {k}"] < w[f"test {k}"] - 0.1 for k in ("LP", "FT", "LP-FT"))  # the shifts hurt every recipe


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_scratch_overtakes_the_linear_probe_only_with_plenty_of_data(sizes, seed):
    s = sizes[seed]  # probe minus scratch at 1/class: +0.07 to +0.18; scratch minus probe at 250/class: +0.02 to +0.04
    assert s["1/class test probe"] > s["1/class test scratch"]
    assert s["250/class test scratch"] > s["250/class test probe"]


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_with_one_image_per_class_fine_tuning_memorises_and_gains_nothing_reliable(sizes, seed):
    s = sizes[seed]
    assert s["1/class train fine-tune"] == 1.0 and s["1/class test fine-tune"] < 0.7  # overfits: 200 epochs on 5 images
    lead_few = s["1/class test fine-tune"] - s["1/class test probe"]  # -0.05 to +0.03 on seeds 0-2
    lead_many = s["250/class test fine-tune"] - s["250/class test probe"]  # +0.10 to +0.11
    assert abs(lead_few) < 0.1 and lead_few < lead_many and lead_many > 0.05
