"""netdsl's one expression language, as spec values and shape expressions use it.

Expected values are worked out by hand from the expressions."""
from __future__ import annotations

from fractions import Fraction

import pytest

from netdsl.errors import NetdslError
from netdsl.expr import ExprError, evaluate, parse
from netdsl.proto import caffe_pb2
from netdsl.shape_expressions import expression_shape_rule
from netdsl.spec.interpolate import substitute


class _Names:
    def __init__(self, **values):
        self.values = values

    def name(self, name):
        if name not in self.values:
            raise ExprError("unknown name `%s`" % name, lookup=True)
        return self.values[name]


def _ev(text, **values):
    return evaluate(parse(text), _Names(**values))


def test_arithmetic_is_exact_and_floors_like_python():
    assert _ev("7 / 2") == Fraction(7, 2)          # exact, not 3.5 in float
    assert _ev("8 / 2") == 4 and isinstance(_ev("8 / 2"), int)
    assert _ev("-7 // 2") == -4 and _ev("-7 % 3") == 2     # floor: -3.5 -> -4; -7 = 3 * -3 + 2
    assert _ev("int(-7 / 2)") == -3                  # toward zero, a C++ cast
    assert _ev("ceil(10 / 4) + floor(10 / 4)") == 5  # 3 + 2


def test_jinja_spellings_specs_use():
    assert _ev("'scale_' ~ pool", pool="pool4") == "scale_pool4"
    assert _ev("'n' ~ 3 ~ true") == "n3true"         # text as YAML spells it
    assert _ev("x is none", x=None) is True and _ev("x is not none", x=0) is True
    assert _ev("tag | upper", tag="net-8") == "NET-8"
    assert _ev("w | length", w=[1, 2, 3]) == 3
    assert _ev("H | ceil", H=Fraction(5, 2)) == 3
    assert _ev("s.nout + s['nout']", s={"nout": 64}) == 128
    assert _ev("a or 5", a=0) == 5 and _ev("a and 'x'", a=1) == "x"   # an operand, as Jinja2
    assert _ev("'b' in tags and 2 not in [1, 3]", tags=["a", "b"]) is True


@pytest.mark.parametrize("text, message", [
    ("H ** 2", "operator not allowed"),
    ("H ^ 2", "operator not allowed"),
    ("a @ b", "operator not allowed"),
    ("~H", "operator not allowed"),
    ("x is 3", "`is` compares with none, true or false"),
    ("x | nope", "`|` applies a function"),
    ("open('f')", "`open` is not a function here"),
    ("x # comment", "`#` is not allowed"),
    ("lambda: 1", "`lambda` is not allowed"),
    ("H[1:2]", "`slice` is not allowed"),
])
def test_constructs_outside_the_language_are_refused_when_parsed(text, message):
    with pytest.raises(ExprError, match=message):
        parse(text)


def test_spec_values_and_shape_expressions_read_the_same_syntax():
    # a spec value: ceil(7 / 2) = 4, `~` joins as text
    assert substitute("${'c' ~ ceil(k / 2)}", {"k": 7}) == "c4"
    assert substitute("${k / 2}", {"k": 7}) == 3.5       # a non-integer becomes a float
    # the same constructs in a shape rule, bottom (1, 1, 7, 6): ceil(7 / 2) = 4;
    # H | ceil = 7; stride is unset, so the else branch: 2 * W = 12
    rule = expression_shape_rule([["ceil(H / 2)", "H | ceil",
                                   "1 if has(pooling_param.stride) else 2 * W"]])
    layer = caffe_pb2.LayerParameter(name="x", type="T")
    assert rule(layer, [(1, 1, 7, 6)], 1) == [(4, 7, 12)]


def test_shape_expressions_keep_numbers_only_and_integer_dims():
    with pytest.raises(NetdslError, match="only numbers are allowed as constants"):
        expression_shape_rule([["'a' ~ H"]])
    rule = expression_shape_rule([["H / 2"]])
    with pytest.raises(NetdslError, match=r"the value 7/2 \(= 3.5\) is not an integer"):
        rule(caffe_pb2.LayerParameter(name="x", type="T"), [(1, 1, 7, 6)], 1)


def test_spec_errors_say_what_and_suggest():
    with pytest.raises(NetdslError, match="unknown variable `widht`") as ei:
        substitute("${widht * 2}", {"width": 8})
    assert ei.value.hint == "did you mean `width`?"
    with pytest.raises(NetdslError, match="`s` has no `nuot`"):
        substitute("${s.nuot}", {"s": {"nout": 1}})
    with pytest.raises(NetdslError, match=r"cannot evaluate `\$\{1 / k\}`: division by zero"):
        substitute("${1 / k}", {"k": 0})
