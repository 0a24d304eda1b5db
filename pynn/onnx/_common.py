"""What export and load share: the optional ``onnx`` import, the element types pynn speaks, the
opsets, and the metadata keys pynn writes into a file."""
import numpy as np

# The opset export writes by default: the highest that ONNX Runtime 1.17 (February 2024, the
# oldest runtime the test extra allows) runs, so a file works in runtimes two years old, in
# services, phones and browsers alike. ``opset=`` picks another, from MIN_OPSET up to what the
# installed onnx knows. (Checked by hand on ONNX Runtime 1.17.3 and 1.18.1: float32 files run on
# both; float64 ones on 1.17 only with graph_optimization_level=ORT_ENABLE_BASIC, since its
# Gemm + activation fusion made a float-only FusedGemm, microsoft/onnxruntime#19612.)
DEFAULT_OPSET = 20
# Every operator pynn writes has its present meaning and a float64 kernel in ONNX Runtime from
# opset 13 on (Softmax over the last axis; Gemm with an optional bias).
MIN_OPSET = 13

# metadata_props keys of a file pynn wrote
KEY_VERSION = "pynn.version"
KEY_ARCHITECTURE = "pynn.architecture"
KEY_METADATA = "pynn.metadata"

# ONNX TensorProto element types pynn reads and writes (TensorProto.FLOAT, .DOUBLE), by dtype
ELEM_TYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 11}
DTYPES = {code: dtype for dtype, code in ELEM_TYPES.items()}


def require_onnx():
    """The ``onnx`` package, imported on first use (``import pynn`` never imports it)."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            f"pynn.onnx needs the onnx package ({exc}); install it with "
            f"pip install 'pynn[onnx]'") from None
    return onnx
