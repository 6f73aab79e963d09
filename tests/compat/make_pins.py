"""Make the compatibility corpus's pins (pins.json) by running a netdsl checkout.

The "0.1" pins were made with the netdsl 0.1 release, commit 53a7fca, checked out
on its own and run once with protobuf 7 (as it is, no change needed)::

    git worktree add /tmp/netdsl-0.1 53a7fca
    python tests/compat/make_pins.py /tmp/netdsl-0.1

Each corpus item (corpus.py) runs as ``python -m netdsl ...`` with PYTHONPATH set
to the checkout, in a fresh copy of corpus/; each file it writes is pinned by its
SHA-256.  An item whose output changed on purpose since 0.1 is recorded with the
CHANGELOG.md entry that says so, and pinned a second time from this tree::

    python tests/compat/make_pins.py --changed expressions-division \\
        --changelog "Exact division in \\${...}" .

``--diff ITEM OTHER`` prints the unified diff of ITEM's texts between the checkout
and OTHER (e.g. the 0.1 checkout and this tree), which the pins alone cannot show.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402


def _load() -> dict:
    if os.path.exists(corpus.PINS):
        with open(corpus.PINS) as f:
            return json.load(f)
    return {"0.1": {}, "changed": {}}


def _save(pins: dict) -> None:
    with open(corpus.PINS, "w") as f:
        json.dump(pins, f, indent=1, sort_keys=True)
        f.write("\n")


def _hashes(item: corpus.Item, checkout: str, values: dict = None) -> dict:
    """Each file's SHA-256; with ``values``, also the arrays of each ``.npz``
    (a forward's output), kept to compare within float32 summation order."""
    files = corpus.run_item(item, checkout)
    if values is not None:
        for k, data in files.items():
            if k.endswith(".npz"):
                values.setdefault(item.name, {})[k] = corpus.npz_values(data)
    return {k: corpus.digest(v) for k, v in sorted(files.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkout", help="a netdsl source tree (the directory holding netdsl/)")
    ap.add_argument("--changed", metavar="ITEM", help="pin ITEM's intended new output")
    ap.add_argument("--changelog", help="the CHANGELOG.md entry of the change (--changed)")
    ap.add_argument("--diff", nargs=2, metavar=("ITEM", "OTHER"),
                    help="diff ITEM's files between the checkout and OTHER")
    ap.add_argument("--item", action="append", help="only these items (default: all)")
    args = ap.parse_args(argv)
    items = {it.name: it for it in corpus.ITEMS}
    if args.diff:
        item = items[args.diff[0]]
        a, b = corpus.run_item(item, args.checkout), corpus.run_item(item, args.diff[1])
        for name in sorted(set(a) | set(b)):
            sys.stdout.writelines(difflib.unified_diff(
                a.get(name, b"").decode(errors="replace").splitlines(True),
                b.get(name, b"").decode(errors="replace").splitlines(True),
                "%s/%s" % (args.checkout, name), "%s/%s" % (args.diff[1], name)))
        return 0
    pins = _load()
    if args.changed:
        if not args.changelog:
            ap.error("--changed needs --changelog (the CHANGELOG.md entry)")
        pins["changed"][args.changed] = {"changelog": args.changelog,
                                         "files": _hashes(items[args.changed], args.checkout)}
    else:
        for name in args.item or list(items):
            pins["0.1"][name] = _hashes(items[name], args.checkout, pins.setdefault("values", {}))
            print("pinned", name, file=sys.stderr)
    _save(pins)
    return 0


if __name__ == "__main__":
    sys.exit(main())
