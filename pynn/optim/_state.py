"""The optimizer's state as torch lays it out: ``state`` (per parameter), ``state_dict`` and
``load_state_dict`` (groups numbered across, arrays copied), over the flat per-group buffers
that ``Optimizer`` (pynn/optim/optimizer.py) keeps. Apart from it because this is the exchange
format, checked entry by entry on the way in, and the other the update and its layout."""
import collections
import math

import numpy as np


class OptimizerState:
    """``Optimizer``'s torch-layout state (a base class of it): reads ``param_groups``, the
    per-group ``_group_state``, ``state_keys``/``scalar_state``/``has_step`` and the flat
    buffers' views (``_view``); writes through ``_init_group_state`` and the layout."""

    @property
    def state(self):
        # a defaultdict like torch's: a parameter without state maps to {}
        return collections.defaultdict(dict, {
            p: entry
            for gi in range(len(self.param_groups))
            for p, entry in self._group_entries(gi, copy=False)
        })

    def state_dict(self):
        """Torch's layout: ``{"state": {index: {"step", <buffers>...}}, "param_groups": [...]}``.

        Parameters are numbered across groups in order; arrays are copies.
        """
        groups, state, index = [], {}, 0
        for gi, group in enumerate(self.param_groups):
            packed = {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in group.items() if k != "params"}
            packed["params"] = list(range(index, index + len(group["params"])))
            groups.append(packed)
            for (_, entry), i in zip(self._group_entries(gi, copy=True), packed["params"]):
                state[i] = entry
            index += len(group["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state saved by ``state_dict`` (torch's layout).

        Groups must match in number and size; every parameter of a group must have the same
        state entries and step (a group is updated as one buffer). Arrays are copied in.
        """
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups' entries")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for group, saved in zip(self.param_groups, saved_groups):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    "of optimizer's group"
                )
        saved_state = {int(k): v for k, v in dict(state_dict["state"]).items()}
        new_groups, new_gstates, writes = [], [], []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            new = {k: v for k, v in saved.items() if k != "params"}
            new["params"] = group["params"]
            for key, value in self.defaults.items():
                new.setdefault(key, value)  # e.g. "l1" in a state dict saved by torch
            if isinstance(new.get("betas"), list):
                new["betas"] = tuple(new["betas"])
            self._check_group(new)
            entries = [saved_state.get(int(i)) for i in saved["params"]]
            gstate = {"step": 0, "keys": set()}
            if any(e is not None for e in entries):
                gstate, group_writes = self._parse_entries(gi, group["params"], entries)
                writes += group_writes
            new_groups.append(new)
            new_gstates.append(gstate)
        # everything validated: now apply
        self.param_groups = new_groups
        self._group_state = new_gstates
        self._runs_version = None
        self._checked_groups = {}
        self._forget_configs()
        for p, key, value in writes:
            self._view(p, key)[...] = value
        for gi, gstate in enumerate(new_gstates):
            if not gstate["keys"] and gstate["step"] == 0:
                self._init_group_state(gi)

    # ------------------------------------------------------------------ state entries
    def _group_entries(self, gi, copy):
        gstate = self._group_state[gi]
        if not gstate["keys"] and gstate["step"] == 0:
            return
        keys = [k for k in self.state_keys if k in gstate["keys"]]
        for p in self.param_groups[gi]["params"]:
            entry = {"step": gstate["step"]} if self.has_step else {}
            for key, first in self.scalar_state.items():
                entry[key] = gstate.get(key, first)
            for key in keys:
                view = self._view(p, key)
                entry[key] = view.copy() if copy else view
            yield p, entry

    def _parse_entries(self, gi, params, entries):
        """Check one group's saved state entries; return (group state, [(p, key, array)])."""
        where = f"state_dict['state'] for param_groups[{gi}]"
        if any(e is None for e in entries):
            raise ValueError(f"{where} covers only some of its parameters; a group is updated "
                             "as one buffer, so all or none must have state")
        scalars = {"step", *self.scalar_state}
        keysets = {frozenset(k for k in e if k not in scalars) for e in entries}
        if len(keysets) != 1:
            raise ValueError(f"{where} has different state keys for different parameters")
        keys = set(keysets.pop())
        unknown = keys - set(self.state_keys)
        if unknown:
            raise ValueError(f"{where} has unknown state keys {sorted(unknown)}; "
                             f"{type(self).__name__} keeps {list(self.state_keys)}")
        step = 0
        if self.has_step:
            steps = set()
            for e in entries:
                if "step" not in e:
                    raise ValueError(f"{where} lacks 'step'")
                s = float(np.asarray(e["step"]).reshape(()))
                if not (math.isfinite(s) and s >= 0 and s == int(s)):
                    raise ValueError(f"{where} has an invalid step {e['step']!r}")
                steps.add(int(s))
            if len(steps) != 1:
                raise ValueError(f"{where} has different steps for different parameters")
            step = steps.pop()
        gstate = {"step": step, "keys": keys}
        for key in self.scalar_state:  # one value per group, as the step
            values = {float(np.asarray(e[key]).reshape(())) if key in e else None
                      for e in entries}
            if None in values or len(values) != 1 or not math.isfinite(min(values)):
                raise ValueError(f"{where} needs one finite '{key}' for all its parameters")
            gstate[key] = values.pop()
        writes = []
        for p, e in zip(params, entries):
            for key in keys:
                value = np.asarray(e[key])
                if value.shape != p.shape:
                    raise ValueError(f"{where}: {key} must have shape {p.shape}, got "
                                     f"{value.shape}")
                if value.dtype.kind not in "fiu":
                    raise TypeError(f"{where}: {key} must be numeric, got dtype {value.dtype}")
                writes.append((p, key, value))
        return gstate, writes
