"""Gradient clipping with torch's names, arguments and return values
(``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``), on the parameters' ``.grad``.

A model's gradients live in one flat buffer per dtype (the arena): when the parameters given are
exactly an arena's, the norm and the scaling each run once over that buffer, not per parameter.
Frozen parameters (``requires_grad=False``) are left out, as torch leaves out tensors without a
gradient.
"""
import math

import numpy as np

from .._checks import check_real
from .parameter import Parameter


def _grad_buffers(parameters):
    """The gradient arrays to clip: whole arena buffers where ``parameters`` covers an arena
    exactly, else each parameter's own view."""
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"parameters must be a Parameter or an iterable of Parameters, got "
                        f"{type(parameters).__name__}") from None
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"parameters must hold Parameters, got {type(p).__name__}")
    trainable = {id(p): p for p in params if p.requires_grad}  # a repeated one counts once
    by_arena = {}
    for p in trainable.values():
        by_arena.setdefault(id(p.arena), (p.arena, []))[1].append(p)
    buffers = []
    for arena, ps in by_arena.values():
        if len(ps) == len(arena.params) and arena.owns_all():
            buffers.append(arena.grad)  # its padding between segments is zero: norms unchanged
        else:
            buffers.extend(p.grad for p in ps)
    return buffers


def _norm(g, norm_type):
    if norm_type == math.inf:
        return float(np.max(np.abs(g))) if g.size else 0.0
    if norm_type == 2.0:
        return math.sqrt(float(np.dot(g, g)))  # one BLAS pass, in the gradient's dtype
    if norm_type == 1.0:
        return float(np.sum(np.abs(g)))
    return float(np.sum(np.abs(g) ** norm_type)) ** (1.0 / norm_type)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients in place so that their total norm is at most ``max_norm``.

    The total norm is that of all gradients concatenated into one vector (torch's); every
    gradient is multiplied by ``min(1, max_norm / (total_norm + 1e-6))``.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters (e.g. ``model.parameters()``)
    max_norm : float
    norm_type : float, default 2.0
        The p of the p-norm; ``math.inf`` for the largest absolute value.
    error_if_nonfinite : bool, default False
        Raise RuntimeError when the total norm is nan or inf (otherwise the gradients are scaled
        by a nan coefficient, as torch does).

    Returns
    -------
    float
        The total norm of the gradients before clipping.
    """
    max_norm = check_real("max_norm", max_norm, low=0.0)
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(
            norm_type, (int, float, np.integer, np.floating)) or not norm_type > 0:
        raise ValueError(f"norm_type must be a number > 0 or math.inf, got {norm_type!r}")
    norm_type = float(norm_type)
    buffers = [g.reshape(-1) for g in _grad_buffers(parameters)]
    if not buffers:
        return 0.0
    norms = [_norm(g, norm_type) for g in buffers]
    if norm_type == math.inf:
        total = max(norms)
    else:
        total = math.fsum(n ** norm_type for n in norms) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            f"non-finite, so it cannot be clipped. To disable this error and scale the "
            f"gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
    if coef != 1.0:
        with np.errstate(invalid="ignore"):  # inf * 0 is nan, silently, as in torch
            for g in buffers:
                g *= coef
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place (torch's);
    returns None."""
    clip_value = check_real("clip_value", clip_value, low=0.0)
    for g in _grad_buffers(parameters):
        np.clip(g, -clip_value, clip_value, out=g)


__all__ = ["clip_grad_norm_", "clip_grad_value_"]
