"""The PyTorch-parity recipes as spec-language ops: ``- torch_interpolate: TOP``
with ``bottom``, ``shape`` (the input's N, C, H, W) and the recipe's keyword
arguments expands into :class:`~netdsl.ops.base.Record` s, the recipe running on
a layer factory that records instead of building NetSpec tops.  The recipes
themselves live in :mod:`netdsl.convert.recipes` (the converters of
netdsl.torch and netdsl.onnx call them without loading the spec ops); their
names are offered here too.  docs/pytorch-parity.md explains why each recipe
is exact."""
from __future__ import annotations

import inspect
import warnings
from typing import Any, List, Optional

from netdsl.convert.recipes import *  # noqa: F401,F403 - the recipes under this name too
from netdsl.convert.recipes import FACTORY, RECIPES, __all__ as _RECIPE_NAMES
from netdsl.errors import NetdslError, did_you_mean
from netdsl.ops.base import Record

__all__ = list(_RECIPE_NAMES) + ["SPEC_OPS"]


class _RecFn:
    __slots__ = ("type_name", "ntop", "record")

    def __init__(self, type_name: str, ntop: int, record: Any) -> None:
        self.type_name, self.ntop, self.record = type_name, ntop, record


class _RecTop:
    """A blob of an expanding spec op: its name and the record producing it."""
    __slots__ = ("fn", "n", "name")

    def __init__(self, fn: Optional[_RecFn], n: int, name: str) -> None:
        self.fn, self.n, self.name = fn, n, name


class _RecordLayers:
    """A layer factory with NetSpec's call form that appends spec Records."""

    def __init__(self, call: Any, prefix: str) -> None:
        self.call, self.prefix = call, prefix
        self.records: List[Any] = []
        self.count = 0

    def __getattr__(self, type_name: str):

        def make(*bottoms: _RecTop, **params: Any):
            ntop = params.pop("ntop", 1)
            lname = params.pop("name", None)
            tops = []
            for _ in range(ntop):
                self.count += 1
                tops.append("%s_%s%d" % (self.prefix, type_name.lower(), self.count))
            rec = Record(type_name, name=lname, tops=tops, bottoms=[b.name for b in bottoms],
                         ntop=ntop, params=params, node=self.call.node, trace=self.call.trace,
                         op=self.call.op, field_nodes=dict(self.call.nodes))
            self.records.append(rec)
            fn = _RecFn(type_name, ntop, rec)
            out = tuple(_RecTop(fn, i, t) for i, t in enumerate(tops))
            return out[0] if ntop == 1 else out
        return make


def _spec_op(op: str, recipe: Any):
    sig = inspect.signature(recipe)
    allowed = [k for k, prm in list(sig.parameters.items())[2:]
               if k != "weights" and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)]

    def expand(call: Any) -> List[Any]:
        """Expand ``- %s: TOP`` with ``bottom``, ``shape`` (N, C, H, W) and the
        recipe's keyword arguments into records."""
        call.check_keys(["bottom", "shape"] + allowed)
        top = call.top()
        if not top:
            raise call.error(None, "give the top name: `- %s: NAME`" % op)
        bottoms = call.names("bottom")
        if not bottoms or len(bottoms) != 1:
            raise call.error("bottom", "needs `bottom`: the input blob")
        shape = call.args.get("shape")
        if (not isinstance(shape, list) or len(shape) not in (3, 4)
                or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
            raise call.error("shape", "`shape` is the input's [N, C, H, W], got %r" % (shape,))
        kwargs = {k: v for k, v in call.args.items() if k not in ("bottom", "shape")}
        if op == "torch_interpolate":
            kwargs["weights"] = None
        _check_signature(call, op, recipe, kwargs)
        factory = _RecordLayers(call, top[0])
        token = FACTORY.set(factory)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                result = recipe(_RecTop(None, 0, bottoms[0]), shape, **kwargs)
        except NetdslError as exc:
            raise call.error(exc.field if exc.field in call.args else None, exc.message,
                             hint=exc.hint) from None
        except UserWarning as exc:
            raise call.error(None, "%s; build it from Python to get the weight" % exc) from None
        except (TypeError, ValueError, ArithmeticError) as exc:  # a value of the wrong kind
            raise call.error(None, "%s: %s" % (op, exc)) from None
        finally:
            FACTORY.reset(token)
        if op == "torch_interpolate" and any(r.type == "InnerProduct" for r in factory.records):
            raise call.error(None, "this resize needs a computed interpolation matrix "
                             "(InnerProduct weights); only integer-scale nearest and "
                             "align_corners=false bilinear have filler-made kernels",
                             hint="use netdsl.ops.pytorch.resize_matrix from Python")
        if result.fn is None:   # nothing to do (factor 1): copy the input
            result = factory.Split(result)
        rec = result.fn.record
        rec.tops[result.n] = top[0]
        return factory.records
    expand.__name__ = "expand_" + op
    return expand


def _check_signature(call: Any, op: str, recipe: Any, kwargs: dict) -> None:
    """Unknown and missing keys of a spec op, named before the recipe is called."""
    params = list(inspect.signature(recipe).parameters.values())[2:]  # after (x, shape)
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in names:
            raise call.error(key, "%s has no argument `%s`" % (op, key),
                             hint=did_you_mean(key, names))
    for p in params:
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) \
                and p.name not in kwargs:
            raise call.error(None, "needs `%s`" % p.name)


#: spec op name -> ``expand(OpCall) -> [Record]`` (the form of :data:`netdsl.ops.OPS`);
#: every recipe except the matrix resize, whose weights no filler makes
SPEC_OPS = {name: _spec_op(name, fn) for name, fn in RECIPES.items()}
