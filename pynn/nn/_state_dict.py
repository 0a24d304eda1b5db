"""A module's state as torch keeps it: ``state_dict`` (parameters and persistent buffers by
dotted name, torch's keys and order) and ``load_state_dict`` (every key, shape and dtype checked
before the first write). ``Module`` inherits it; it walks the module through ``named_modules``
and the registration tables, so it works for any nesting."""
import collections
import collections.abc

import numpy as np

from .parameter import Parameter


class IncompatibleKeys(collections.namedtuple("IncompatibleKeys",
                                              ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict(strict=False)`` skipped (torch's return value)."""


class StateDict:
    """``state_dict`` / ``load_state_dict`` of ``Module`` (see the module doc)."""

    def state_dict(self, prefix="", keep_vars=False):
        """Parameters and persistent buffers by dotted name, torch's keys and order.

        Values are copies (``keep_vars=True``: the Parameter objects and buffer arrays
        themselves), so a state dict taken before training still holds the old values.
        """
        out = collections.OrderedDict()
        # like torch: a module held twice appears under both names
        for mod_prefix, module in self.named_modules(prefix=prefix.rstrip("."),
                                                     remove_duplicate=False):
            base = f"{mod_prefix}." if mod_prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[base + name] = p if keep_vars else p.data.copy()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    out[base + name] = b if keep_vars else b.copy()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict``'s arrays into this module's parameters and buffers.

        Every key, shape and dtype is checked before anything is written: a bad state dict
        raises and leaves the module unchanged. Values may be NumPy arrays or anything
        ``numpy.asarray`` takes (torch CPU tensors from ``state_dict()``). Floating values must
        have the target's dtype (no silent casts); integer buffers accept any integer dtype.

        Returns
        -------
        IncompatibleKeys(missing_keys, unexpected_keys); with ``strict=True`` (default) any
        missing or unexpected key raises KeyError instead.
        """
        writes, missing, unexpected = self._state_writes(state_dict, strict)
        for dest, value in writes:  # every entry passed: now write
            dest[...] = value
        return IncompatibleKeys(missing, unexpected)

    def _state_writes(self, state_dict, strict):
        """Check ``state_dict`` against this module: ([(destination, value)], missing keys,
        unexpected keys); raises on any bad entry. Writes nothing."""
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        targets = self.state_dict(keep_vars=True)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"Error(s) in loading state_dict for {type(self).__name__}: "
                f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
            )
        writes = []
        for key, target in targets.items():
            if key in state_dict:
                dest = target.data if isinstance(target, Parameter) else target
                writes.append((dest, _checked_value(key, state_dict[key], dest)))
        return writes, missing, unexpected


def _checked_value(key, value, dest):
    """``value`` as an ndarray ready to copy into ``dest``, or an error naming ``key``."""
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except Exception as exc:  # e.g. a torch tensor that still requires grad
            raise TypeError(f"state_dict[{key!r}]: cannot convert {type(value).__name__} to "
                            f"an array ({exc})") from None
    if value.shape != dest.shape:
        raise ValueError(f"state_dict[{key!r}] has shape {value.shape}, the module's is "
                         f"{dest.shape}")
    if dest.dtype.kind == "f":
        if value.dtype != dest.dtype:
            raise TypeError(f"state_dict[{key!r}] has dtype {value.dtype}, the module's is "
                            f"{dest.dtype}; convert it first")
    elif dest.dtype.kind in "iu":
        if value.dtype.kind not in "iu":
            raise TypeError(f"state_dict[{key!r}] must hold integers, got dtype {value.dtype}")
    return value
