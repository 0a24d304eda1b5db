"""``pynn.onnx.load``: an ONNX file holding an MLP, pynn's or another tool's, as a pynn
``Sequential`` that predicts what ONNX Runtime predicts.

The file is untrusted (SECURITY.md): it is read as bytes up to protobuf's 2 GiB limit, parsed
by onnx's protobuf bindings (never ``onnx.load(path)``, which would follow external-data
references to other files), and walked from its one input along a chain of nodes to its one
output (_graph.py checks the graph, _patterns.py and _load_blocks.py map operators to layers;
the one branch read is a residual skip, here). Nothing in it runs:
the operators come from a fixed table, and the weights are plain arrays, checked before they
are read. The pynn model is built through pynn.io's architecture table, as ``pynn.load``
builds one, and filled by ``load_state_dict``.
"""
import json
import os
import stat

from ..io._archive import ModelFileError
from ..io._architecture import build
from ._common import KEY_METADATA, require_onnx
from ._graph import DOMAINS, GraphView
from ._layer_spec import Match
from ._load_blocks import read_form
from ._patterns import match

# protobuf refuses a message over 2 GiB: a larger file cannot be an ONNX model without external
# data, which pynn refuses; checked before anything is read.
MAX_FILE_BYTES = (2 << 30) - 1


def _read_bytes(path):
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileNotFoundError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError(f"{path}: not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise ModelFileError(f"{path}: {info.st_size} bytes, over the 2 GiB an ONNX model "
                             f"without external data can hold")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)  # the file may have grown since the stat
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"{path}: over the 2 GiB an ONNX model can hold")
    return data


def _parse(onnx, data, path):
    if not data:
        raise ModelFileError(f"{path}: an empty file, not an ONNX model")
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, RecursionError on a hostile nesting
        raise ModelFileError(f"{path}: not an ONNX model ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from None


def _walk(view):
    """The layer specs (pynn.io architecture entry, state) along the chain from the input to
    the output; every node must be on it."""
    specs, used, _ = _chain(view, view.input_name, view.output_name, view.width)
    stray = [i for i in range(len(view.nodes)) if i not in used | view.constant_nodes]
    if stray:
        raise view.error(f"{view.describe(stray[0])} is not on the chain from the input to the "
                         f"output (a branch); pynn loads a chain of layers")
    return specs


def _chain(view, cur, stop, width):
    """(specs, nodes used, width) of the layers from tensor ``cur`` to tensor ``stop``."""
    specs, used = [], set()
    while cur != stop:
        if not view.consumers_of(cur) or cur == view.output_name:
            raise view.error(f"tensor {cur!r} is read by no node and is not "
                             f"{stop!r}: the graph is not a chain from the input to the output")
        # an expression's readers first: GELU's tanh form adds x to x^3 * kappa, which
        # is not a residual block
        m = read_form(view, cur, width) or _residual(view, cur, width) \
            or match(view, cur, width)
        _check_closed(view, cur, m, used)
        used |= m.nodes
        specs += m.layers
        cur, width = m.output, m.width
    return specs, used, width


def _residual(view, cur, width):
    """The Match of a residual block starting at ``cur``, or None: ``cur`` is read by the
    block's first node and by an Add of ``cur`` and the block's output (the last such Add in
    the graph's order, which ONNX requires topological, is the outermost of nested blocks).
    The block is read as a chain from ``cur`` to that output while the Add is hidden."""
    adds = [j for j in view.consumers_of(cur) if view.nodes[j].op_type == "Add"
            and view.nodes[j].domain in DOMAINS and len(view.nodes[j].input) == 2
            and list(view.nodes[j].input).count(cur) == 1
            and not set(view.nodes[j].input) & set(view.constants)]
    if not adds or len(view.consumers_of(cur)) < 2:
        return None
    j = max(adds)
    view.attributes(j, {})
    block_out = next(name for name in view.nodes[j].input if name != cur)
    view.hidden.add(j)
    try:
        specs, used, block_width = _chain(view, cur, block_out, width)
    finally:
        view.hidden.discard(j)
    if width is not None and block_width != width:
        raise view.error(f"{view.describe(j)}: adds a block's {block_width} features to the "
                         f"{width} before it")
    if not specs:  # a block of Dropout or Flatten alone: the identity
        specs = [({"type": "Identity", "config": {}}, {})]
    block = {"type": "Sequential", "layers": [arch for arch, _ in specs]}
    state = {f"block.{k}.{key}": value for k, (_, st) in enumerate(specs)
             for key, value in st.items()}
    return Match([({"type": "Residual", "layers": [block]}, state)], view.nodes[j].output[0],
                 used | {j}, block_width)


def _check_closed(view, cur, m, used):
    """The matched nodes are all that read ``cur``, and what they compute on the way is read
    by none but them: no branch leaves or enters the match, and no node is used twice."""
    if m.nodes & used:
        raise view.error(f"{view.describe(min(m.nodes & used))} is reached twice (a cycle)")
    outside = set(view.consumers_of(cur)) - m.nodes
    for i in sorted(m.nodes):
        for name in view.nodes[i].output:
            if name and name != m.output:
                outside |= set(view.consumers_of(name)) - m.nodes
                if name == view.output_name:
                    outside.add(i)
    if set(view.consumers_of(m.output)) & m.nodes:
        outside |= m.nodes
    if outside:
        raise view.error(f"{view.describe(min(outside))} reads a tensor inside a layer's "
                         f"pattern (a branch); pynn loads a chain of layers")


def _build(specs):
    """The Sequential of the specs, through pynn.io's architecture table; eval mode."""
    if not specs:  # nothing but Dropout or Flatten: the identity
        specs = [({"type": "Identity", "config": {}}, {})]
    model = build({"type": "Sequential", "layers": [arch for arch, _ in specs]})
    state = {f"{k}.{key}": value for k, (_, st) in enumerate(specs) for key, value in st.items()}
    model.load_state_dict(state)
    return model.eval()


def _metadata(proto, path):
    raw = next((p.value for p in proto.metadata_props if p.key == KEY_METADATA), None)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: {KEY_METADATA} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: {KEY_METADATA} must be a JSON object")
    return meta


def load(path, return_metadata=False):
    """Load an ONNX MLP as a pynn ``Sequential`` in eval mode.

    Reads a single-input, single-output chain of Gemm (with or without transposes, alpha,
    beta) or MatMul + Add, BatchNormalization, Relu, LeakyRelu, Elu, Sigmoid, Tanh, Softmax,
    Identity, Dropout, Flatten, Gelu, Mish, Softplus, LayerNormalization, RMSNormalization,
    residual skips (an Add of a block's input and output: a Residual), and everything
    ``pynn.onnx.export`` writes (so an exported model loads back with its predictions),
    float32 or float64. Its weights must be stored in
    the file (initializers or Constant nodes, not external data).

    Parameters
    ----------
    path : str or os.PathLike
    return_metadata : bool, default False
        Also return the ``metadata`` dict given to ``export`` ({} for another tool's file).

    Returns
    -------
    model : Sequential, in eval mode
    metadata : dict, only with ``return_metadata=True``

    Raises
    ------
    ImportError without the onnx package; FileNotFoundError; ModelFileError (a ValueError)
    naming the node and operator pynn cannot express (a Conv, a branch, a dynamic weight), or
    the problem with a corrupt or hostile file.
    """
    onnx = require_onnx()
    path = os.fspath(path)
    proto = _parse(onnx, _read_bytes(path), path)
    specs = _walk(GraphView(onnx, proto, path))
    try:
        model = _build(specs)
    except (TypeError, ValueError) as exc:  # a config pynn refuses (a width over its limit)
        raise ModelFileError(f"{path}: {exc}") from None
    if return_metadata:
        return model, _metadata(proto, path)
    return model
