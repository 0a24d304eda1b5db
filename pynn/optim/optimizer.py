"""The general optimizer: param groups, packed parameters, flat state (its torch layout,
``state_dict``, is pynn/optim/_state.py's).

A subclass names its defaults, validates a group's hyper-parameters and updates one group with
one backend call per dtype (``_step_group``); everything else lives here.

Layout. On construction the parameters are (re)packed, in group order, into one
``ParameterArena`` per dtype, each group starting on a cache line; optimizer state (``exp_avg``,
``momentum_buffer``, ...) lives in flat buffers laid out exactly like the arena. A group is then
one contiguous slice of every buffer, and one fused kernel call updates all of it. Layers reach
their arrays through ``param.data`` / ``param.grad`` only, so re-homing them is safe. If
something re-packs the parameters later (``Module.pack``), the next ``step`` notices and
re-packs them again, carrying the state along.

Differences from torch: gradients are always arrays (never None), so every parameter of a group
is updated each step (torch skips parameters whose ``.grad`` is None); the step count is kept per
group, since the group is updated as one buffer.
"""

import numpy as np

from .._checks import check_real
from ..backend import backend_for
from ..backend.update_runs import UpdateRuns
from ..nn.parameter import Parameter, ParameterArena
from ._layout import FlatLayout
from ._state import OptimizerState


class Optimizer(FlatLayout, OptimizerState):
    """Base class of pynn's optimizers (torch's ``torch.optim.Optimizer`` interface).

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        Parameters to optimize, or param groups: dicts with a ``"params"`` entry and any
        hyper-parameters that override ``defaults`` for that group.
    defaults : dict
        Default hyper-parameters of every group.
    backend : "numpy", "cython" or None
        Where the update runs; None follows ``pynn.set_backend``.

    Attributes
    ----------
    param_groups : list of dict
        One dict per group: ``"params"`` (list of Parameter) and its hyper-parameters. Editing a
        group's ``"lr"`` (as the schedules do) takes effect at the next ``step``.
    state : dict
        ``{Parameter: {"step": int, "exp_avg": array, ...}}`` with torch's key names; the arrays
        are live views into the optimizer's flat state buffers.
    """

    #: names of the state buffers, in torch's order (subclasses set this)
    state_keys = ()
    #: whether the per-parameter state holds a "step" entry (SGD's does not)
    has_step = True
    #: scalar state entries beside "step", with their value before the first step, kept per
    #: group like the step and shown in every parameter's entry (NAdam's "mu_product")
    scalar_state = {}
    #: the record of one run of the update loop (pynn.backend.update_runs; subclasses set it):
    #: ``_step_group`` names its fields, ``_for_slices`` runs the backend's step of that name
    #: or, inside ``update_runs``, makes the records
    run_type = None

    def __init__(self, params, defaults, backend=None):
        self.defaults = dict(defaults)
        self.backend_name = backend
        backend_for(backend)  # validate the name now, not at the first step
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError(
                "params must be an iterable of Parameters or of dicts, got "
                f"{type(params).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.param_groups = []
        self._group_state = []  # per group: {"step": int, "keys": set of initialized buffers}
        self._arenas = {}
        self._buffers = {}
        self._layout = {}
        self._segments = []
        self._checked_groups = {}  # group index -> (the group, a copy of it) as last checked
        self._arena_generation = None
        self._slice_cache = {}  # (group index, state keys) -> flat slices, checked once
        # Moves whenever what a step's loop calls are made of changes: the slices above are
        # dropped (a re-pack, a parameter frozen, a state buffer made) or a group's
        # hyper-parameters are checked again (edited). A compiled step that loaded the runs at
        # one version may replay them while the version holds (``update_runs``).
        self._version = 0
        self._issued = 0  # the last version handed out: a version is never reused for another
        # (version, per group (the group, a copy of it) as checked): the configurations the
        # current layout stepped with, newest last, so that groups edited back to one of them
        # (the estimators' last-batch weight decay, twice an epoch) find its version again
        self._known_configs = []
        self._steady_version = None  # the version the last completed step left
        self._collected = None  # inside ``update_runs``: the records of the step's runs
        self._quick_answer = None  # update_runs' last quick answer, filled anew each time
        for group in params:
            self._add_group(group)
        self._pack()
        for gi in range(len(self.param_groups)):
            self._init_group_state(gi)

    # ------------------------------------------------------------------ subclass hooks
    def _check_group(self, group):
        """Validate and normalize one group's hyper-parameters in place (subclasses)."""

    def _init_group_state(self, gi):
        """State a group has before its first step (Adagrad's accumulator); none by default."""

    def _step_group(self, gi, group, gstate):
        """Update group ``gi`` (its step count already advanced, when ``has_step``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    @property
    def backend(self):
        return backend_for(self.backend_name)

    def add_param_group(self, param_group):
        """Add a group (a dict with "params"); parameters are re-packed, state is kept."""
        self._add_group(param_group)
        self._repack()
        self._init_group_state(len(self.param_groups) - 1)

    def step(self, closure=None):
        """One update of every group (one fused kernel call per group and dtype).

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called before the update.
        """
        loss = closure() if closure is not None else None
        self._step_groups()
        return loss

    def _step_groups(self):
        """The update of every group (``step`` without the closure). Every group edited since
        the last step is checked before any is updated, so a bad value changes nothing."""
        self._steady_version = None
        self.claim_parameters()
        self._update_runs()
        if not self._all_unchanged():
            known = self._known_config()
            if known is not None:
                self._adopt(known)
            else:
                for gi, group in enumerate(self.param_groups):
                    if not self._unchanged(gi, group):
                        self._check_group(group)
                        self._checked_groups[gi] = (group, dict(group))
                self._version = self._new_version()
        for gi, group in enumerate(self.param_groups):
            gstate = self._group_state[gi]
            if self.has_step:
                gstate["step"] += 1
            self._step_group(gi, group, gstate)
        self._remember_config()
        self._steady_version = self._version

    def _unchanged(self, gi, group):
        """Group ``gi`` is as it was last checked. Hyper-parameters may be edited between
        steps (schedules do): they are checked again only when they changed, so an unchanged
        group costs one dict comparison (with a copy of the group as last checked; its
        "params" is the same list object)."""
        checked = self._checked_groups.get(gi)
        return checked is not None and checked[0] is group and checked[1] == group

    def _all_unchanged(self):
        for gi, group in enumerate(self.param_groups):
            if not self._unchanged(gi, group):
                return False
        return True

    # ------------------------------------------------------------------ versions
    def _new_version(self):
        self._issued += 1
        return self._issued

    def _forget_configs(self):
        """The layout changed (or the state was loaded): no earlier version describes it."""
        self._known_configs = []
        self._version = self._new_version()

    def _known_config(self):
        """The (version, groups as checked) of a configuration stepped with before on this
        layout that every group equals now (each the same dict, its values equal to the copy
        then checked), or None."""
        groups = self.param_groups
        for known in reversed(self._known_configs):
            checked = known[1]
            if len(checked) == len(groups) and all(
                    c[0] is g and c[1] == g for c, g in zip(checked, groups)):
                return known
        return None

    def _adopt(self, known):
        """Take up a known configuration (``_known_config``'s) again: its groups were checked
        when it was first stepped with."""
        version, checked = known
        self._checked_groups = dict(enumerate(checked))
        self._version = version

    def _remember_config(self):
        """Record the configuration this step ran with (a few, the newest kept)."""
        known = self._known_configs
        if known and known[-1][0] == self._version:
            return
        known[:] = [k for k in known if k[0] != self._version][-3:]
        known.append((self._version,
                      tuple(self._checked_groups[gi] for gi in range(len(self.param_groups)))))

    def update_runs(self, loaded=None):
        """One ``step``'s bookkeeping (step counts, state buffers, groups a schedule edited
        checked again) with its update loops described instead of run: an ``UpdateRuns`` of
        records (pynn.backend.update_runs), one per trainable slice of each group, in order,
        for a caller that runs the loops itself (a compiled training step).

        ``loaded``: the ``version`` of an earlier answer whose runs the caller holds. When only
        the step counts moved since (no re-pack, no parameter frozen, no group edited, no state
        to create), the answer is the quick one: ``runs`` None and ``steps`` each run's step
        count (its arrays and hyper-parameters are the loaded run's, and it is no first step:
        that step made the buffers). A quick answer is reused by the next one: read it first."""
        if self._quick(loaded):
            answer = self._quick_answer
            if answer is None or answer.version != loaded:
                answer = self._quick_answer = UpdateRuns(loaded, None, [])
            steps = answer.steps
            steps.clear()
            has_step = self.has_step
            for gstate, runs in zip(self._group_state, self._runs):
                if has_step:
                    gstate["step"] += 1
                for _ in runs:
                    steps.append(gstate["step"])
            return answer
        self._collected = runs = []
        try:
            self._step_groups()
        finally:
            self._collected = None
        return UpdateRuns(self._steady_version, runs, None)

    def _quick(self, loaded):
        """The next step's bookkeeping is update_runs' quick answer: only step counts move."""
        if not (loaded is not None and self._steady_version is not None
                and self._arena_generation == ParameterArena.generation
                and self._runs_version == Parameter.freeze_version):
            return False
        for gi, group in enumerate(self.param_groups):
            if not self._unchanged(gi, group):
                break
        else:  # (the loop inline, not _all_unchanged: this runs every step)
            return loaded == self._version
        # groups edited back to the configuration the caller loaded (it stepped with it)
        known = self._known_config()
        if known is None or known[0] != loaded:
            return False
        self._adopt(known)
        self._steady_version = loaded
        return True

    def quick_steps(self, loaded, count):
        """The bookkeeping of ``count`` more steps at once, for a caller that runs them back to
        back with nothing in between (``TrainStep.run_batches``), when each would get
        ``update_runs``' quick answer: their step counts, one row per step and one column per
        loaded run (``UpdateRuns.steps`` of each); None, having changed nothing, otherwise."""
        if not self._quick(loaded):
            return None
        columns = []
        has_step = self.has_step
        for gstate, runs in zip(self._group_state, self._runs):
            first = gstate["step"]
            if has_step:
                gstate["step"] += count
                column = np.arange(first + 1, first + count + 1, dtype=np.float64)
            else:
                column = np.full(count, float(first))
            columns.extend([column] * len(runs))
        steps = np.empty((count, len(columns)))
        for j, column in enumerate(columns):
            steps[:, j] = column
        return steps

    def zero_grad(self, set_to_none=True):
        """Zero every parameter's gradient: one memset per arena.

        ``set_to_none`` is accepted for torch compatibility; gradients here are always arrays,
        so they are set to zeros either way.
        """
        self.claim_parameters()
        for arena in self._arenas.values():
            arena.zero_grad()

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    # ------------------------------------------------------------------ groups
    def _add_group(self, group):
        if not isinstance(group, dict):
            raise TypeError(f"param_group must be a dict, got {type(group).__name__}")
        group = dict(group)
        if "params" not in group:
            raise ValueError("param_group must have a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    "optimizer can only optimize pynn Parameters, but one of the params is "
                    f"{type(p).__name__}"
                )
        if not params:
            raise ValueError("param_group['params'] is empty")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("param_group['params'] holds the same Parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)
        self._group_state.append({"step": 0, "keys": set()})

# ---------------------------------------------------------------------- validation helpers
def check_hyper(group, key, label, low=0.0, high=None, high_open=False):
    """group[key] as a float in [low, high]; ValueError(f"Invalid {label}: {value}") otherwise,
    torch's wording (e.g. "Invalid learning rate: -1.0")."""
    group[key] = check_real(key, group[key], low, high, high_open=high_open,
                            message=f"Invalid {label}: {{value}}")
    return group[key]


def check_flag(group, key):
    value = group[key]
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{key} must be a bool, got {type(value).__name__}")
    group[key] = bool(value)
    return group[key]
