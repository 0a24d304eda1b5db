"""Which compiled program runs a Sequential's call, and when each is built or rebuilt: its plans
by input shape (``_compiled_for``, pynn.nn.plan), its compiled training step (``compiled_step``
and ``train_step``, pynn.nn.train_step) and its inference program (``_inference_program`` and
``predict``, pynn.nn.inference). ``Sequential`` (pynn/nn/containers.py) inherits it and holds
the container itself (its layers and their default inits, list-like access, the summary) and
its eager path (the fused steps ``forward``, ``backward`` and ``infer`` run); its ``__init__``
sets the caches read here (``_compiled``, ``_uncompilable``, ``_inference``, ``_compile``) and
its ``__getstate__`` drops them. Where no program fits a call, the eager path or ``Module``'s
lines run it. This part is how the compiled programs are kept and reused, that one what the
container computes, and each changes for its own reasons."""
import numpy as np

from ..backend._sparse import is_sparse
from . import plan as _plan
from ._module_run import _check_batch_size
from .inference import InferencePlan
from .train_step import program_for

# Plans kept per container (a training batch size, the last partial batch, a validation size).
_MAX_PLANS = 4


class SequentialPrograms:
    """``Sequential``'s compiled programs (see the module doc). Listed before ``Module`` among
    Sequential's bases: ``train_step`` and ``predict`` fall back to Module's through super()."""

    #: (loss, optimizer, plan, compiled step) of the last two compiled_step answers, the latest
    #: first: a training loop calls with the same loss and optimizer every step, on its batch
    #: size and once an epoch on its last, shorter batch, so the next call checks just these
    _recent_train_steps = ()

    def _compiled_for(self, X, sparse=False):
        """The plan for input ``X`` (built on first sight of its shape), or None to run eagerly.
        ``sparse``: a CSR ``X`` gets one too (the compiled training step's, which alone runs
        a plan on one)."""
        csr = sparse and is_sparse(X) and X.format == "csr"
        if (type(X) is not np.ndarray and not csr) or not self._compile:
            return None
        steps = self._steps()
        key = (X.shape, X.dtype, csr)
        plan = self._compiled.get(key)
        if plan is not None and plan.structure is steps and plan.fits(X):
            return plan
        failed = self._uncompilable
        if failed is not None and failed[0] is steps and failed[1] == csr:
            return None
        plan = _plan.build(self, X)
        if plan is None:
            self._uncompilable = (steps, csr)
            return None
        if len(self._compiled) >= _MAX_PLANS:
            self._compiled.clear()  # many shapes in turn: keep memory bounded
        self._compiled[key] = plan
        return plan if plan.fits(X) else None

    def train_step(self, X, y, loss, optimizer):
        """One training step, the loss value: ``Module.train_step``'s four lines, compiled
        into one call without the GIL when every layer, the loss and the optimizer are pynn's
        (``compiled_step``), bit-identical to them; else those lines run as written."""
        program = self.compiled_step(X, loss, optimizer)
        if program is not None:
            value = program.run(X, y)
            if value is not None:
                return value
        return super().train_step(X, y, loss, optimizer)

    def compiled_step(self, X, loss, optimizer, *, zero_grad="optimizer"):
        """The compiled step (pynn.nn.train_step) of this container's plan for batches like
        ``X`` with this loss and optimizer, or None (see ``Module.compiled_step``): built once,
        then the last two calls' answers are checked first, as a training loop calls with the
        same loss and optimizer step after step, on its batch shape and its last batch's."""
        if zero_grad not in ("optimizer", "model"):
            raise ValueError(f"zero_grad must be 'optimizer' or 'model', got {zero_grad!r}")
        if not self._compile:
            return None
        claim = getattr(optimizer, "claim_parameters", None)
        if claim is not None:
            # An optimizer re-packs its parameters when another packed them since its last
            # step: let it happen now, before the plan checks where the parameters live.
            claim()
        recent = self._recent_train_steps
        for i, entry in enumerate(recent):
            if (entry[0] is loss and entry[1] is optimizer and entry[2].fits(X)
                    and entry[3].fits(loss, optimizer)):
                program = entry[3]
                if i:
                    self._recent_train_steps = (entry, recent[0])
                break
        else:
            plan = self._compiled_for(X, sparse=True)
            program = None if plan is None else program_for(plan, loss, optimizer)
            if program is not None:
                self._recent_train_steps = ((loss, optimizer, plan, program),) + recent[:1]
        if zero_grad == "model" and program is not None and program.zero_first:
            return None  # its zero_grad is the optimizer's, not the model's
        return program

    def predict(self, X, batch_size=1024):
        """Eval-mode outputs over batches of ``batch_size`` (see ``Module.predict``), through
        the container's inference program (pynn.nn.inference: built on first use and kept
        while nothing it recorded is replaced; it reads the weights and statistics in place,
        so it is never stale): one call into C for the whole forward, BatchNorm folded into
        the Dense before it for many rows, activations fused, the results written straight
        into the output. A sparse X runs in the program too (its rows as CSR, through the
        first Dense's sparse core) when the first layer is a Dense; else (or no rows)
        ``Module.predict``'s batches."""
        if is_sparse(X) and X.ndim == 2 and X.format != "csr":
            X = X.tocsr()  # once, not per batch
        rows = (isinstance(X, np.ndarray) or is_sparse(X)) and X.ndim == 2 and X.shape[0] > 0
        program = self._inference_program() if rows else None
        if program is None or not program.fits(X):
            return super().predict(X, batch_size)
        if type(batch_size) is not int or batch_size < 1:
            _check_batch_size(batch_size)
        return program.run(X, batch_size)

    def _inference_program(self):
        """The inference program (kept on the container), or None (``predict`` then runs the
        layers' own ``infer``)."""
        if not self._compile:
            return None
        program = self.__dict__.get("_inference")
        if program is None or not program.holds():
            program = self._inference = InferencePlan.build(self)
        return program
