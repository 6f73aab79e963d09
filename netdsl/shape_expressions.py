"""Shape rules written as expressions over a layer's bottoms and parameters.

``register_layer("Up", shape=[["N", "C", "2 * H", "2 * W"]])`` and a spec's
``custom_layers:`` give a type's top shapes (and learnable-blob shapes) as one
list of dims per top, each an int or an expression of netdsl's expression
language (:mod:`netdsl.expr`, the one spec values use) over the names this
module defines: ``N C H W``, ``b0 b1 ...``, ``bottom[i]``, ``param``, the
layer's ``*_param`` messages, ``ntop``, ``nbottom``, ``layer``.  The syntax is
in docs/custom-layers.md.
"""
from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from google.protobuf.message import Message

from .errors import NetdslError, did_you_mean
from .expr import ExprError, evaluate, parse

__all__ = ["ShapeExpressions", "expression_shape_rule", "expression_param_rule"]

Shape = Tuple[int, ...]

_DIMS = {"N": 0, "C": 1, "H": 2, "W": 3}
_BOTTOM_NAME = re.compile(r"^b(\d+)$")


class _Blob:
    """A bottom's shape as seen by expressions: ``N C H W``, ``shape[i]``, ``axes``."""
    __slots__ = ("shape", "index")

    def __init__(self, shape: Shape, index: int) -> None:
        self.shape = shape
        self.index = index

    def attr(self, name: str) -> Any:
        if name in _DIMS:
            return _legacy(self.shape, _DIMS[name], "bottom[%d]" % self.index)
        if name == "shape":
            return list(self.shape)
        if name == "axes":
            return len(self.shape)
        if name == "count":
            out = 1
            for d in self.shape:
                out *= d
            return out
        raise ExprError("a bottom has N, C, H, W, shape, axes and count, not `%s`%s"
                         % (name, _hint(name, list(_DIMS) + ["shape", "axes", "count"])))


def _legacy(shape: Shape, index: int, what: str) -> int:
    # Blob::LegacyShape: at most 4 axes; missing axes count as 1
    if len(shape) > 4:
        raise ExprError("%s has %d axes %s; N, C, H and W (Caffe's legacy accessors) need at "
                         "most 4 (use shape[i])" % (what, len(shape), tuple(shape)))
    return shape[index] if index < len(shape) else 1


class _Msg:
    """A parameter message as seen by expressions: fields with the schema's defaults."""
    __slots__ = ("msg", "path")

    def __init__(self, msg: Message, path: str) -> None:
        self.msg = msg
        self.path = path

    def field(self, name: str):
        fd = self.msg.DESCRIPTOR.fields_by_name.get(name)
        if fd is None:
            raise ExprError("%s has no field `%s`%s" % (
                self.path, name, _hint(name, list(self.msg.DESCRIPTOR.fields_by_name))))
        return fd

    def attr(self, name: str) -> Any:
        fd = self.field(name)
        value = getattr(self.msg, name)
        if fd.message_type is not None:
            if _repeated(fd):
                return [_Msg(v, "%s.%s[%d]" % (self.path, name, i)) for i, v in enumerate(value)]
            return _Msg(value, "%s.%s" % (self.path, name))
        if _repeated(fd):
            return list(value)
        return value

    def has(self, name: str) -> bool:
        fd = self.field(name)
        if _repeated(fd):
            return len(getattr(self.msg, name)) > 0
        return self.msg.HasField(name)


def _repeated(fd) -> bool:
    from .schema import is_repeated
    return is_repeated(fd)


def _hint(name: str, cands: Sequence[str]) -> str:
    h = did_you_mean(name, cands)
    return "; " + h if h else ""


class _Scope:
    """Names an expression can use, for one layer and its bottom shapes."""

    def __init__(self, layer: Message, bottoms: Sequence[Shape], ntop: int) -> None:
        self.layer = layer
        self.bottoms = [tuple(int(d) for d in b) for b in bottoms]
        self.ntop = ntop

    def blob(self, i: int) -> _Blob:
        if not 0 <= i < len(self.bottoms):
            raise ExprError("bottom[%d] does not exist: the layer has %d bottom%s"
                             % (i, len(self.bottoms), "" if len(self.bottoms) == 1 else "s"))
        return _Blob(self.bottoms[i], i)

    def param(self) -> _Msg:
        from .schema import param_field_of
        own = param_field_of(self.layer.DESCRIPTOR, self.layer.type)
        if own is None:
            raise ExprError("`param` is the layer's own parameter message, but the schema has "
                             "no %sParameter; name a LayerParameter field instead (e.g. "
                             "pooling_param.kernel_size), or load the fork's schema (--proto)"
                             % self.layer.type)
        return _Msg(getattr(self.layer, own), own)

    def name(self, name: str) -> Any:
        if name in _DIMS:
            return self.blob(0).attr(name)
        m = _BOTTOM_NAME.match(name)
        if m:
            return self.blob(int(m.group(1)))
        if name == "bottom":
            return [_Blob(b, i) for i, b in enumerate(self.bottoms)]
        if name == "param":
            return self.param()
        if name == "layer":
            return _Msg(self.layer, "layer")
        if name == "ntop":
            return self.ntop
        if name == "nbottom":
            return len(self.bottoms)
        fields = self.layer.DESCRIPTOR.fields_by_name
        if name in fields and fields[name].message_type is not None:
            return _Msg(getattr(self.layer, name), name)
        known = ["N", "C", "H", "W", "bottom", "param", "layer", "ntop", "nbottom"] + \
            [f for f in fields if f.endswith("_param")]
        raise ExprError("unknown name `%s` (names: N C H W, b0 b1 ..., bottom[i], param, "
                         "<type>_param, ntop, nbottom)%s" % (name, _hint(name, known)))


class ShapeExpressions:
    """A shape (or parameter-shape) rule made of expressions; see :func:`expression_shape_rule`."""

    def __init__(self, exprs: Any, *, type_name: Optional[str] = None,
                 what: str = "shape", per_top: bool = True) -> None:
        self.what = what
        self.type_name = type_name
        self.per_top = per_top
        self.exprs: List[List[Union[str, int]]] = _expr_lists(exprs, what)
        self._trees: List[List[Any]] = []
        for i, dims in enumerate(self.exprs):
            row = []
            for j, e in enumerate(dims):
                if isinstance(e, bool) or not isinstance(e, (int, str)):
                    raise NetdslError("%s expression [%d][%d] of %s is %r; give a string or an "
                                      "int" % (what, i, j, self._owner(), e))
                if isinstance(e, int):
                    row.append(e)
                    continue
                try:
                    row.append(parse(e, strings=False))
                except ExprError as exc:
                    raise NetdslError("%s expression `%s` of %s: %s"
                                      % (what, e, self._owner(), exc), field=what) from None
            self._trees.append(row)

    def _owner(self) -> str:
        return "layer type `%s`" % self.type_name if self.type_name else "a custom layer"

    def evaluate(self, layer: Message, bottoms: Sequence[Sequence[int]], count: int
                 ) -> List[Shape]:
        """The shapes for ``count`` tops (or blobs) of ``layer``."""
        n = len(self._trees)
        if self.per_top and n == 1:
            rows = [0] * count
        elif not self.per_top or n == count:
            rows = list(range(n))
        else:
            raise NetdslError("%d %s expressions for %d tops (give one list for all tops or "
                              "one per top)" % (n, self.what, count), field="top")
        scope = _Scope(layer, bottoms, count)
        cache: Dict[int, Shape] = {}
        out: List[Shape] = []
        for r in rows:
            if r not in cache:
                cache[r] = tuple(self._dim(layer, scope, r, j) for j in range(len(self._trees[r])))
            out.append(cache[r])
        return out

    def _dim(self, layer: Message, scope: _Scope, r: int, j: int) -> int:
        tree = self._trees[r][j]
        if isinstance(tree, int):
            return tree
        text = self.exprs[r][j]
        try:
            v = evaluate(tree, scope)
            if isinstance(v, bool):
                v = int(v)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int):
                raise ExprError("the value %s is not an integer (round with //, ceil(), "
                                 "floor() or int())" % (v if not isinstance(v, Fraction)
                                                        else "%s (= %g)" % (v, float(v))))
        except ExprError as exc:
            raise NetdslError("%s expression `%s` (%s %d, axis %d): %s"
                              % (self.what, text, "top" if self.per_top else "blob", r, j, exc),
                              layer=layer.name or None, field=self.what) from None
        return v

    def __repr__(self) -> str:
        return "ShapeExpressions(%r)" % (self.exprs,)


def _expr_lists(exprs: Any, what: str) -> List[List[Union[str, int]]]:
    if isinstance(exprs, str):
        raise NetdslError("%s expressions are a list of dims per top, e.g. [['N', 'C', '2*H', "
                          "'2*W']], not one string" % what)
    try:
        rows = list(exprs)
    except TypeError:
        raise NetdslError("%s expressions are a list of dims per top, not %r"
                          % (what, exprs)) from None
    if rows and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in rows):
        rows = [rows]          # one top given as a flat list of dims
    out = []
    for r in rows:
        if isinstance(r, str):
            raise NetdslError("%s expressions: each top is a list of dims, got the string %r"
                              % (what, r))
        out.append(list(r))
    return out


def expression_shape_rule(exprs: Any, *, type_name: Optional[str] = None) -> Callable:
    """A shape rule from expressions: one list of dims per top (or one list for all).

    Each dim is an int or an expression string over the bottoms' dims and the
    layer's parameters, e.g. ``[["N", "C", "H * param.scale", "W * param.scale"]]``.
    Syntax errors raise at once; evaluation errors are NetdslErrors naming the
    layer and the expression.  The rule has the signature
    ``rule(layer, bottom_shapes, ntop)`` of :data:`netdsl.shapes.SHAPE_RULES`.
    """
    se = ShapeExpressions(exprs, type_name=type_name, what="shape")

    def rule(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
        return se.evaluate(layer, bottoms, ntop)
    rule.exprs = se.exprs  # type: ignore[attr-defined]
    return rule


def expression_param_rule(exprs: Any, *, type_name: Optional[str] = None) -> Callable:
    """A learnable-blob shape rule from expressions: one list of dims per blob."""
    se = ShapeExpressions(exprs, type_name=type_name, what="param shape", per_top=False)

    def rule(layer: Message, bottoms: List[Shape]) -> List[Shape]:
        return se.evaluate(layer, bottoms, len(se.exprs))
    rule.exprs = se.exprs  # type: ignore[attr-defined]
    return rule
