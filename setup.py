"""Build step: ship the top-level templates/ and specs/ inside the package.

The repository keeps its example specs and templates at the top level; a
wheel carries copies of them as package data in ``netdsl/_data/`` (found by
:mod:`netdsl.shipped`).  Everything else is configured in pyproject.toml.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = ("templates", "specs")


class BuildPyWithData(build_py):
    """build_py, then copy templates/ and specs/ to <build_lib>/netdsl/_data/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):   # editable: the top-level dirs are read
            return
        for kind in SHIPPED:
            src = os.path.join(HERE, kind)
            if not os.path.isdir(src):
                continue
            dst = os.path.join(self.build_lib, "netdsl", "_data", kind)
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
