"""The compatibility corpus: what netdsl 0.1 built, netdsl builds the same.

Every item of corpus.py (specs, templates, NetSpec scripts and nets exercising
each feature 0.1's README and docs describe) runs with this tree's netdsl, and
each file it writes must have the SHA-256 that netdsl 0.1 (commit 53a7fca) gave
(pins.json, made by make_pins.py; its docstring says how).  An item whose output
changed on purpose is listed under "changed" with its CHANGELOG.md entry, and
compared with that second pin instead.  The 0.1 texts are not stored: a mismatch
shows the item, the file and the head of the current text;
``python tests/compat/make_pins.py <0.1 checkout> --diff ITEM .`` shows the diff.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import netdsl
import corpus

#: the source tree of the netdsl under test
TREE = os.path.dirname(os.path.dirname(os.path.abspath(netdsl.__file__)))

with open(corpus.PINS) as _f:
    PINS = json.load(_f)
CHANGELOG = os.path.join(os.path.dirname(os.path.dirname(corpus.HERE)), "CHANGELOG.md")


def test_every_item_is_pinned_by_0_1():
    assert sorted(PINS["0.1"]) == sorted(it.name for it in corpus.ITEMS)
    assert set(PINS["changed"]) <= set(PINS["0.1"])
    assert all(PINS["0.1"][name] for name in PINS["0.1"])   # each item wrote something


def test_each_intended_change_has_its_changelog_entry():
    with open(CHANGELOG, encoding="utf-8") as f:
        text = f.read()
    for name, entry in sorted(PINS["changed"].items()):
        assert entry["changelog"] in text, (name, entry["changelog"])
        assert entry["files"] != PINS["0.1"][name], name   # else it did not change


def _explain(item, name, files, want):
    data = files.get(name)
    if data is None:
        return "%s: %s was not written (0.1 wrote it)" % (item.name, name)
    head = "".join(data.decode(errors="replace").splitlines(True)[:25])
    return ("%s: %s differs from its pin (sha256 %s, pinned %s); run `python "
            "tests/compat/make_pins.py <0.1 checkout> --diff %s .` for the diff; its head:\n%s"
            % (item.name, name, corpus.digest(data), want, item.name, head))


@pytest.mark.parametrize("item", corpus.ITEMS, ids=lambda it: it.name)
def test_corpus_item_builds_as_0_1_did(item):
    files = corpus.run_item(item, TREE)
    changed = PINS["changed"].get(item.name)
    pins = changed["files"] if changed else PINS["0.1"][item.name]
    assert sorted(files) == sorted(pins), "%s wrote %s, pinned %s" % (
        item.name, sorted(files), sorted(pins))
    for name, want in sorted(pins.items()):
        if corpus.digest(files[name]) != want and _same_values(item.name, name, files[name]):
            continue
        assert corpus.digest(files[name]) == want, _explain(item, name, files, want)


def _same_values(item: str, name: str, data: bytes) -> bool:
    """A forward's output (``.npz``) equal to 0.1's within float32 summation order:
    the forward computes with BLAS, whose order of additions may differ between
    builds and machines (CHANGELOG.md, "The numpy forward at BLAS speed")."""
    want = PINS.get("values", {}).get(item, {}).get(name)
    if want is None:
        return False
    got = corpus.npz_values(data)
    if sorted(got) != sorted(want):
        return False
    pairs = [(np.asarray(got[k], np.float32), np.asarray(want[k], np.float32)) for k in want]
    return all(g.shape == w.shape and np.allclose(g, w, rtol=1e-5, atol=1e-6) for g, w in pairs)


def test_a_forward_output_is_compared_within_summation_order():
    # the 0.1 pin of `run` keeps prob's values; a change of one float32 ulp in the
    # order of additions passes, a change in the third digit does not
    import io
    want = PINS["values"]["run"]["out.npz"]
    prob = np.asarray(want["prob"], np.float32)
    def npz(arr):
        buf = io.BytesIO()
        np.savez(buf, prob=arr)
        return buf.getvalue()
    assert _same_values("run", "out.npz", npz(np.nextafter(prob, np.float32(1))))
    assert not _same_values("run", "out.npz", npz(prob * np.float32(1.001)))
    assert not _same_values("run", "out.npz", npz(prob[:, :4]))


def test_a_mismatch_names_the_item_and_shows_the_text():
    item = corpus.ITEMS[0]
    message = _explain(item, "deploy.prototxt", {"deploy.prototxt": b'name: "x"\n'}, "0" * 64)
    assert message.startswith("spec-first: deploy.prototxt differs") and 'name: "x"' in message
    assert re.search(r"--diff spec-first", message)
