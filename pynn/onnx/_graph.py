"""The checked view of an untrusted ONNX model that ``pynn.onnx.load`` walks.

Nothing of the file is trusted: the main graph must have one data input and one output, the
node count is bounded, every name is produced once, and the weights are read only through
``array``, which refuses external data (a tensor naming another file is never opened), a
declared shape the stored values do not fill (counted in exact integers, before numpy sees the
tensor), more than two dimensions, another element type than the input's, and NaN or Inf.
A node's attributes are read only through ``attributes``, against a fixed list per operator.
"""
import math

import numpy as np

from ..io._archive import ModelFileError
from ._common import DTYPES

# The most nodes a graph may have (an MLP has tens; a hostile file of millions of one-byte
# nodes must not become millions of layers).
MAX_NODES = 10_000
DOMAINS = ("", "ai.onnx")


class GraphView:
    """The main graph of ``proto`` (an ``onnx.ModelProto``), checked and indexed: constants
    (initializers and Constant nodes), the producer and the consumers of every tensor, the one
    data input (its dtype and width) and the one output."""

    def __init__(self, onnx, proto, source):
        self.onnx, self.source = onnx, source
        if not proto.HasField("graph"):
            raise self.error("not an ONNX model (no graph)")
        graph = proto.graph
        self.opset = self._default_opset(proto)
        if len(graph.node) > MAX_NODES:
            raise self.error(f"the graph has {len(graph.node)} nodes, more than the {MAX_NODES} "
                             f"pynn.onnx loads")
        if len(graph.sparse_initializer):
            raise self.error("sparse initializers are not supported")
        self.nodes = list(graph.node)
        for i, node in enumerate(self.nodes):
            # protobuf hands a string field that is not UTF-8 back as bytes
            if not all(isinstance(v, str) for v in (node.op_type, node.domain, node.name,
                                                      *node.input, *node.output)):
                raise self.error(f"node #{i}: a name or operator that is not UTF-8 text")
        self.constants, self.constant_nodes, self._arrays = {}, set(), {}
        for tensor in graph.initializer:
            self._add_constant(tensor.name, tensor)
        for i, node in enumerate(self.nodes):
            if node.op_type == "Constant" and node.domain in DOMAINS:
                self._add_constant_node(i, node)
        # nodes walked past while reading a Residual's block (its closing Add): unseen by
        # consumers_of until the block is read
        self.hidden = set()
        self.producer, self.consumers = {}, {}
        for i, node in enumerate(self.nodes):
            for name in node.output:
                if name and (name in self.producer or name in self.constants
                             and i not in self.constant_nodes):
                    raise self.error(f"tensor {name!r} is produced twice")
                if name:
                    self.producer[name] = i
            for name in dict.fromkeys(n for n in node.input if n):
                self.consumers.setdefault(name, []).append(i)
        self._read_input_output(graph)

    # ------------------------------------------------------------------------ set-up
    def error(self, message):
        if len(message) > 1000:  # names in a hostile file may be megabytes long
            message = message[:1000] + "..."
        return ModelFileError(f"{self.source}: {message}")

    def _default_opset(self, proto):
        versions = [o.version for o in proto.opset_import if o.domain in DOMAINS]
        newest = self.onnx.defs.onnx_opset_version()
        if not versions:
            raise self.error("no opset of the default ONNX domain (not an ONNX model?)")
        if not 1 <= versions[0] <= newest:
            raise self.error(f"opset {versions[0]} is not one the installed onnx "
                             f"{self.onnx.__version__} knows (1 to {newest})")
        return versions[0]

    def _add_constant(self, name, tensor):
        if not name or name in self.constants:
            raise self.error(f"constant {name!r} is unnamed or defined twice")
        self.constants[name] = tensor

    def _add_constant_node(self, i, node):
        attrs = {a.name: a for a in node.attribute}
        if list(attrs) != ["value"] or attrs["value"].type != self.onnx.AttributeProto.TENSOR \
                or len(node.input) or len(node.output) != 1:
            raise self.error(f"{self.describe(i)}: only a Constant with one tensor 'value' "
                             f"is supported")
        self._add_constant(node.output[0], attrs["value"].t)
        self.constant_nodes.add(i)

    def _read_input_output(self, graph):
        inputs = [v for v in graph.input if v.name not in self.constants]
        if len(inputs) != 1:
            self._refuse_inputs(inputs)
        if len(graph.output) != 1:
            raise self.error(f"the graph has {len(graph.output)} outputs; pynn loads a network "
                             f"with one")
        self.input_name, self.output_name = inputs[0].name, graph.output[0].name
        tensor_type = inputs[0].type.tensor_type
        self.dtype = DTYPES.get(tensor_type.elem_type)
        if not inputs[0].type.HasField("tensor_type") or self.dtype is None:
            raise self.error(f"input {self.input_name!r} must be a float32 or float64 tensor, "
                             f"got {self._type_name(tensor_type.elem_type)}")
        self.width = None
        if tensor_type.HasField("shape"):
            dims = tensor_type.shape.dim
            if len(dims) != 2:
                raise self.error(f"input {self.input_name!r} must be 2-D (batch, features), "
                                 f"got {len(dims)} dimensions")
            if dims[1].HasField("dim_value"):
                self.width = dims[1].dim_value
        out_type = graph.output[0].type.tensor_type
        if out_type.elem_type not in (0, tensor_type.elem_type):
            raise self.error(f"output {self.output_name!r} is "
                             f"{self._type_name(out_type.elem_type)}, the input "
                             f"{self.dtype.name}")

    def _refuse_inputs(self, inputs):
        if not inputs:
            raise self.error("the graph has no input")
        for data in inputs[1:]:
            for i in self.consumers.get(data.name, ()):
                if data.name in self.nodes[i].input[1:] and self.nodes[i].input[0] != data.name:
                    raise self.error(self._dynamic(i, data.name))
        names = ", ".join(repr(v.name) for v in inputs[:5])
        raise self.error(f"the graph has {len(inputs)} inputs ({names}); pynn loads a network "
                         f"with one")

    def _type_name(self, code):
        try:
            return self.onnx.TensorProto.DataType.Name(code)
        except ValueError:
            return f"element type {code}"

    def _dynamic(self, i, name):
        return (f"{self.describe(i)}: input {name!r} is not a weight stored in the file (an "
                f"initializer or a Constant) but a graph input or a computed tensor: a dynamic "
                f"weight, which pynn cannot load")

    # ------------------------------------------------------------------------ reading nodes
    def describe(self, i):
        node = self.nodes[i]
        name = repr(node.name) if node.name else f"#{i} (unnamed)"
        op = node.op_type if node.domain in DOMAINS else f"{node.domain}.{node.op_type}"
        return f"node {name} ({op})"

    def consumers_of(self, name):
        return [i for i in self.consumers.get(name, []) if i not in self.hidden]

    def check_inputs(self, i, data, low, high=None):
        """Node i reads the chain's tensor ``data`` as its first input only, and has from
        ``low`` to ``high`` inputs."""
        node = self.nodes[i]
        high = low if high is None else high
        if not low <= len(node.input) <= high:
            raise self.error(f"{self.describe(i)}: expected {low} to {high} inputs, got "
                             f"{len(node.input)}")
        if node.input[0] != data or data in node.input[1:]:
            raise self.error(f"{self.describe(i)}: reads the layer chain's tensor {data!r} "
                             f"other than as its first input; pynn cannot express that")

    def attributes(self, i, defaults):
        """{name: value} of node i's attributes, the defaults filled in; an attribute not in
        ``defaults`` (another opset's meaning, say) or of another type is refused."""
        helper, A = self.onnx.helper, self.onnx.AttributeProto
        out = dict(defaults)
        for attr in self.nodes[i].attribute:
            if attr.name not in defaults:
                raise self.error(f"{self.describe(i)}: attribute {attr.name!r} is not supported")
            default = defaults[attr.name]
            want = (A.FLOAT if isinstance(default, float) else A.STRING
                    if isinstance(default, str) else A.INTS if isinstance(default, list)
                    else A.INT)
            if attr.type != want:
                raise self.error(f"{self.describe(i)}: attribute {attr.name!r} must be "
                                 f"{A.AttributeType.Name(want)}")
            value = helper.get_attribute_value(attr)
            if want == A.STRING:
                value = value.decode("utf-8", "replace")
            out[attr.name] = list(value) if want == A.INTS else value
        return out

    def int64s(self, i, slot, what):
        """The few int64 values (ReduceMean's axes) that node i reads at input ``slot``."""
        name = self.nodes[i].input[slot] if slot < len(self.nodes[i].input) else ""
        if name not in self.constants:
            raise self.error(self._dynamic(i, name))
        tensor = self.constants[name]
        if tensor.data_type != self.onnx.TensorProto.INT64 or len(tensor.dims) > 1 \
                or math.prod(tensor.dims) > 8 or tensor.data_location == \
                self.onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise self.error(f"{self.describe(i)}: {what} {name!r} must be at most 8 int64 "
                             f"values stored in the file")
        count, raw = math.prod(tensor.dims), len(tensor.raw_data)
        if (raw != 8 * count) if raw else len(tensor.int64_data) != count:
            raise self.error(f"{self.describe(i)}: {what} {name!r} is truncated or corrupt")
        return [int(v) for v in self.onnx.numpy_helper.to_array(tensor).reshape(-1)]

    def array(self, i, slot, what, ndims=(1, 2)):
        """The checked weight that node i reads at input ``slot``: a new C-contiguous array of
        the model's dtype."""
        name = self.nodes[i].input[slot] if slot < len(self.nodes[i].input) else ""
        if name not in self.constants:
            raise self.error(self._dynamic(i, name))
        if name not in self._arrays:
            self._arrays[name] = self._tensor_array(name, self.constants[name], self.describe(i))
        array = self._arrays[name]
        if array.ndim not in ndims:
            raise self.error(f"{self.describe(i)}: {what} {name!r} has shape {array.shape}, "
                             f"expected {' or '.join(f'{n}-D' for n in ndims)}")
        return array.copy()

    def scalar(self, i, slot, what):
        """A one-value weight (shape () or (1,)) as a float."""
        array = self.array(i, slot, what, ndims=(0, 1))
        if array.size != 1:
            raise self.error(f"{self.describe(i)}: {what} must hold one value, got shape "
                             f"{array.shape}")
        return float(array.reshape(()))

    def _tensor_array(self, name, tensor, reader):
        """The checked array of ``tensor``; errors name the node that reads it (``reader``)."""
        TP = self.onnx.TensorProto
        where = f"{reader}: weight {name!r}"
        if tensor.data_location == TP.EXTERNAL or len(tensor.external_data):
            raise self.error(f"{where} is stored outside the file (external data); pynn never "
                             f"opens a file that a model names")
        if tensor.HasField("segment"):
            raise self.error(f"{where} is a segment of a tensor (not supported)")
        dtype = DTYPES.get(tensor.data_type)
        if dtype is None or dtype != self.dtype:  # (np.dtype(None) is float64: None == it)
            raise self.error(f"{where} is {self._type_name(tensor.data_type)}, the model's "
                             f"input {self.dtype.name}")
        dims = list(tensor.dims)
        if len(dims) > 2 or any(d < 0 for d in dims):
            raise self.error(f"{where} has shape {dims}; pynn's weights have at most 2 "
                             f"dimensions")
        count = math.prod(dims)  # exact: a shape claiming 2**64 values is just too many
        raw = len(tensor.raw_data)
        held = raw // dtype.itemsize if raw else len(
            tensor.float_data if dtype == np.float32 else tensor.double_data)
        if held != count or raw % dtype.itemsize:
            stored = f"{raw} bytes" if raw else f"{held} values"
            raise self.error(f"{where} declares shape {dims} ({count} values) but holds "
                             f"{stored} (truncated or corrupt)")
        array = np.array(self.onnx.numpy_helper.to_array(tensor), dtype=self.dtype, order="C")
        if array.shape != tuple(dims):
            raise self.error(f"{where} could not be read as shape {dims}")
        if not np.isfinite(array).all():
            raise self.error(f"{where} holds NaN or Inf")
        return array
