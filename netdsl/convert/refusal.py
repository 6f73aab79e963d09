"""Refusing a model once, with every blocker: the ops a conversion could not map
are collected (the walk goes on past each with a stand-in blob of its shape, so
independent blockers further on are found too) and reported in one located
message.  Each blocker says whether stock BVLC Caffe has no form for it at all
(a product of two computed tensors, as attention computes; values that decide
shapes or positions) or whether a converter is just not written yet."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from netdsl.errors import NetdslError

#: op -> why stock BVLC Caffe has no layer group for it at all (caffe.proto's
#: layers multiply a blob only by learned or fixed parameters, never by another
#: computed blob as a matrix, and every shape is fixed when the net is built)
NO_STOCK_FORM = {
    "aten.bmm": "a product of two computed tensors",
    "aten.baddbmm": "a product of two computed tensors",
    "aten.einsum": "a product of two computed tensors",
    "aten.scaled_dot_product_attention": "attention (a product of two computed tensors)",
    "aten._scaled_dot_product_flash_attention_for_cpu":
        "attention (a product of two computed tensors)",
    "aten._scaled_dot_product_efficient_attention":
        "attention (a product of two computed tensors)",
    "aten.nonzero": "a data-dependent shape",
    "aten.masked_select": "a data-dependent shape",
    "aten.unique": "a data-dependent shape",
    "aten._unique2": "a data-dependent shape",
    "aten.argsort": "positions decided by the values (data-dependent)",
    "aten.sort": "positions decided by the values (data-dependent)",
    "aten.topk": "positions decided by the values (data-dependent)",
    "aten.gather": "positions decided by the values (data-dependent)",
}

_ATTENTION = ("two computed tensors", "attention")


def no_stock_form(op: Any, why: str) -> NetdslError:
    """The refusal of an op that stock BVLC Caffe cannot express at all."""
    hint = None
    if any(w in why for w in _ATTENTION):
        hint = ("stock BVLC Caffe has no layer that multiplies two computed matrices, so "
                "attention-style blocks stay refused; convert up to the block before it "
                "with --outputs NAME")
    err = op.error("%s: no stock Caffe form exists" % why, hint=hint)
    err.no_stock_form = True       # type: ignore[attr-defined]
    return err


class Blocker:
    """One op the conversion could not map: its error (located), op name, module
    path, source line and whether no stock Caffe form exists at all."""

    __slots__ = ("error", "target", "module", "source", "impossible")

    def __init__(self, error: NetdslError, target: str, module: str,
                 source: Optional[Tuple[str, int, str]], impossible: bool) -> None:
        self.error, self.target, self.module = error, target, module
        self.source, self.impossible = source, impossible

    def where(self) -> str:
        parts = [self.module] if self.module else []
        if self.source:
            parts.append("%s:%d" % (os.path.basename(self.source[0]), self.source[1]))
        return ", ".join(parts)


def blocker(err: NetdslError, op: Any) -> Blocker:
    """The blocker of ``op`` whose converter raised ``err``."""
    impossible = bool(getattr(err, "no_stock_form", False))
    if op.key in NO_STOCK_FORM and not impossible:
        err = no_stock_form(op, NO_STOCK_FORM[op.key])
        impossible = True
    return Blocker(err, op.target, op.module, op.source, impossible)


def stand_in(cx: Any, shape: Any) -> Any:
    """A blob of ``shape`` (an Input layer, never emitted: the conversion is
    refused) standing for a blocked op's result, so the walk goes on to find
    the blockers after it; None when the result is not a tensor."""
    from netdsl.convert.graph import Blob
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return Blob(cx.L.Input(shape={"dim": list(shape)}), shape)
    if isinstance(shape, list):
        return [stand_in(cx, s) for s in shape]
    return None


def refusal(blockers: Sequence[Blocker], before: Optional[str] = None) -> NetdslError:
    """One error for all ``blockers``: the first that has no stock form at all (else
    the first), located at its source line, then every blocker grouped by op and
    kind with its count and first place.  ``before`` names a module that ends
    before the first such blocker (the ``--outputs`` suggestion)."""
    first = next((b for b in blockers if b.impossible), blockers[0])
    text = first.error.message
    if not first.impossible:
        text += " (no converter written yet)"
    groups: Dict[Tuple[str, bool], List[Blocker]] = {}
    for b in blockers:
        groups.setdefault((b.target, b.impossible), []).append(b)
    if len(blockers) > 1:
        items = []
        for (target, impossible), bs in sorted(groups.items(), key=lambda kv: not kv[0][1]):
            items.append("%s x%d (%s; first at %s)" % (
                target, len(bs), "no stock Caffe form" if impossible else "not written yet",
                bs[0].where() or "?"))
        text += " -- %d blockers in all: %s" % (len(blockers), ", ".join(items))
    hint = first.error.hint
    if first.impossible and before and hint and "--outputs" in hint:
        hint = hint.replace("--outputs NAME", "--outputs %s" % before)
    err = NetdslError(text, layer=first.error.layer, hint=hint, file=first.error.file,
                      line=first.error.line)
    if first.source:
        err.located(file=first.source[0], line=first.source[1])
    return err


def module_before(paths_seen: Sequence[Sequence[str]], scopes: Sequence[str]) -> Optional[str]:
    """The module that ran last before the block holding a blocked op, at the
    shallowest level below the model where one exists: ``paths_seen`` are the
    module stacks of the ops converted before it (in order), ``scopes`` the
    blocked op's own stack, outermost first."""
    for d in range(1, len(scopes)):
        parent, own = scopes[d - 1], scopes[d]
        last = None
        for stack in paths_seen:
            if len(stack) > d and stack[d - 1] == parent and stack[d] != own:
                last = stack[d]
        if last is not None:
            return last
    return None
