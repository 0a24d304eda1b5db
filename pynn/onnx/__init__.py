"""ONNX out and in: ``export(model, path)`` writes a pynn network as an ONNX file that ONNX
Runtime (and the many runtimes that read ONNX) predicts with as ``model.predict`` does;
``load(path)`` reads an MLP graph, pynn's or another tool's, as a pynn ``Sequential``.

Needs the ``onnx`` package (``pip install 'pynn[onnx]'``), imported on first use: ``import
pynn`` and ``import pynn.onnx`` work without it. export.py writes, load.py reads (through
_graph.py, the checked view of an untrusted file, and _patterns.py, the operators each pynn
layer is read from); _common.py holds what both use.
"""
from ._common import DEFAULT_OPSET, MIN_OPSET
from .export import export, to_model
from .load import load

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export", "load", "to_model"]
