"""What the kernels are told, beyond arrays: activation kinds as codes (mirrored in
csrc/_activations.pxd) with their parameters, which activations may be fused into the op before
them, the step kinds of plans and compiled training steps, and dropout's counter-based random
stream (its key and threshold), so both backends and the compiled programs derive them one way.
"""
import numpy as np

# Activation kinds as the kernels see them (the codes are mirrored in csrc/_activations.pxd).
IDENTITY, RELU, LEAKY_RELU, ELU, SIGMOID, TANH, STEP, SQUARE = range(8)
GELU, GELU_TANH, SILU, SOFTPLUS, MISH = range(8, 13)
ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "step": STEP,
    "square": SQUARE,
    "gelu": GELU,
    "gelu_tanh": GELU_TANH,
    "silu": SILU,
    "softplus": SOFTPLUS,
    "mish": MISH,
}
# The smooth activations of today's MLP blocks: their derivative needs the pre-activation (it
# cannot come from the output), so a Dense they are fused into keeps its pre-activation Z for
# the backward (``keeps_preactivation``). The older kinds whose derivative needs the input
# (square, a negative leaky slope, ELU with alpha <= 0) stay separate steps, as they were.
_KEEP_PREACTIVATION = frozenset((GELU, GELU_TANH, SILU, SOFTPLUS, MISH))
# Softplus takes two parameters, (beta, threshold): torch's defaults
SOFTPLUS_DEFAULT = (1.0, 20.0)

# The robust regression losses' kinds (mirrored in csrc/_losses.pxd)
ROBUST_L1, ROBUST_HUBER, ROBUST_SMOOTH_L1 = range(3)

# Step kinds: the one enumeration of what plans, inference programs and compiled training steps
# are made of. The C side is csrc/_train_step.pxd's enum, under the same names;
# pynn._kernels.train_step.step_kinds() must equal STEP_KINDS (tests/test_train_step.py).
# op kinds: a plan's steps (a compiled training step runs all but OP_SOFTMAX); a Residual is
# its block's steps between OP_RES_BEGIN and OP_RES_END, a LayerNorm or RMSNorm OP_ROWNORM
OP_DENSE, OP_BN, OP_ACT, OP_SOFTMAX, OP_DROPOUT, OP_ROWNORM, OP_RES_BEGIN, OP_RES_END = range(8)
# a compiled training step's first Dense on a CSR batch (its plan step is an OP_DENSE)
OP_SPARSE_DENSE = 8
# loss kinds of a compiled training step: softmax cross-entropy, squared error, BCE with logits
LOSS_CE, LOSS_MSE, LOSS_BCE = range(3)
# update kinds: the optimizer loops a compiled training step holds by address
UPD_ADAM, UPD_SGD = range(2)
# phases of one run of a compiled training step (a bit mask)
FORWARD, BACKWARD, UPDATE = 1, 2, 4
STEP_KINDS = {
    "OP_DENSE": OP_DENSE, "OP_BN": OP_BN, "OP_ACT": OP_ACT, "OP_SOFTMAX": OP_SOFTMAX,
    "OP_DROPOUT": OP_DROPOUT, "OP_ROWNORM": OP_ROWNORM, "OP_RES_BEGIN": OP_RES_BEGIN,
    "OP_RES_END": OP_RES_END, "OP_SPARSE_DENSE": OP_SPARSE_DENSE, "LOSS_CE": LOSS_CE, "LOSS_MSE": LOSS_MSE, "LOSS_BCE": LOSS_BCE,
    "UPD_ADAM": UPD_ADAM, "UPD_SGD": UPD_SGD, "FORWARD": FORWARD, "BACKWARD": BACKWARD,
    "UPDATE": UPDATE,
}

MASK64 = (1 << 64) - 1
GOLDEN64 = 0x9E3779B97F4A7C15


def mix64(z):
    """splitmix64's finalizer on a Python int (mod 2**64); the dropout generator's building block."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def dropout_key(seed, step):
    """The 64-bit stream key of one dropout call: element i draws mix64(key + (i + 1) * GOLDEN64).

    Counter-based: the mask depends on (seed, step, element index) only, never on thread count.
    """
    return mix64(mix64(seed + GOLDEN64) + step)


def dropout_threshold(p):
    """Element i is kept when (draw >> 32) >= threshold, i.e. with probability 1 - p."""
    return min(int(round(p * 4294967296.0)), 4294967296)


def activation_code(activation, param=None):
    """Map an activation name (or None) to (kind code, parameter) for the kernels. The
    parameter is a float, or for softplus the pair (beta, threshold) of floats."""
    if activation is None:
        return IDENTITY, 0.0
    try:
        kind = ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)} or None, got {activation!r}"
        ) from None
    if kind == SOFTPLUS:
        return kind, _softplus_param(param)
    if param is None:
        return kind, {LEAKY_RELU: 0.01, ELU: 1.0}.get(kind, 0.0)
    return kind, _real_param("param", param)


def _real_param(name, value):
    """``value`` as a float: any real number, inf and NaN included (the kernels propagate them
    like the reference); float() alone would take a str or True and raise errors that do not
    name the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a real number or None, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} must fit in a float, got an int of {value.bit_length()} "
                         "bits") from None


def _softplus_param(param):
    """Softplus's (beta, threshold) as floats; None gives torch's defaults (1, 20)."""
    if param is None:
        return SOFTPLUS_DEFAULT
    if not isinstance(param, (tuple, list)) or len(param) != 2:
        raise TypeError(f"param of softplus must be a pair (beta, threshold), got {param!r}")
    beta = _real_param("beta", param[0])
    if beta == 0:
        raise ValueError("beta of softplus must be nonzero (softplus divides by it)")
    return beta, _real_param("threshold", param[1])


def kernel_params(param):
    """An activation's parameter as the kernels' two scalars (p, q): (beta, threshold) for
    softplus, (param, 0) for every other kind."""
    if type(param) is tuple:
        return param
    return param, 0.0


def keeps_preactivation(kind):
    """True for the kinds a Dense they are fused into keeps its pre-activation for (see
    _KEEP_PREACTIVATION): the backward takes act'(Z) from Z, not from the output."""
    return kind in _KEEP_PREACTIVATION


def derivative_from_output(kind, param):
    """True when act'(z) can be computed from y = act(z) alone, so a fused Dense need not keep z.

    Square loses the sign of z; leaky ReLU with a negative slope and ELU with alpha <= 0 make
    "y > 0" no longer mean "z > 0".
    """
    if kind == SQUARE or kind in _KEEP_PREACTIVATION:
        return False
    if kind == LEAKY_RELU:
        return param >= 0
    if kind == ELU:
        return param > 0
    return True


def fused_activation_code(activation, param, into, preactivation=False):
    """``activation_code`` for an activation fused into the op ``into``: only kinds whose
    derivative comes from the output (``derivative_from_output``), since the fused backward
    gets the op's output Y; any kind when the op keeps its pre-activation too
    (``preactivation``: a Dense given a buffer for it)."""
    kind, param = activation_code(activation, param)
    if not preactivation and not derivative_from_output(kind, param):
        hint = ("; apply it as a separate layer" if into != "dense" else
                "; apply it as a separate layer, or keep the pre-activation (preact_out / Z)")
        raise ValueError(
            f"activation {activation!r} with param {param} cannot be fused into {into}: its "
            f"derivative needs the pre-activation{hint}"
        )
    return kind, param
