"""Mutation fuzzing (tests/fuzzing.py): a short deterministic run of every family, the
shipped seeds as they are, and every saved regression case in tests/data/fuzz/.

Each input must give a result or a NetdslError (CLI: exit 2 and one error line), in
bounded time and memory.  ``python bench/fuzz.py --minutes N`` runs the same
families for longer.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fuzzing

FAMILIES = fuzzing.families()

#: examples per family in the default run (about 25 s in all on two cores); long
#: runs are bench/fuzz.py's
EXAMPLES = {"prototxt_net": 250, "prototxt_solver": 250, "caffemodel": 500, "spec": 250,
            "template": 100, "proto": 40, "expr": 400, "args": 60, "cli": 12}


@pytest.fixture(scope="module")
def workdir():
    wd = fuzzing.Workdir()
    yield wd
    wd.close()


def _fuzz(name: str, wd: fuzzing.Workdir, examples: int) -> None:
    fam = FAMILIES[name]
    seeds = sorted(fam.seeds)

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(seed=st.sampled_from(seeds), rnd=st.randoms(use_true_random=False),
           verb=st.integers(0, 7))
    def case(seed, rnd, verb):
        others = [fam.seeds[s] for s in rnd.sample(seeds, min(4, len(seeds)))]
        data = fuzzing.mutate(fam.seeds[seed], rnd, others, binary=fam.binary)
        v = None
        if fam.subprocess:
            verbs = fuzzing.verbs_for(seed)
            v = verbs[verb % len(verbs)]
        try:
            fuzzing.run_case(fam, wd, seed, data, v)
        except fuzzing.Failure as exc:
            raise AssertionError("%s from %s%s, input %r" % (
                exc, seed, " (%s)" % v if v else "", data[:3000])) from None

    case()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fuzz(name, workdir):
    _fuzz(name, workdir, EXAMPLES[name])


def test_every_family_is_fuzzed():
    assert set(EXAMPLES) == set(FAMILIES)
    for fam in FAMILIES.values():
        assert fam.seeds, fam.name


@pytest.mark.parametrize("name", sorted(n for n in EXAMPLES if n != "cli"))
def test_seeds_as_shipped(name, workdir):
    """The unmutated seeds hold the invariant too (and most of them read fine)."""
    fam = FAMILIES[name]
    outcomes = {seed: fuzzing.run_case(fam, workdir, seed, data) for seed, data in
                sorted(fam.seeds.items())}
    assert set(outcomes.values()) <= {"ok", "error"}
    # the forks' published schemas without InputParameter (SegNet's, PSPNet's,
    # DeepLab v2's, Faster R-CNN's, piergiaj/caffe-deconvnet's) cannot read the small
    # test net's Input layer
    expected_errors = {"tests/data/fork_schemas/%s.proto" % f
                       for f in ("segnet", "pspnet", "deeplab", "faster_rcnn", "zf_deconvnet")}
    if name in ("prototxt_solver", "caffemodel", "proto", "expr"):
        assert {s for s, o in outcomes.items() if o != "ok"} <= expected_errors, outcomes


CASES = fuzzing.regression_cases()


def test_regression_cases_exist():
    families = {f for f, _ in CASES}
    assert {"spec", "proto", "template", "cli", "prototxt_net", "args",
            "caffemodel"} <= families


@pytest.mark.parametrize("family,path", CASES, ids=[os.path.basename(p) for _, p in CASES])
def test_regression_case(family, path, workdir):
    assert os.path.isfile(path + ".txt"), "each saved case says what it found"
    fuzzing.replay(FAMILIES[family], workdir, path)


def test_mutators_are_deterministic():
    import random
    seed = FAMILIES["spec"].seeds["specs/fcn32s.yaml"]
    a = [fuzzing.mutate(seed, random.Random(k)) for k in range(50)]
    b = [fuzzing.mutate(seed, random.Random(k)) for k in range(50)]
    assert a == b and len(set(a)) > 40


def test_a_broken_invariant_is_reported(workdir, monkeypatch):
    """The harness itself: an exception other than NetdslError, a hang and a memory
    blow-up are each a Failure."""
    import time
    fam = fuzzing.Family("probe", {"x": b""}, None)
    # only the hang probe gets the short limit: zero-filling the big allocation may
    # take over a second on a loaded machine, and must still be reported as memory
    for target, message, seconds in [
            (lambda wd, s, d: {}["missing"], "KeyError", fuzzing.CASE_SECONDS),
            (lambda wd, s, d: time.sleep(60), "hang", 1),
            (lambda wd, s, d: bytearray(fuzzing.CASE_BYTES + (1 << 20)), "allocated",
             fuzzing.CASE_SECONDS)]:
        fam.target = target
        monkeypatch.setattr(fuzzing, "CASE_SECONDS", seconds)
        with pytest.raises(fuzzing.Failure, match=message):
            fuzzing.run_case(fam, workdir, "x", b"")
