"""What a recognized pattern of nodes becomes: ``Match`` (the pynn layers, the tensor after
them, the nodes used, the width after them) and ``spec`` (one layer as a pynn.io architecture
entry and its state)."""
from collections import namedtuple

Match = namedtuple("Match", "layers output nodes width")

# the layers whose config carries the dtype (the activations compute in their input's)
_WITH_DTYPE = ("Dense", "BatchNorm", "Standardizer", "LayerNorm", "RMSNorm")


def spec(view, type_name, config=None, **state):
    """One layer: its pynn.io architecture entry (dtype added where the layer has one) and its
    state ({state_dict key: array})."""
    config = dict(config or {})
    if type_name in _WITH_DTYPE:
        config["dtype"] = view.dtype.name
    arch = {"type": type_name, "config": config}
    return arch, {k: v for k, v in state.items() if v is not None}


def match_at(view, layers, i, width):
    """The Match of ``layers`` computed by node i alone (its output is the chain's next)."""
    return Match(layers, view.nodes[i].output[0], {i}, width)
