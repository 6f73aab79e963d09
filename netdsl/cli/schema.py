"""``netdsl schema``: the JSON Schema of the spec format, made from the caffe.proto in
use (netdsl.spec.schema_json)."""
from __future__ import annotations

import argparse
import json

from .common import emit

NAME = "schema"
HELP = "print the JSON Schema of the spec format (from caffe.proto)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write here instead of standard output")


def run(args: argparse.Namespace) -> int:
    from ..spec.schema_json import spec_schema
    emit(json.dumps(spec_schema(args.pb2), indent=1) + "\n", args.output)
    return 0
