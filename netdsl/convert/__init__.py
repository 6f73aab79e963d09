"""The converter core both front ends (netdsl.torch: tracing; netdsl.onnx:
loading, folding, adapters) stand on:

- :mod:`~netdsl.convert.table`: the one op table, ATen op name -> converter;
- :mod:`~netdsl.convert.graph`: what converters see (Blob, Op, Context) and naming;
- :mod:`~netdsl.convert.families`: the built-in converters, one module per op family;
- :mod:`~netdsl.convert.recipes`: the PyTorch-parity recipes (stock layer groups);
- :mod:`~netdsl.convert.refusal`: refusing a model once, with every blocker;
- :mod:`~netdsl.convert.emit`: claiming layers, finishing and saving the net;
- :mod:`~netdsl.convert.parity`: the parity check and its report.

Nothing here imports a front end (docs/architecture.md).
"""
