"""The eager training step: the PyTorch-style loop's lines, written once. ``Module.train_step``
is these lines; ``Trainer`` and the scikit-learn estimators run them for a batch the compiled
step (pynn.nn.train_step) does not take, with their own loss, zeroing and clipping."""
import math


def eager_step(model, X, optimizer, loss_value, loss_grad, *, zero_grad="optimizer",
               finite_only=False, clip=None):
    """One step in Python: zero the gradients (``optimizer.zero_grad()``, or
    ``model.zero_grad()`` with ``zero_grad="model"``), ``out = model.forward(X)``,
    ``value = loss_value(out)``, ``model.backward(loss_grad(), input_grad=False)`` (no dX for
    the data), ``clip(model)`` when given (it edits the gradients before the update), then
    ``optimizer.step()``. Returns ``(value, out)``.

    ``finite_only``: a non-finite value stops the step before the backward, so nothing is
    updated (as TerminateOnNaN wants; the compiled step's ``run(finite_only=True)`` alike)."""
    (model if zero_grad == "model" else optimizer).zero_grad()
    out = model.forward(X)
    value = loss_value(out)
    if finite_only and not math.isfinite(value):
        return value, out
    model.backward(loss_grad(), input_grad=False)
    if clip is not None:
        clip(model)
    optimizer.step()
    return value, out
