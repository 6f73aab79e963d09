"""Input and data layers: Input, DummyData, Data, ImageData, WindowData, MemoryData,
HDF5Data, HDF5Output, Python and Parameter (BVLC src/caffe/layers/*data*_layer.cpp,
input_layer.cpp, parameter_layer.hpp).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from google.protobuf.message import Message

from ..errors import NetdslError
from .blob import Noted, Shape, blob_dims, err, legacy_dim, needs_declaration, shape_str
from .fillers import fill
from .registry import declare
from .runtime import Context, blob_as, np


def _input(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # input_layer.cpp: shape once, once per top, or not at all
    shapes = layer.input_param.shape
    n = len(shapes)
    if n not in (0, 1, ntop):
        raise err("Must specify 'shape' once, once per top blob, or not at all: %d tops vs. "
                  "%d shapes" % (ntop, n), "input_param.shape")
    if n == 0:
        raise NetdslError("Input layer has no input_param.shape, so its top shapes come from "
                          "the caller", field="input_param.shape",
                          hint="pass inputs={%s} (`--input NAME=N,C,H,W` on the command line)"
                          % ", ".join("'%s': (N, C, H, W)" % t for t in layer.top))
    return [blob_dims(shapes[0 if n == 1 else i]) for i in range(ntop)]


def _dummy_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # dummy_data_layer.cpp: shape, or legacy num/channels/height/width, once or per top
    p = layer.dummy_data_param
    nf = len(p.data_filler)
    if nf not in (0, 1, ntop):
        raise err("Number of data fillers must be 0, 1 or equal to the number of tops: %d; "
                  "you specified %d data fillers" % (ntop, nf), "dummy_data_param.data_filler")
    legacy = len(p.num) or len(p.channels) or len(p.height) or len(p.width)
    out = []
    if legacy:
        if len(p.shape):
            raise err("Both shape and legacy fields were specified", "dummy_data_param.shape")
        for fname in ("num", "channels", "height", "width"):
            k = len(getattr(p, fname))
            if k not in (1, ntop):
                raise err("Must specify '%s' once, or once per top blob (%d); specified %d"
                          % (fname, ntop, k), "dummy_data_param." + fname)
        for i in range(ntop):
            out.append(tuple(int(getattr(p, f)[0 if len(getattr(p, f)) == 1 else i])
                             for f in ("num", "channels", "height", "width")))
    else:
        if len(p.shape) not in (1, ntop):
            raise err("Must specify 'shape' once, or once per top blob (%d); specified %d"
                      % (ntop, len(p.shape)), "dummy_data_param.shape")
        for i in range(ntop):
            out.append(blob_dims(p.shape[0 if len(p.shape) == 1 else i]))
    return out


def _crop_size(layer: Message, legacy_param: Optional[Message] = None) -> int:
    crop = layer.transform_param.crop_size
    if not crop and legacy_param is not None and legacy_param.HasField("crop_size"):
        crop = legacy_param.crop_size   # moved into transform_param by Caffe's upgrade
    return crop


def _datum_channels(layer: Message, what: str) -> Tuple[int, Optional[str]]:
    tp = layer.transform_param
    if len(tp.mean_value) > 1:
        # data_transformer.cpp: one mean_value, or one per channel
        return len(tp.mean_value), None
    if tp.force_gray:
        return 1, None
    if tp.force_color:
        return 3, None
    return 3, ("channels assumed 3: Caffe reads them from the %s, which netdsl does not open; "
               "declare the shape if the data has another channel count" % what)


def _data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # data_layer.cpp: (batch_size,) + datum shape, cropped by transform_param.crop_size
    dp = layer.data_param
    crop = _crop_size(layer, dp)
    if not crop:
        raise needs_declaration(layer, "without transform_param.crop_size the image size comes "
                                        "from the database records, which netdsl does not read")
    c, note = _datum_channels(layer, "database records")
    b = dp.batch_size
    return Noted([(b, c, crop, crop)] + [(b,)] * (ntop - 1), note)


def _image_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # image_data_layer.cpp: images read with new_height x new_width, is_color 3 or 1 channels
    p = layer.image_data_param
    nh, nw = p.new_height, p.new_width
    if not ((nh == 0 and nw == 0) or (nh > 0 and nw > 0)):
        raise err("new_height and new_width must be set together (Caffe: \"Current "
                  "implementation requires new_height and new_width to be set at the same "
                  "time\"); got %d and %d" % (nh, nw), "image_data_param.new_height")
    if p.batch_size <= 0:
        raise err("Positive batch size required", "image_data_param.batch_size")
    crop = _crop_size(layer, p)
    c = 3 if p.is_color else 1
    if crop:
        h = w = crop
    elif nh:
        h, w = nh, nw
    else:
        raise needs_declaration(layer, "without new_height/new_width or crop_size the image "
                                        "size comes from the first image file")
    return [(p.batch_size, c, h, w), (p.batch_size,)]


def _window_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # window_data_layer.cpp: (batch_size, channels, crop_size, crop_size), crop_size > 0
    crop = _crop_size(layer, layer.window_data_param)
    if crop <= 0:
        raise err("WindowData requires transform_param.crop_size > 0 (Caffe: "
                  "CHECK_GT(crop_size, 0))", "transform_param.crop_size")
    c, note = _datum_channels(layer, "window file")
    b = layer.window_data_param.batch_size
    return Noted([(b, c, crop, crop), (b,)], note)


def _memory_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # memory_data_layer.cpp: (batch_size, channels, height, width) and (batch_size,)
    p = layer.memory_data_param
    b, c, h, w = p.batch_size, p.channels, p.height, p.width
    if b * c * h * w <= 0:
        raise err("batch_size, channels, height, and width must be specified and positive in "
                  "memory_data_param; got %d, %d, %d, %d" % (b, c, h, w), "memory_data_param")
    return [(b, c, h, w), (b,)]


def _hdf5_data(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    raise needs_declaration(layer, "shapes come from the datasets in the HDF5 files "
                                    "(batch_size x the dataset's trailing dims)")


def _python(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    raise needs_declaration(layer, "a Python layer ('%s.%s') sets its top shapes in its own "
                                    "reshape(), which netdsl does not run"
                            % (layer.python_param.module, layer.python_param.layer))


def _parameter(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # parameter_layer.hpp: the top is the learnable blob of parameter_param.shape
    return [blob_dims(layer.parameter_param.shape)]


def _parameter_params(layer: Message, bottoms: List[Shape]) -> List[Shape]:
    return [blob_dims(layer.parameter_param.shape)]


def _hdf5_output(layer: Message, bottoms: List[Shape], ntop: int) -> List[Shape]:
    # hdf5_output_layer.cpp: data and label with the same num
    if legacy_dim(bottoms[0], 0) != legacy_dim(bottoms[1], 0):
        raise err("data and label must have the same num: %s vs %s"
                  % (shape_str(bottoms[0]), shape_str(bottoms[1])))
    return []


def input_layer(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
                ctx: Context) -> List[np.ndarray]:
    """The arrays given as inputs (a declared Input blob is never made up)."""
    missing = [t for t in layer.top if t not in ctx.inputs]
    shapes = layer.input_param.shape
    what = []
    for t in missing:
        i = list(layer.top).index(t)
        if shapes:
            s = shapes[0] if len(shapes) == 1 else shapes[min(i, len(shapes) - 1)]
            what.append("'%s' (shape %s)" % (t, "x".join(str(d) for d in s.dim)))
        else:
            what.append("'%s'" % t)
    raise NetdslError("no array given for input %s" % ", ".join(what))


def dummy_data(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
               ctx: Context) -> List[np.ndarray]:
    """Blobs of the declared shapes, filled by ``data_filler`` (one for all tops or
    one per top; default constant 0).  Constant fillers give Caffe's values;
    random ones draw from the same distribution, not Caffe's random stream."""
    p = layer.dummy_data_param
    n = len(layer.top)
    legacy = len(p.num) > 0
    shapes = []
    for i in range(n):
        if legacy:
            def pick(field):
                values = list(getattr(p, field))
                if len(values) not in (1, n):
                    raise NetdslError("%s has %d values for %d tops" % (field, len(values), n),
                                      field=field)
                return values[0] if len(values) == 1 else values[i]
            shapes.append([int(pick(f)) for f in ("num", "channels", "height", "width")])
        else:
            if len(p.shape) not in (1, n):
                raise NetdslError("shape has %d entries for %d tops" % (len(p.shape), n),
                                  field="shape")
            s = p.shape[0] if len(p.shape) == 1 else p.shape[i]
            shapes.append([int(d) for d in s.dim])
    fillers = list(p.data_filler)
    if len(fillers) not in (0, 1, n):
        raise NetdslError("data_filler has %d entries for %d tops" % (len(fillers), n),
                          field="data_filler")
    out = []
    for i, shape in enumerate(shapes):
        f = fillers[0] if len(fillers) == 1 else (fillers[i] if fillers else None)
        if f is not None and f.type != "constant":
            out.append(fill(f, shape, ctx.rng))
        else:
            value = np.float32(f.value) if f is not None else np.float32(0)
            out.append(np.full(shape, value, dtype=np.float32))
    return out


def parameter(layer: Message, bottoms: List[np.ndarray], blobs: List[np.ndarray],
              ctx: Context) -> List[np.ndarray]:
    """Its one blob, shaped by ``parameter_param.shape``."""
    shape = [int(d) for d in layer.parameter_param.shape.dim]
    return [blob_as(blobs[0], shape, layer, 0)]


# -- declarations ----------------------------------------------------------------------

_DATA = dict(family="data", bottoms=0, reads=("transform_param",))
declare("Input", family="data", bottoms=0, tops=(1, None), shape=_input, forward=input_layer)
declare("DummyData", family="data", bottoms=0, tops=(1, None), shape=_dummy_data,
        forward=dummy_data)
declare("Data", tops=(1, 2), shape=_data, **_DATA)
declare("ImageData", tops=2, shape=_image_data, **_DATA)
declare("WindowData", tops=2, shape=_window_data, **_DATA)
declare("MemoryData", tops=2, shape=_memory_data, **_DATA)
declare("HDF5Data", family="data", bottoms=0, tops=(1, None), shape=_hdf5_data)
declare("HDF5Output", family="data", bottoms=2, tops=0, reads=("hdf5_output_param",),
        shape=_hdf5_output)
declare("Python", family="data", shape=_python, opaque=True)
declare("Parameter", family="data", bottoms=0, tops=1, shape=_parameter,
        params=_parameter_params, forward=parameter, needs_weights=True)
