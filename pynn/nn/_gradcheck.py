"""``pynn.gradcheck``: a module's backward against central finite differences, in float64."""
import numpy as np

from .dropout import Dropout
from .module import Module


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when an analytic gradient disagrees with the numeric one."""


def gradcheck(module, X, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0,
              check_input=True):
    """Check ``module.backward`` against central finite differences (torch's ``gradcheck``).

    The scalar checked is ``sum(R * module.forward(X))`` with a fixed random ``R`` (from
    ``seed``), so every output element contributes. Its gradient with respect to the input and
    to every trainable parameter is computed twice: by ``module.backward(R)`` and by central
    differences ``(f(x + eps) - f(x - eps)) / (2 eps)``, one element at a time. The module runs
    in its current mode (BatchNorm in training mode uses batch statistics); Dropout masks are
    held fixed, and buffers, gradients and Dropout counters are restored afterwards, so the
    module is left as it was.

    Parameters
    ----------
    module : Module with float64 parameters (build it with ``dtype=np.float64``)
    X : float64 ndarray, the input
    eps : float, the finite-difference step
    atol, rtol : float
        An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    raise_exception : bool, default True
        Raise GradcheckError on a mismatch (else return False).
    seed : int, seeds R
    check_input : bool, default True
        Also check dX (the value ``backward`` returns).

    Returns
    -------
    True when every entry passes (False on a mismatch with ``raise_exception=False``).

    Raises
    ------
    GradcheckError
        Naming the worst entry: which tensor ("input" or the parameter's name), its index, the
        analytic and the numeric value.
    """
    if not isinstance(module, Module):
        raise TypeError(f"module must be a pynn Module, got {type(module).__name__}")
    if not isinstance(X, np.ndarray) or X.dtype != np.float64:
        raise TypeError("X must be a float64 numpy.ndarray (finite differences need double "
                        f"precision), got {getattr(X, 'dtype', type(X).__name__)}")
    params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    for name, p in params:
        if p.dtype != np.float64:
            raise TypeError(f"parameter {name!r} has dtype {p.dtype}; gradcheck needs a float64 "
                            "module (build its layers with dtype=np.float64)")
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (
                name == "eps" and value == 0):
            raise ValueError(f"{name} must be a non-negative number (eps > 0), got {value!r}")

    saved_buffers = [(b, b.copy()) for b in module.buffers()]
    saved_grads = [(p, p.grad.copy()) for p in module.parameters()]
    dropouts = [(m, m.step) for m in module.modules() if isinstance(m, Dropout)]
    X = np.array(X, order="C")

    def run(inp):
        for m, step in dropouts:
            m.step = step  # the same mask in every evaluation
        return module.forward(inp)

    try:
        out = run(X)
        R = np.random.default_rng(seed).standard_normal(out.shape)

        def f(inp):
            return float(np.sum(R * run(inp)))

        module.zero_grad()
        run(X)
        dX = module.backward(R.astype(out.dtype))
        checks = [(name, p.grad.copy(), p.data) for name, p in params]
        numeric_X = None
        if check_input:
            if dX is None:
                raise GradcheckError("backward returned None instead of dX")
            dX = np.asarray(dX)
            if dX.shape != X.shape:
                raise GradcheckError(f"backward returned dX of shape {dX.shape}, the input "
                                     f"has shape {X.shape}")
            numeric_X = central_differences(lambda: f(X), X, eps)
        results = []
        if check_input:
            results.append(("input", dX, numeric_X))
        for name, analytic, data in checks:
            results.append((name, analytic, central_differences(lambda: f(X), data, eps)))
    finally:
        for b, value in saved_buffers:
            b[...] = value
        for p, g in saved_grads:
            p.grad[...] = g
        for m, step in dropouts:
            m.step = step

    worst = None
    for name, analytic, numeric in results:
        excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if excess.size and (worst is None or excess.max() > worst[0]):
            i = np.unravel_index(int(np.argmax(excess)), excess.shape)
            worst = (float(excess[i]), name, [int(j) for j in i], float(analytic[i]),
                     float(numeric[i]))
    if worst is not None and worst[0] > 0:
        _, name, index, a, n = worst
        message = (f"gradcheck failed for {type(module).__name__}: {name}{index}: "
                   f"analytic {a:.10g}, numeric {n:.10g} (atol={atol}, rtol={rtol})")
        if raise_exception:
            raise GradcheckError(message)
        return False
    return True


def central_differences(f, a, eps):
    """Central differences of ``f()`` with respect to every element of ``a`` (perturbed in
    place and restored)."""
    grad = np.empty(a.shape)
    flat = a.reshape(-1)  # a view: a is C-contiguous (inputs are copied, parameters are views)
    g = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad
