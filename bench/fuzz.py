"""Long fuzzing runs over every family of tests/fuzzing.py (see docs/fuzzing.md).

    python bench/fuzz.py --minutes 10                 # all families, round robin
    python bench/fuzz.py --minutes 2 --family spec    # one family (repeatable)
    python bench/fuzz.py --replay tests/data/fuzz     # re-run saved cases

Prints cases, NetdslErrors and failures per family; each failing input is saved
under --out (default bench/fuzz-crashes/FAMILY/) with its message beside it, in
the form tests/data/fuzz/ keeps as regression cases.  Exit status 1 when any
case failed.  The run is reproducible from --seed.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import fuzzing  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="mutation fuzzing of netdsl's readers and CLI")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "fuzz-crashes"))
    ap.add_argument("--replay", metavar="DIR", help="run the saved cases in DIR and stop")
    ap.add_argument("--cli-share", type=float, default=0.25,
                    help="share of the time given to the (slow) CLI family (default 0.25)")
    args = ap.parse_args(argv)
    fams = fuzzing.families()
    wd = fuzzing.Workdir()
    try:
        if args.replay:
            bad = 0
            for fam_name, path in fuzzing.regression_cases(args.replay):
                try:
                    fuzzing.replay(fams[fam_name], wd, path)
                    print("ok    %s" % path)
                except fuzzing.Failure as exc:
                    bad += 1
                    print("FAIL  %s: %s" % (path, str(exc).splitlines()[0]))
            return 1 if bad else 0
        names = args.family or list(fams)
        for n in names:
            if n not in fams:
                ap.error("no family %r (families: %s)" % (n, ", ".join(fams)))
        rnd = random.Random(args.seed)
        stats = {n: {"cases": 0, "ok": 0, "error": 0, "fail": 0, "seconds": 0.0} for n in names}
        seeds = {n: sorted(fams[n].seeds) for n in names}
        # time shares: the CLI family is ~100x slower per case; give it a fixed share
        share = {n: 1.0 for n in names}
        if "cli" in share and len(names) > 1:
            rest = (1.0 - args.cli_share) / (len(names) - 1)
            share = {n: (args.cli_share if n == "cli" else rest) for n in names}
        deadline = time.monotonic() + args.minutes * 60
        started = time.monotonic()
        while time.monotonic() < deadline:
            # the family furthest behind its time share goes next
            spent = {n: stats[n]["seconds"] / share[n] for n in names}
            name = min(names, key=lambda n: spent[n])
            fam = fams[name]
            seed = rnd.choice(seeds[name])
            others = [fam.seeds[s] for s in rnd.sample(seeds[name], min(4, len(seeds[name])))]
            data = fuzzing.mutate(fam.seeds[seed], rnd, others, binary=fam.binary)
            verb = rnd.choice(fuzzing.verbs_for(seed)) if fam.subprocess else None
            t = time.monotonic()
            st = stats[name]
            try:
                st[fuzzing.run_case(fam, wd, seed, data, verb)] += 1
            except fuzzing.Failure as exc:
                st["fail"] += 1
                saved = fuzzing.save_case(args.out, fam, seed, data, verb, str(exc))
                print("FAIL %s (%s%s): %s\n  saved %s" % (
                    name, seed, " " + verb if verb else "", str(exc).splitlines()[0], saved),
                    flush=True)
            st["cases"] += 1
            st["seconds"] += time.monotonic() - t
        total = time.monotonic() - started
        print("\n%-16s %8s %8s %8s %6s %9s" % ("family", "cases", "ok", "error", "fail",
                                                "cases/s"))
        for n in names:
            s = stats[n]
            print("%-16s %8d %8d %8d %6d %9.1f" % (n, s["cases"], s["ok"], s["error"], s["fail"],
                                                    s["cases"] / s["seconds"] if s["seconds"]
                                                    else 0.0))
        cases = sum(s["cases"] for s in stats.values())
        fails = sum(s["fail"] for s in stats.values())
        print("%-16s %8d %26d    in %.1f min (seed %d; hang bound %d s in process, %d s "
              "CLI; memory bound %d MiB in process, %d MiB address space CLI)"
              % ("total", cases, fails, total / 60, args.seed, fuzzing.CASE_SECONDS,
                 fuzzing.CLI_SECONDS, fuzzing.CASE_BYTES >> 20,
                 fuzzing.CLI_ADDRESS_SPACE >> 20))
        return 1 if fails else 0
    finally:
        wd.close()


if __name__ == "__main__":
    sys.exit(main())
