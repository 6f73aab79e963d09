"""``netdsl from-torch MODEL --input NAME=N,C,H,W -o DIR``: load the model,
convert, check, write ``deploy.prototxt``, ``model.caffemodel``, ``parity.json``.

MODEL is ``file.py:callable`` or ``package.module:callable`` (a callable that
returns the module, or the module object itself), or a file written by
``torch.save(model)`` or ``torch.export.save``.  Exit status: 0 parity holds,
1 parity fails (the files are written, parity.json says where the outputs
diverge), 2 user error or unsupported op (nothing written)."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from netdsl.convert.options import parse_inputs, save_and_report, split_names
from netdsl.errors import NetdslError

__all__ = ["add_arguments", "load_model", "parse_args", "parse_inputs", "run",
           "save_and_report", "split_names"]


def parse_args(items: Sequence[str]) -> Dict[str, Any]:
    """``--arg NAME=VALUE`` strings -> keyword arguments of the model's callable.
    VALUE is a Python literal (``21``, ``0.5``, ``True``, ``(3, 3)``, ``'x'``,
    ``None``); anything else is taken as a string."""
    import ast
    out: Dict[str, Any] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise NetdslError("--arg takes NAME=VALUE (a keyword argument of MODEL's "
                              "callable), got %r" % item)
        if name in out:
            raise NetdslError("--arg %s is given twice" % name)
        try:
            out[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def _call(obj: Any, where: str, kwargs: Optional[Dict[str, Any]] = None) -> Any:
    import torch
    if isinstance(obj, (torch.nn.Module, torch.export.ExportedProgram)):
        if kwargs:
            raise NetdslError("%s is a module object, not a callable: --arg has nothing to "
                              "pass its arguments to" % where)
        return obj
    if callable(obj):
        try:
            return obj(**(kwargs or {}))
        except Exception as exc:
            raise NetdslError("calling %s%s failed: %s: %s"
                              % (where, "(%s)" % ", ".join("%s=%r" % kv for kv in kwargs.items())
                                 if kwargs else "", type(exc).__name__, exc))
    raise NetdslError("%s is neither a module nor a callable returning one" % where)


def load_model(spec: str, kwargs: Optional[Dict[str, Any]] = None,
               notes: Optional[List[str]] = None) -> Any:
    """The module (eval mode) or ExportedProgram that ``spec`` names; ``kwargs``
    go to its callable (``--arg``).  A module object or saved module found in
    training mode is put in eval mode and ``notes`` gets a line saying so (a
    module a callable has just built starts in training mode, so that is not
    noted)."""
    import torch
    path, sep, attr = spec.rpartition(":")
    if sep and attr and not os.path.exists(spec) and (path.endswith(".py") or
                                                        os.sep not in path):
        if path.endswith(".py"):
            if not os.path.isfile(path):
                raise NetdslError("no such file", file=path)
            name = "_netdsl_model_" + os.path.splitext(os.path.basename(path))[0]
            mspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            try:
                mspec.loader.exec_module(module)
            except Exception as exc:
                raise NetdslError("cannot run the model file: %s: %s"
                                  % (type(exc).__name__, exc), file=path)
        else:
            try:
                module = importlib.import_module(path)
            except Exception as exc:
                raise NetdslError("cannot import %s: %s: %s" % (path, type(exc).__name__, exc))
        if not hasattr(module, attr):
            from netdsl.errors import did_you_mean
            raise NetdslError("%s has no attribute '%s'" % (path, attr),
                              hint=did_you_mean(attr, [a for a in dir(module)
                                                       if not a.startswith("_")]))
        given = getattr(module, attr)
        model = _call(given, spec, kwargs)
    else:
        if not os.path.isfile(spec):
            raise NetdslError("MODEL is file.py:callable, package.module:callable or a file "
                              "saved by torch.save / torch.export.save; no such file", file=spec)
        model = None
        errors = []
        try:
            model = torch.export.load(spec)
        except Exception as exc:
            errors.append("torch.export.load: %s" % exc)
        if model is None:
            try:
                model = torch.load(spec, map_location="cpu", weights_only=False)
            except Exception as exc:
                errors.append("torch.load: %s" % exc)
        if model is None:
            raise NetdslError("cannot load the model (%s)" % "; ".join(errors), file=spec)
        given = model
        model = _call(model, spec, kwargs)
    if isinstance(model, torch.nn.Module):
        if model is given and model.training and notes is not None:
            notes.append("the model was left in training mode; converted in eval mode "
                         "(batch norms use their running statistics, dropout is off), as "
                         "model.eval() gives")
        model.eval()
    elif not isinstance(model, torch.export.ExportedProgram):
        raise NetdslError("%s gave a %s, not a torch.nn.Module" % (spec, type(model).__name__))
    return model


def run(args: Any) -> int:
    import torch
    from netdsl.torch.convert import convert
    inputs = parse_inputs(args.input)
    if args.tolerance is not None and not args.tolerance > 0:
        raise NetdslError("--tolerance must be positive")
    notes: List[str] = []
    model = load_model(args.model, parse_args(args.arg), notes)
    for note in notes:
        print("netdsl: note: %s" % note, file=sys.stderr)
    gen = torch.Generator().manual_seed(args.seed)
    examples = tuple(torch.randn(shape, generator=gen) for _, shape in inputs)
    result = convert(model, examples, input_names=[n for n, _ in inputs],
                     output_names=args.output_names.split(",") if args.output_names else None,
                     target=args.target, fold_bn=args.fold_bn, check=not args.no_check,
                     tolerance=args.tolerance or 1e-4, seed=args.seed + 1,
                     outputs=split_names(args.outputs))
    if result.parity is not None:
        result.parity.warnings.extend({"why": n} for n in notes)
    return save_and_report(result, args.output, "PyTorch's")


def add_arguments(p: Any) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="file.py:callable, package.module:callable, or a torch.save / "
                        "torch.export.save file")
    p.add_argument("--input", action="append", metavar="NAME=N,C,H,W", required=True,
                   help="an input's name and shape, in forward's argument order (repeatable)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="write deploy.prototxt, model.caffemodel and parity.json here")
    p.add_argument("--target", choices=["caffe", "opencv"], default="caffe",
                   help="caffe: stock BVLC layers; opencv: only layers OpenCV dnn runs")
    p.add_argument("--output-names", metavar="A,B", help="names of the output blobs")
    p.add_argument("--outputs", metavar="NAME,...",
                   help="end the net at these intermediate tensors (module paths such as "
                        "model.22.m.0, or graph node names); the check compares them")
    p.add_argument("-A", "--arg", action="append", metavar="NAME=VALUE",
                   help="a keyword argument for MODEL's callable (repeatable); VALUE is a "
                        "Python literal (21, 0.5, True, (3, 3), 'text'), else a string")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold batch norms into the convolution before them")
    p.add_argument("--no-check", action="store_true", help="skip the parity check")
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="largest relative error accepted (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the example inputs")
