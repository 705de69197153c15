"""Save and load: ``state_dict`` / ``load_state_dict`` and pickling for layers with parameters.

The keys are PyTorch's (``weight``, ``bias``), so that a ``torch.nn.Conv2d``
state dict loads into ``xpconv.Conv2d(xp=torch)`` and back. A layer pickles
with its namespace and dtype stored by name (a module object cannot be
pickled) and restored on load; the forward pass's saved input is left out,
as it is a cache for the next ``backward`` and not part of the model.
"""

from __future__ import annotations

import importlib
from typing import Any

from xpconv._backend import dtype_name, namespace_of, resolve_dtype, to_numpy

Array = Any

#: Attributes that are not pickled: the forward pass's cache.
_TRANSIENT = ("_input",)


class Stateful:
    """Mixin for a layer with ``xp``, ``device``, ``dtype``, ``weight``, ``bias`` and ``_param``."""

    xp: Any
    device: Any
    dtype: Any
    weight: Array
    bias: Array | None

    def _param(self, values: Any) -> Array:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Array]:
        """The parameters by PyTorch's names: ``weight`` and, if the layer has one, ``bias``.

        The values are the layer's own arrays (not copies), as in PyTorch.
        """
        state = {"weight": self.weight}
        if self.bias is not None:
            state["bias"] = self.bias
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Set the parameters from ``state`` (arrays of any library, shapes as the layer's).

        The values are copied into the layer's library, dtype and device.
        With ``strict`` (the default), missing and unexpected keys are a
        ``ValueError``; otherwise they are ignored.
        """
        if not isinstance(state, dict):
            msg = f"state must be a dict of arrays (from state_dict()), got {type(state).__name__}"
            raise TypeError(msg)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            msg = (
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                f"unexpected keys {unexpected}; expected exactly {sorted(own)}"
            )
            raise ValueError(msg)
        loaded = {}
        for key in sorted(set(own) & set(state)):
            expected = tuple(own[key].shape)
            value = state[key]
            shape = tuple(getattr(value, "shape", ()))
            if shape != expected:
                msg = f"state[{key!r}] must have shape {expected}, got {shape}"
                raise ValueError(msg)
            loaded[key] = self._param(self._same_library(value))
        for key, value in loaded.items():  # only once every value has been checked
            setattr(self, key, value)

    def _same_library(self, value: Any) -> Any:
        """``value`` as something the layer's namespace can take with ``asarray``."""
        try:
            if namespace_of(value=value) is self.xp:
                return value
        except TypeError:
            return value  # nested lists, scalars: asarray decides
        if hasattr(value, "detach"):  # a torch tensor that may require grad
            value = value.detach()
        return to_numpy(value)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _TRANSIENT}
        state["xp"] = self.xp.__name__
        state["dtype"] = dtype_name(self.dtype)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["xp"] = importlib.import_module(state["xp"])
        state["dtype"] = resolve_dtype(state["dtype"], state["xp"])
        self.__dict__.update(state)
        for name in _TRANSIENT:
            self.__dict__.setdefault(name, None)
