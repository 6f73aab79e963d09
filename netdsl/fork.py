"""Fork schemas: checks of a user's extended caffe.proto against BVLC's."""
from __future__ import annotations


def check_against_bvlc(pb2) -> None:
    return None
