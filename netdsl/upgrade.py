"""Caffe's legacy net and solver upgrades, rule for rule.

These are the rules of Caffe's ``upgrade_proto.cpp``, applied in the same
order as ``UpgradeNetAsNeeded``:

1. V0 layers (``layers { layer { type: "conv" ... } }``) become V1 layers,
   after ``padding`` layers are folded into the conv/pool layers they feed;
2. transformation fields in V1 data-layer parameters move to
   ``transform_param``;
3. V1 layers (``layers { type: CONVOLUTION ... }``) become current
   ``layer`` entries with string types and ``param`` specs;
4. the ``input``/``input_dim``/``input_shape`` net fields become an
   ``Input`` layer at the front of the net;
5. BatchNorm layers with three ``param`` specs get ``lr_mult: 0`` and
   ``decay_mult: 0`` on each.

Solvers get the ``solver_type`` enum turned into the ``type`` string.

Where Caffe aborts, :class:`~netdsl.errors.NetdslError` is raised; where it
only logs, the upgrade goes on and the message is kept as a note (see
:func:`upgrade_net_with_notes`).  Messages are built from the classes of the
message passed in, so a fork's schema works as well as the bundled one.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from google.protobuf.message import Message

from .errors import NetdslError
from .layers.legacy import V0_LAYER_TYPES, V1_LAYER_TYPES

__all__ = [
    "needs_upgrade", "upgrade_net", "upgrade_net_with_notes",
    "needs_solver_upgrade", "upgrade_solver", "upgrade_solver_with_notes",
    "net_needs_v0_upgrade", "net_needs_data_upgrade", "net_needs_v1_upgrade",
    "net_needs_input_upgrade", "net_needs_batchnorm_upgrade",
    "V0_LAYER_TYPES", "V1_LAYER_TYPES", "SOLVER_TYPES",
]

# SolverParameter.SolverType enum name -> type string (UpgradeSolverType)
SOLVER_TYPES: Dict[str, str] = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# V0LayerParameter field -> {V0 type: (V1 parameter message, its field)}.
# A target of None applies to every type.  A field name of None copies the
# whole V0 sub-message into the V1 parameter message.
_ANY = None
_V0_FIELDS: List[Tuple[str, Optional[Dict[str, Tuple[str, Optional[str]]]]]] = [
    ("num_output", {"conv": ("convolution_param", "num_output"),
                    "innerproduct": ("inner_product_param", "num_output")}),
    ("biasterm", {"conv": ("convolution_param", "bias_term"),
                  "innerproduct": ("inner_product_param", "bias_term")}),
    ("weight_filler", {"conv": ("convolution_param", "weight_filler"),
                       "innerproduct": ("inner_product_param", "weight_filler")}),
    ("bias_filler", {"conv": ("convolution_param", "bias_filler"),
                     "innerproduct": ("inner_product_param", "bias_filler")}),
    ("pad", {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")}),
    ("kernelsize", {"conv": ("convolution_param", "kernel_size"),
                    "pool": ("pooling_param", "kernel_size")}),
    ("group", {"conv": ("convolution_param", "group")}),
    ("stride", {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")}),
    ("pool", {"pool": ("pooling_param", "pool")}),
    ("dropout_ratio", {"dropout": ("dropout_param", "dropout_ratio")}),
    ("local_size", {"lrn": ("lrn_param", "local_size")}),
    ("alpha", {"lrn": ("lrn_param", "alpha")}),
    ("beta", {"lrn": ("lrn_param", "beta")}),
    ("k", {"lrn": ("lrn_param", "k")}),
    ("source", {"data": ("data_param", "source"),
                "hdf5_data": ("hdf5_data_param", "source"),
                "images": ("image_data_param", "source"),
                "window_data": ("window_data_param", "source"),
                "infogain_loss": ("infogain_loss_param", "source")}),
    ("scale", _ANY),
    ("meanfile", _ANY),
    ("batchsize", {"data": ("data_param", "batch_size"),
                   "hdf5_data": ("hdf5_data_param", "batch_size"),
                   "images": ("image_data_param", "batch_size"),
                   "window_data": ("window_data_param", "batch_size")}),
    ("cropsize", _ANY),
    ("mirror", _ANY),
    ("rand_skip", {"data": ("data_param", "rand_skip"),
                   "images": ("image_data_param", "rand_skip")}),
    ("shuffle_images", {"images": ("image_data_param", "shuffle")}),
    ("new_height", {"images": ("image_data_param", "new_height")}),
    ("new_width", {"images": ("image_data_param", "new_width")}),
    ("concat_dim", {"concat": ("concat_param", "concat_dim")}),
    ("det_fg_threshold", {"window_data": ("window_data_param", "fg_threshold")}),
    ("det_bg_threshold", {"window_data": ("window_data_param", "bg_threshold")}),
    ("det_fg_fraction", {"window_data": ("window_data_param", "fg_fraction")}),
    ("det_context_pad", {"window_data": ("window_data_param", "context_pad")}),
    ("det_crop_mode", {"window_data": ("window_data_param", "crop_mode")}),
    ("hdf5_output_param", {"hdf5_output": ("hdf5_output_param", None)}),
]

# V0 transformation fields, set on transform_param whatever the layer type
_V0_TRANSFORM = {"scale": "scale", "meanfile": "mean_file",
                 "cropsize": "crop_size", "mirror": "mirror"}

# V1 data-layer types and the parameter holding their legacy transformation
# fields (NetNeedsDataUpgrade / UpgradeNetDataTransformation)
_DATA_LAYERS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# V1 parameter messages copied as they are into the current layer
# (UpgradeV1LayerParameter), in Caffe's order
_V1_PARAMS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param",
    "eltwise_param", "exp_param", "hdf5_data_param", "hdf5_output_param",
    "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
    "pooling_param", "power_param", "relu_param", "sigmoid_param",
    "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param", "transform_param", "loss_param",
)
# every field of BVLC's V1LayerParameter; a fork's extra V1 fields are copied
# when LayerParameter has a field of the same name and type
_V1_FIELDS = frozenset(_V1_PARAMS) | {
    "bottom", "top", "name", "include", "exclude", "type", "blobs", "param",
    "blob_share_mode", "blobs_lr", "weight_decay", "loss_weight", "layer",
}


class _Log:
    """Collects the problems Caffe only logs; raises the ones it aborts on."""

    def __init__(self, filename: Optional[str]) -> None:
        self.filename = filename
        self.notes: List[str] = []

    def note(self, message: str, layer: Optional[str] = None) -> None:
        self.notes.append(("layer '%s': " % layer if layer else "") + message)

    def fail(self, message: str, layer: Optional[str] = None) -> "NetdslError":
        return NetdslError(message, file=self.filename, layer=layer)


# -- small protobuf helpers ------------------------------------------------

def _clone(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _has_field(msg: Message, name: str) -> bool:
    return name in msg.DESCRIPTOR.fields_by_name and msg.HasField(name)


def _enum_name(msg: Message, field: str, number: int) -> Optional[str]:
    value = msg.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(number)
    return value.name if value is not None else None


def _enum_number(msg: Message, field: str, name: str) -> Optional[int]:
    value = msg.DESCRIPTOR.fields_by_name[field].enum_type.values_by_name.get(name)
    return value.number if value is not None else None


def _v1_type_name(layer: Message) -> Optional[str]:
    """The V1 LayerType enum name of a V1 layer (None when unset)."""
    if not layer.HasField("type"):
        return None
    return _enum_name(layer, "type", layer.type)


def _v0_label(conn: Message, index: int) -> str:
    return conn.layer.name or "#%d" % index


def _same_kind(a, b) -> bool:
    if _is_repeated(a) != _is_repeated(b) or a.type != b.type:
        return False
    if a.message_type is not None:
        return b.message_type is not None and a.message_type.full_name == b.message_type.full_name
    if a.enum_type is not None:
        return b.enum_type is not None and a.enum_type.full_name == b.enum_type.full_name
    return True


def _is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6 drops `label`
    if flag is not None:
        return bool(flag)
    return field.label == field.LABEL_REPEATED


# -- checks (NetNeeds*Upgrade) ---------------------------------------------

def net_needs_v0_upgrade(net: Message) -> bool:
    """NetNeedsV0ToV1Upgrade: some ``layers`` entry holds a V0 ``layer``."""
    return any(conn.HasField("layer") for conn in net.layers)


def net_needs_data_upgrade(net: Message) -> bool:
    """NetNeedsDataUpgrade: a V1 DATA/IMAGE_DATA/WINDOW_DATA layer sets scale,
    mean_file, crop_size or mirror in its own parameter message."""
    for layer in net.layers:
        param = _DATA_LAYERS.get(_v1_type_name(layer) or "")
        if param is None or param not in layer.DESCRIPTOR.fields_by_name:
            continue
        sub = getattr(layer, param)
        if any(_has_field(sub, f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def net_needs_v1_upgrade(net: Message) -> bool:
    """NetNeedsV1ToV2Upgrade: the net has any ``layers`` entry."""
    return len(net.layers) > 0


def net_needs_input_upgrade(net: Message) -> bool:
    """NetNeedsInputUpgrade: the net has any ``input`` field."""
    return len(net.input) > 0


def net_needs_batchnorm_upgrade(net: Message) -> bool:
    """NetNeedsBatchNormUpgrade: a ``BatchNorm`` layer declares exactly three ``param``."""
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in net.layer)


def needs_upgrade(net: Message) -> bool:
    """NetNeedsUpgrade: any of the five upgrades applies.

    As in Caffe, a net whose BatchNorm layers carry three ``param`` specs
    always reports True, also after its upgrade (that step is idempotent).
    """
    return (net_needs_v0_upgrade(net) or net_needs_v1_upgrade(net)
            or net_needs_data_upgrade(net) or net_needs_input_upgrade(net)
            or net_needs_batchnorm_upgrade(net))


# -- V0 -> V1 --------------------------------------------------------------

def _fold_padding(net: Message, log: _Log) -> Message:
    """UpgradeV0PaddingLayers: drop ``padding`` layers, setting their pad on
    the conv/pool layers that read their output and rewiring those layers to
    the padding layer's input."""
    out = _clone(net)
    out.ClearField("layers")
    last_top: Dict[str, int] = {blob: -1 for blob in net.input}
    for i, conn in enumerate(net.layers):
        v0 = conn.layer
        if v0.type != "padding":
            out.layers.add().CopyFrom(conn)
        label = _v0_label(conn, i)
        for j, blob in enumerate(conn.bottom):
            if blob not in last_top:
                raise log.fail("bottom blob '%s' is neither a net input nor the top of "
                               "an earlier layer" % blob, label)
            source_index = last_top[blob]
            if source_index == -1:
                continue
            source = net.layers[source_index]
            if source.layer.type != "padding":
                continue
            pad_label = _v0_label(source, source_index)
            if v0.type not in ("conv", "pool"):
                raise log.fail("padding layer '%s' feeds a layer of type '%s'; a padding "
                               "layer can only be folded into a conv or pool layer"
                               % (pad_label, v0.type), label)
            if len(conn.bottom) != 1:
                raise log.fail("takes %d bottoms, one from padding layer '%s'; a layer "
                               "fed by a padding layer must have exactly one bottom"
                               % (len(conn.bottom), pad_label), label)
            if len(source.bottom) != 1:
                raise log.fail("padding layer has %d bottoms; it must have exactly one"
                               % len(source.bottom), pad_label)
            if len(source.top) != 1:
                raise log.fail("padding layer has %d tops; it must have exactly one"
                               % len(source.top), pad_label)
            target = out.layers[len(out.layers) - 1]
            target.layer.pad = source.layer.pad
            target.bottom[j] = source.bottom[0]
            log.note("padding layer '%s' folded into it (pad: %d)"
                     % (pad_label, source.layer.pad), label)
        for blob in conn.top:
            last_top[blob] = i
    return out


def _set_from_v0(dst: Message, field: Optional[str], v0: Message, v0_field: str
                 ) -> Optional[str]:
    """Set one V1 parameter field from a V0 field the way the C++ setters do.

    Returns a problem to note instead of setting, or None.
    """
    value = getattr(v0, v0_field)
    if field is None:  # whole sub-message
        dst.SetInParent()
        dst.CopyFrom(value)
        return None
    fd = dst.DESCRIPTOR.fields_by_name.get(field)
    if fd is None:
        return "%s has no field `%s` in this schema; V0 `%s` dropped" % (
            dst.DESCRIPTOR.name, field, v0_field)
    if fd.message_type is not None:
        getattr(dst, field).CopyFrom(value)
    elif _is_repeated(fd):
        getattr(dst, field).append(value)
    elif fd.enum_type is not None:  # V0 pool method -> PoolingParameter pool
        name = _enum_name(v0, v0_field, value)
        number = _enum_number(dst, field, name) if name else None
        if number is None:
            return "unknown V0 %s %s; dropped" % (v0_field, name or value)
        setattr(dst, field, number)
    else:
        setattr(dst, field, value)
    return None


def _upgrade_v0_layer(conn: Message, out: Message, index: int, log: _Log) -> bool:
    """UpgradeV0LayerParameter: one V0 layer connection into a V1 layer."""
    ok = True
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    if not conn.HasField("layer"):
        dropped = [fd.name for fd, _ in conn.ListFields() if fd.name not in ("bottom", "top")]
        if dropped:
            log.note("no V0 `layer` block in a V0 net: only bottom and top kept, dropped %s"
                     % ", ".join("`%s`" % name for name in dropped), conn.name or "#%d" % index)
        return ok
    v0 = conn.layer
    label = _v0_label(conn, index)
    if v0.HasField("name"):
        out.name = v0.name
    kind = v0.type
    if v0.HasField("type"):
        v1_name = V0_LAYER_TYPES.get(kind)
        number = _enum_number(out, "type", v1_name) if v1_name else None
        if number is None:
            raise log.fail("unknown V0 layer type '%s' (known: %s)"
                           % (kind, ", ".join(sorted(V0_LAYER_TYPES))), label)
        out.type = number
    for blob in v0.blobs:
        out.blobs.add().CopyFrom(blob)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for v0_field, targets in _V0_FIELDS:
        if not _has_field(v0, v0_field):
            continue
        if targets is _ANY:
            setattr(out.transform_param, _V0_TRANSFORM[v0_field], getattr(v0, v0_field))
            continue
        target = targets.get(kind)
        if target is None:
            log.note("V0 parameter `%s` does not apply to layer type '%s'; dropped"
                     % (v0_field, kind), label)
            ok = False
            continue
        param, field = target
        if param not in out.DESCRIPTOR.fields_by_name:
            problem = "V1 layers have no `%s` in this schema; V0 `%s` dropped" % (param,
                                                                                   v0_field)
        else:
            problem = _set_from_v0(getattr(out, param), field, v0, v0_field)
        if problem:
            log.note(problem, label)
            ok = False
    return ok


def _upgrade_v0_net(net: Message, log: _Log) -> bool:
    """UpgradeV0Net: fold padding layers, then upgrade each V0 layer.

    Only name, layers, input, input_dim and force_backward survive, as in Caffe.
    """
    padded = _fold_padding(net, log)
    ok = True
    net.Clear()
    if padded.HasField("name"):
        net.name = padded.name
    for i, conn in enumerate(padded.layers):
        ok &= _upgrade_v0_layer(conn, net.layers.add(), i, log)
    net.input.extend(padded.input)
    net.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        net.force_backward = padded.force_backward
    return ok


# -- data transformation ---------------------------------------------------

def _upgrade_data_transformation(net: Message) -> None:
    """UpgradeNetDataTransformation: move scale, mean_file, crop_size and mirror
    from a V1 data layer's own parameter into its transform_param.

    Like Caffe's mutable accessors, both messages are marked present on every
    V1 data layer, even those with nothing to move.
    """
    for layer in net.layers:
        param = _DATA_LAYERS.get(_v1_type_name(layer) or "")
        if param is None or param not in layer.DESCRIPTOR.fields_by_name:
            continue
        src = getattr(layer, param)
        src.SetInParent()
        dst = layer.transform_param
        dst.SetInParent()
        for field in _TRANSFORM_FIELDS:
            if _has_field(src, field):
                setattr(dst, field, getattr(src, field))
                src.ClearField(field)


# -- V1 -> current ---------------------------------------------------------

def _upgrade_v1_type(layer: Message, label: str, log: _Log) -> str:
    """UpgradeV1LayerType: V1 enum value -> current type string."""
    name = _enum_name(layer, "type", layer.type)
    if name is not None and name not in V1_LAYER_TYPES:
        from .packs import v1_type       # a fork's own V1 type (DeconvNet's UNPOOLING)
        fork_type = v1_type(name)
        if fork_type is not None:
            return fork_type
    if name is None or name not in V1_LAYER_TYPES:
        raise log.fail("unknown V1 layer type %s" % (name or layer.type), label)
    return V1_LAYER_TYPES[name]


def _upgrade_v1_layer(v1: Message, out: Message, index: int, log: _Log) -> bool:
    """UpgradeV1LayerParameter: one V1 layer into a current LayerParameter."""
    ok = True
    label = v1.name or "#%d" % index
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField("name"):
        out.name = v1.name
    for rule in v1.include:
        out.include.add().CopyFrom(rule)
    for rule in v1.exclude:
        out.exclude.add().CopyFrom(rule)
    if v1.HasField("type"):
        out.type = _upgrade_v1_type(v1, label, log)
    for blob in v1.blobs:
        out.blobs.add().CopyFrom(blob)

    def spec(i: int) -> Message:
        while len(out.param) <= i:
            out.param.add()
        return out.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        mode_name = _enum_name(v1, "blob_share_mode", mode)
        target = spec(i)
        number = _enum_number(target, "share_mode", mode_name) if mode_name else None
        if number is None:
            raise log.fail("unknown blob_share_mode %s" % (mode_name or mode), label)
        target.share_mode = number
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay
    out.loss_weight.extend(v1.loss_weight)
    fields = out.DESCRIPTOR.fields_by_name
    for param in _V1_PARAMS:
        if _has_field(v1, param) and param in fields:
            getattr(out, param).CopyFrom(getattr(v1, param))
    # a fork's own V1 fields, carried over where the current layer has the same field
    for fd, value in v1.ListFields():
        if fd.name in _V1_FIELDS:
            continue
        twin = fields.get(fd.name)
        if twin is None or not _same_kind(fd, twin):
            log.note("V1 field `%s` has no counterpart in LayerParameter; dropped" % fd.name,
                     label)
            continue
        if _is_repeated(fd):
            if fd.message_type is not None:
                for item in value:
                    getattr(out, fd.name).add().CopyFrom(item)
            else:
                getattr(out, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(out, fd.name).CopyFrom(value)
        else:
            setattr(out, fd.name, value)
    if v1.HasField("layer"):
        log.note("V1 layer also holds a V0 `layer` block; ignored", label)
        ok = False
    return ok


def _upgrade_v1_net(net: Message, log: _Log) -> Message:
    """UpgradeV1Net: every ``layers`` entry becomes a ``layer`` entry."""
    if "layer" not in net.DESCRIPTOR.fields_by_name:
        raise log.fail("this schema has V1 layers only (NetParameter has `layers` but no "
                       "`layer`), so a net cannot be upgraded within it; give a schema with "
                       "both forms (a fork's V1 additions in V1LayerParameter and "
                       "LayerParameter, see docs/forks.md)")
    if len(net.layer) > 0:
        raise log.fail("the net has both `layer` and legacy `layers` fields; Caffe refuses "
                       "to upgrade such a net. Rewrite the `layers { type: ENUM ... }` "
                       "entries as `layer { type: \"Name\" ... }`")
    out = _clone(net)
    out.ClearField("layers")
    out.ClearField("layer")
    for i, v1 in enumerate(net.layers):
        if not _upgrade_v1_layer(v1, out.layer.add(), i, log):
            log.note("upgrade of V1 layer %d had problems" % i)
    return out


# -- input fields ----------------------------------------------------------

def _upgrade_input(net: Message, log: _Log) -> None:
    """UpgradeNetInput: ``input`` with ``input_shape`` or ``input_dim`` (four per
    input) becomes an ``Input`` layer named "input", put first; the input
    fields are cleared (inputs without shapes are simply dropped)."""
    inputs = list(net.input)
    has_shape = len(net.input_shape) > 0
    has_dim = len(net.input_dim) > 0
    if has_shape or has_dim:
        if has_shape and len(net.input_shape) < len(inputs):
            raise log.fail("%d inputs but only %d input_shape entries"
                           % (len(inputs), len(net.input_shape)))
        if not has_shape and len(net.input_dim) < 4 * len(inputs):
            raise log.fail("%d inputs need %d input_dim values (four each), got %d"
                           % (len(inputs), 4 * len(inputs), len(net.input_dim)))
        if has_shape and len(net.input_shape) > len(inputs):
            log.note("%d input_shape entries beyond the %d inputs ignored"
                     % (len(net.input_shape) - len(inputs), len(inputs)))
        elif not has_shape and len(net.input_dim) > 4 * len(inputs):
            log.note("%d input_dim values beyond four per input ignored"
                     % (len(net.input_dim) - 4 * len(inputs)))
        rest = [_clone(layer) for layer in net.layer]
        del net.layer[:]
        layer = net.layer.add()
        layer.name = "input"
        layer.type = "Input"
        param = layer.input_param
        param.SetInParent()
        for i, blob in enumerate(inputs):
            layer.top.append(blob)
            shape = param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
        for other in rest:
            net.layer.add().CopyFrom(other)
    else:
        log.note("input fields without input_shape or input_dim dropped: %s"
                 % ", ".join(inputs))
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


# -- BatchNorm -------------------------------------------------------------

def _upgrade_batchnorm(net: Message, log: _Log) -> None:
    """UpgradeNetBatchNorm: lr_mult and decay_mult 0 on each of the three param
    specs of a BatchNorm layer; other ParamSpec fields stay."""
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0


# -- nets ------------------------------------------------------------------

def upgrade_net_with_notes(net: Message, filename: Optional[str] = None
                           ) -> Tuple[Message, List[str]]:
    """UpgradeNetAsNeeded, returning the upgraded copy and the notes Caffe would log.

    Steps, each only when its check holds: V0 -> V1, data transformation,
    V1 -> current, input fields -> Input layer, BatchNorm param specs.
    ``net`` is not changed.  Raises NetdslError where Caffe aborts.
    """
    log = _Log(filename)
    out = _clone(net)
    if net_needs_v0_upgrade(out):
        if not _upgrade_v0_net(out, log):
            log.note("V0 layers upgraded with problems (see above); continuing")
        log.note("upgraded deprecated V0 layer syntax (`layers { layer { ... } }`)")
    if net_needs_data_upgrade(out):
        _upgrade_data_transformation(out)
        log.note("moved data transformation fields (scale, mean_file, crop_size, mirror) "
                 "into transform_param")
    v1_types: Dict[str, Optional[str]] = {}
    if net_needs_v1_upgrade(out):
        v1_types = {v1.name: _enum_name(v1, "type", v1.type) for v1 in out.layers}
        out = _upgrade_v1_net(out, log)
        log.note("upgraded deprecated V1 layer syntax (`layers { type: ENUM ... }`)")
    # a fork schema without InputParameter (PSPNet's: 143 is interp_param) keeps the
    # input fields, which its Caffe reads as they are
    layer_fields = out.DESCRIPTOR.fields_by_name["layer"].message_type.fields_by_name
    if net_needs_input_upgrade(out) and "input_param" in layer_fields:
        _upgrade_input(out, log)
        log.note("turned deprecated input fields into an Input layer")
    if net_needs_batchnorm_upgrade(out):
        _upgrade_batchnorm(out, log)
    if any(t is not None and t not in V1_LAYER_TYPES for t in v1_types.values()):
        from .coord_walk import crop_offsets_at
        from .packs import after_v1_upgrade   # a fork's own V1 types (DeconvNet's CROP)
        after_v1_upgrade(out, v1_types, crop_offsets_at)
    return out, log.notes


def upgrade_net(net: Message, filename: Optional[str] = None) -> Message:
    """UpgradeNetAsNeeded: a current-format copy of ``net`` (equal copy if already current).

    ``filename`` only locates errors.  See :func:`upgrade_net_with_notes`.
    """
    return upgrade_net_with_notes(net, filename)[0]


# -- solvers ---------------------------------------------------------------

def needs_solver_upgrade(solver: Message) -> bool:
    """SolverNeedsTypeUpgrade: ``solver_type`` is set."""
    return _has_field(solver, "solver_type")


def upgrade_solver_with_notes(solver: Message, filename: Optional[str] = None
                              ) -> Tuple[Message, List[str]]:
    """UpgradeSolverAsNeeded / UpgradeSolverType, with notes; ``solver`` is not changed.

    ``solver_type: NESTEROV`` becomes ``type: "Nesterov"`` (and so on); both
    fields set at once is an error, as in Caffe.
    """
    log = _Log(filename)
    out = _clone(solver)
    if needs_solver_upgrade(out):
        if out.HasField("type"):
            raise log.fail("both the legacy `solver_type` (enum) and `type` (string) are "
                           "set; keep only `type`")
        name = _enum_name(out, "solver_type", out.solver_type)
        if name not in SOLVER_TYPES:
            raise log.fail("unknown solver_type %s" % (name or out.solver_type))
        out.type = SOLVER_TYPES[name]
        out.ClearField("solver_type")
        log.note("upgraded deprecated `solver_type: %s` to `type: \"%s\"`"
                 % (name, SOLVER_TYPES[name]))
    return out, log.notes


def upgrade_solver(solver: Message, filename: Optional[str] = None) -> Message:
    """UpgradeSolverAsNeeded: a copy of ``solver`` with ``solver_type`` turned into ``type``.

    Caffe's snapshot_prefix defaulting (done when reading a solver file for
    training, not by the upgrade) is not applied.
    """
    return upgrade_solver_with_notes(solver, filename)[0]
