"""Recurrent layers: RNN, LSTM (recurrent_layer.cpp) and LSTMUnit.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from google.protobuf.message import Message

from .blob import Shape, count, err, shape_str
from .registry import declare


def _recurrent_counts(layer: Message) -> Tuple[int, int]:
    # recurrent_layer.hpp: x, cont, optional x_static, plus exposed hidden state
    exposed = _num_hidden(layer) if layer.recurrent_param.expose_hidden else 0
    return (2 + exposed, 3 + exposed)


def _recurrent_tops(layer: Message) -> int:
    return 1 + (_num_hidden(layer) if layer.recurrent_param.expose_hidden else 0)


def _num_hidden(layer: Message) -> int:
    return 2 if layer.type == "LSTM" else 1   # LSTM: h and c; RNN: h


def _recurrent_setup(layer: Message, bottoms: List[Shape]) -> Tuple[int, int, int, bool]:
    # recurrent_layer.cpp LayerSetUp/Reshape and the unrolled nets of lstm_layer.cpp,
    # rnn_layer.cpp (InnerProduct with axis 2 over x)
    x, cont = bottoms[0], bottoms[1]
    h = layer.recurrent_param.num_output
    if h <= 0:
        raise err("num_output must be positive", "recurrent_param.num_output")
    if len(x) < 3:
        raise err("bottom[0] must have at least 3 axes -- (#timesteps, #streams, input...) "
                  "(the unrolled net's InnerProduct reads axis 2); got %s" % shape_str(x))
    if len(cont) != 2:
        raise err("bottom[1] must have exactly 2 axes -- (#timesteps, #streams); got %s"
                  % shape_str(cont))
    t, n = x[0], x[1]
    if cont != (t, n):
        raise err("bottom[1] %s must be (T, N) = (%d, %d) like bottom[0] %s"
                  % (shape_str(cont), t, n, shape_str(x)))
    exposed = _num_hidden(layer) if layer.recurrent_param.expose_hidden else 0
    static = len(bottoms) > 2 + exposed
    if static:
        xs = bottoms[2]
        if len(xs) < 1 or xs[0] != n:
            raise err("the static input bottom[2] %s must start with the %d streams"
                      % (shape_str(xs), n))
    for j in range(exposed):
        hb = bottoms[2 + int(static) + j]
        if hb != (1, n, h):
            raise err("shape mismatch - recurrent input %d must be %s; bottom[%d] is %s"
                      % (j, shape_str((1, n, h)), 2 + int(static) + j, shape_str(hb)))
    return t, n, h, static


def _recurrent(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    t, n, h, _ = _recurrent_setup(layer, bottoms)
    return [(t, n, h)] + [(1, n, h)] * (ntop - 1)


def _recurrent_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    # owners in unrolled-net order: LSTM W_xc, b_c, [W_xc_static], W_hc;
    # RNN W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o
    _, _, h, static = _recurrent_setup(layer, bottoms)
    g = 4 * h if layer.type == "LSTM" else h
    out = [(g, count(bottoms[0], 2)), (g,)]
    if static:
        out.append((g, count(bottoms[2], 1)))
    out.append((g, h))
    if layer.type == "RNN":
        out += [(h, h), (h,)]
    return out


def _lstm_unit(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # lstm_unit_layer.cpp: c_prev (1, N, H), gates (1, N, 4H), cont (1, N)
    c, gates, cont = bottoms
    if len(c) != 3 or len(gates) != 3 or len(cont) != 2:
        raise err("LSTMUnit takes c_prev (1, N, H), gates (1, N, 4H) and cont (1, N); got %s, %s, "
                  "%s" % (shape_str(c), shape_str(gates), shape_str(cont)))
    n = c[1]
    for b in bottoms:
        if b[0] != 1 or b[1] != n:
            raise err("every LSTMUnit bottom must be (1, %d, ...); got %s" % (n, shape_str(b)))
    if gates[2] != 4 * c[2]:
        raise err("gate input has %d channels; LSTMUnit needs 4 x %d = %d"
                  % (gates[2], c[2], 4 * c[2]))
    return [c, c]


def _recurrent_fillers(layer: Message, shapes: List[Optional[Shape]]) -> list:
    # recurrent_layer.cpp / lstm_layer.cpp: recurrent_param's weight_filler for the
    # weight matrices, bias_filler for the bias vectors
    p = layer.recurrent_param
    return [p.weight_filler if s is not None and len(s) > 1 else p.bias_filler for s in shapes]


# -- declarations ----------------------------------------------------------------------

_RECURRENT = dict(family="recurrent", bottoms=_recurrent_counts, tops=_recurrent_tops,
                  reads=("recurrent_param",), shape=_recurrent, params=_recurrent_params,
                  fillers=_recurrent_fillers)
declare("RNN", **_RECURRENT)
declare("LSTM", **_RECURRENT)
declare("LSTMUnit", family="recurrent", bottoms=3, tops=2, shape=_lstm_unit)
