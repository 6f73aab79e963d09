"""Durability: `netdsl init` and `netdsl build` killed with SIGKILL at many points while
writing over a previous good output leave that output intact (or the new one
complete), and the next run removes the temporary files a killed writer left."""
from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

from netdsl import fileio

NET = """name: "wide"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2048 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
  inner_product_param { num_output: 2048 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  inner_product_param { num_output: 1024 weight_filler { type: "xavier" } } }
"""

SPEC = """name: wide
inputs:
  data: [1, 2048]
layers:
  - InnerProduct: fc1
    num_output: 2048
    weight_filler: {type: gaussian, std: 0.01}
  - InnerProduct: fc2
    num_output: %d
"""

KILLS = 12  # per verb: half at random times, half while a temporary file exists


def _cmd(*args):
    return [sys.executable, "-m", "netdsl", *args]


def _umask_027():
    os.umask(0o027)


def _run(args, **kw):
    out = subprocess.run(_cmd(*args), capture_output=True, text=True, preexec_fn=_umask_027,
                         timeout=300, **kw)
    assert out.returncode == 0, out.stderr
    return out


def _temps(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def _snapshot(directory):
    return {n: open(os.path.join(directory, n), "rb").read()
            for n in sorted(os.listdir(directory)) if not n.endswith(".tmp")}


def _kill_loop(args, directory, old, new, rng, duration):
    """Start ``args`` KILLS times, SIGKILL it after a random delay; after each kill
    every output file is the old one or the new one, whole."""
    outcomes = {"old": 0, "new": 0, "mixed": 0}
    mid_write = 0  # kills that left a temporary file of their own: caught mid-write
    for i in range(KILLS):
        for name, data in old.items():  # each attempt writes over the previous good output
            with open(os.path.join(directory, name), "wb") as fh:
                fh.write(data)
        before = set(_temps(directory))
        proc = subprocess.Popen(_cmd(*args), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=_umask_027)
        if i % 2:
            # anywhere in the run
            time.sleep(rng.uniform(0.0, 1.2 * duration))
        else:
            # while the caffemodel is being written: wait for its temporary file
            while proc.poll() is None and not any(
                    ".caffemodel." in t for t in set(_temps(directory)) - before):
                time.sleep(0.0002)
            time.sleep(rng.uniform(0.0, 0.004))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _snapshot(directory)
        assert set(now) == set(old), (sorted(now), sorted(old))
        states = set()
        for name, data in now.items():
            assert data in (old[name], new[name]), "%s is neither the old nor the new file" % name
            states.add("old" if data == old[name] else "new")
        outcomes["mixed" if len(states) > 1 else states.pop()] += 1
        mid_write += bool(set(_temps(directory)) - before)
    return outcomes, mid_write


def _check_clean_after_next_run(args, directory, new):
    _run(args)
    assert _temps(directory) == []
    assert _snapshot(directory) == new
    for name in new:  # a new file's mode is 0o666 less the writer's umask (027 here)
        assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o640


def test_init_killed_while_writing(tmp_path):
    net = tmp_path / "wide.prototxt"
    net.write_text(NET)
    out_dir = tmp_path / "models"
    target = str(out_dir / "wide.caffemodel")
    rng = random.Random(20251201)
    # the previous good output (seed 1) and the complete new one (seed 2)
    _run(["init", str(net), "-o", target, "--seed", "2"])
    new = _snapshot(str(out_dir))
    t = time.monotonic()
    _run(["init", str(net), "-o", target, "--seed", "1"])
    duration = time.monotonic() - t
    old = _snapshot(str(out_dir))
    assert old != new and len(old["wide.caffemodel"]) > 20 << 20
    args = ["init", str(net), "-o", target, "--seed", "2"]
    outcomes, mid_write = _kill_loop(args, str(out_dir), old, new, rng, duration)
    assert outcomes["mixed"] == 0 and outcomes["old"] > 0, outcomes
    assert mid_write >= 2, (mid_write, outcomes)
    _check_clean_after_next_run(args, str(out_dir), new)


def test_build_killed_while_writing(tmp_path):
    old_spec, new_spec = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_spec.write_text(SPEC % 1024)
    new_spec.write_text(SPEC % 1000)
    out_dir = tmp_path / "out"
    rng = random.Random(7)
    _run(["build", str(new_spec), "-o", str(out_dir), "--weights"])
    new = _snapshot(str(out_dir))
    t = time.monotonic()
    _run(["build", str(old_spec), "-o", str(out_dir), "--weights"])
    duration = time.monotonic() - t
    old = _snapshot(str(out_dir))
    assert set(old) == {"train.prototxt", "val.prototxt", "deploy.prototxt", "init.caffemodel"}
    assert all(old[n] != new[n] for n in old if n.endswith(("caffemodel", "deploy.prototxt")))
    args = ["build", str(new_spec), "-o", str(out_dir), "--weights"]
    # build writes its files one after the other: a kill between two renames leaves
    # some files new and some old, each of them whole
    outcomes, mid_write = _kill_loop(args, str(out_dir), old, new, rng, duration)
    assert sum(outcomes.values()) == KILLS and mid_write >= 2, (mid_write, outcomes)
    _check_clean_after_next_run(args, str(out_dir), new)


def test_stale_temporary_files(tmp_path):
    target = tmp_path / "x.prototxt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / (".x.prototxt.%d.0123abcd.tmp" % dead.pid)
    mine = tmp_path / (".x.prototxt.%d.89abcdef.tmp" % os.getpid())  # a live writer's
    other = tmp_path / (".y.prototxt.%d.0123abcd.tmp" % dead.pid)    # another target's
    for p in (stale, mine, other):
        p.write_text("partial")
    fileio.atomic_write(str(target), "name: \"x\"\n")
    assert target.read_text() == "name: \"x\"\n"
    assert not stale.exists() and mine.exists() and other.exists()


def test_no_umask_juggling(tmp_path, monkeypatch):
    """fileio never changes the process umask (another thread may be creating files)."""
    def forbidden(mask):
        raise AssertionError("os.umask(%o) called" % mask)
    monkeypatch.setattr(os, "umask", forbidden)
    fileio.atomic_write(str(tmp_path / "f"), b"x")
    assert (tmp_path / "f").read_bytes() == b"x"


def test_mode_follows_umask(tmp_path):
    code = ("import os, stat; os.umask(0o077)\n"
            "from netdsl.fileio import atomic_write\n"
            "atomic_write(%r, 'x')\n"
            "print(oct(stat.S_IMODE(os.stat(%r).st_mode)))\n"
            % (str(tmp_path / "f"), str(tmp_path / "f")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "0o600", out.stderr
