"""`netdsl schema` is a valid JSON Schema that accepts the shipped specs and
catches what an editor should flag (checked with the jsonschema package)."""
import glob
import json
import os

import pytest

from netdsl.cli import main
from netdsl.spec.load import load_file, plain

import jsonschema  # noqa: E402  (test extra)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))


@pytest.mark.parametrize("path", SPECS, ids=[os.path.basename(p) for p in SPECS])
def test_shipped_specs_validate(validator, path):
    # read with the spec loader's own YAML rules (YAML 1.2 scalars: 1e-10 is a number)
    doc = plain(load_file(path))
    errors = [e.message for e in validator.iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize("doc,fragment", [
    ({"layers": [{"Convolution": "c", "kernal_size": 3}]}, "'kernal_size' was unexpected"),
    ({"layers": [{"Pooling": "p", "pool": "MAXIMUM"}]}, "MAXIMUM"),
    ({"layer": []}, "'layer' was unexpected"),
])
def test_schema_flags_mistakes(validator, doc, fragment):
    messages = " | ".join(e.message for e in validator.iter_errors(doc))
    assert fragment in messages
