"""``netdsl inspect MODEL.caffemodel``: its layers and blob shapes (``--stats``:
min, max, mean)."""
from __future__ import annotations

import argparse

from .common import emit, json_text

NAME = "inspect"
HELP = "list a caffemodel's layers and blob shapes (--stats: min/max/mean)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.caffemodel")
    p.add_argument("--stats", action="store_true")
    p.add_argument("--format", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    from ..weights import format_inspect, inspect
    info = inspect(args.model, stats=args.stats, pb2=args.pb2)
    if args.format == "json":
        emit(json_text(info), None)
    else:
        text = format_inspect(info)
        emit(text if text.endswith("\n") else text + "\n", None)
    return 0
