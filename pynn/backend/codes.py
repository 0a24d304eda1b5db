"""What the kernels are told, beyond arrays: activation kinds as codes (mirrored in
csrc/_activations.pxd) with their parameters, which activations may be fused into the op before
them, the step kinds of plans and compiled training steps, and dropout's counter-based random
stream (its key and threshold), so both backends and the compiled programs derive them one way.
"""
import numpy as np

# Activation kinds as the kernels see them (the codes are mirrored in csrc/_activations.pxd).
IDENTITY, RELU, LEAKY_RELU, ELU, SIGMOID, TANH, STEP, SQUARE = range(8)
ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "step": STEP,
    "square": SQUARE,
}

# Step kinds: the one enumeration of what plans, inference programs and compiled training steps
# are made of. The C side is csrc/_train_step.pxd's enum, under the same names;
# pynn._kernels.train_step.step_kinds() must equal STEP_KINDS (tests/test_train_step.py).
# op kinds: a plan's steps (a compiled training step runs the first three)
OP_DENSE, OP_BN, OP_ACT, OP_SOFTMAX, OP_DROPOUT = range(5)
# loss kinds of a compiled training step: softmax cross-entropy, squared error, BCE with logits
LOSS_CE, LOSS_MSE, LOSS_BCE = range(3)
# update kinds: the optimizer loops a compiled training step holds by address
UPD_ADAM, UPD_SGD = range(2)
# phases of one run of a compiled training step (a bit mask)
FORWARD, BACKWARD, UPDATE = 1, 2, 4
STEP_KINDS = {
    "OP_DENSE": OP_DENSE, "OP_BN": OP_BN, "OP_ACT": OP_ACT, "OP_SOFTMAX": OP_SOFTMAX,
    "OP_DROPOUT": OP_DROPOUT, "LOSS_CE": LOSS_CE, "LOSS_MSE": LOSS_MSE, "LOSS_BCE": LOSS_BCE,
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
    """Map an activation name (or None) to (kind code, parameter) for the kernels."""
    if activation is None:
        return IDENTITY, 0.0
    try:
        kind = ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)} or None, got {activation!r}"
        ) from None
    if param is None:
        return kind, {LEAKY_RELU: 0.01, ELU: 1.0}.get(kind, 0.0)
    # Any real number, inf and NaN included (the kernels propagate them like the reference);
    # float() alone would take a str or True and raise errors that do not name the argument.
    if isinstance(param, (bool, np.bool_)) or not isinstance(
        param, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"param must be a real number or None, got {type(param).__name__}")
    try:
        return kind, float(param)
    except OverflowError:
        raise ValueError(f"param must fit in a float, got an int of {param.bit_length()} bits") \
            from None


def derivative_from_output(kind, param):
    """True when act'(z) can be computed from y = act(z) alone, so a fused Dense need not keep z.

    Square loses the sign of z; leaky ReLU with a negative slope and ELU with alpha <= 0 make
    "y > 0" no longer mean "z > 0".
    """
    if kind == SQUARE:
        return False
    if kind == LEAKY_RELU:
        return param >= 0
    if kind == ELU:
        return param > 0
    return True


def fused_activation_code(activation, param, into):
    """``activation_code`` for an activation fused into the op ``into``: only kinds whose
    derivative comes from the output (``derivative_from_output``), since the fused backward
    gets the op's output Y, never the pre-activation."""
    kind, param = activation_code(activation, param)
    if not derivative_from_output(kind, param):
        raise ValueError(
            f"activation {activation!r} with param {param} cannot be fused into {into}: its "
            "derivative needs the pre-activation; apply it as a separate layer"
        )
    return kind, param
