"""The protocol every classifier network of the project follows, and building one from ``{class_path, init_args}``.

A network is an ``nn.Module`` built as ``cls(input_shape=..., num_classes=..., **init_args)`` (plus ``dropout=``
when a defense asks for dropout between its weighted layers) with:

* ``penultimate(x)``: the last layer's input, the learned representation (DAP's adversarial step and
  last-layer dropout work on it);
* ``last_layer``: the final ``nn.Linear`` (``forward(x) == last_layer(penultimate(x))``; Reg's L2 term, DAP's
  second update);
* ``named_layers()``: ``[(name, module), ...]`` of the weighted layers from input to output (the layer-wise
  model inversion attack picks its layers by these names).

Defenses reach the network only through this protocol, so any network that follows it can be chosen with
``model.init_args.net`` (``conf/net/*.yaml``).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

from torch import Tensor, nn

from lightning_privacy.errors import UserInputError

DEFAULT_NET: dict[str, Any] = {"class_path": "lightning_privacy.models.cnn.PaperCNN", "init_args": {}}
"""The papers' CNN (DP-vs-regularization paper Fig. 1, DAP paper Fig. 3): the default of every defense."""


@runtime_checkable
class ClassifierNet(Protocol):
    """What defenses and attacks may rely on in a classifier network (see the module docstring)."""

    @property
    def last_layer(self) -> nn.Linear: ...

    def penultimate(self, x: Tensor) -> Tensor: ...

    def named_layers(self) -> list[tuple[str, nn.Module]]: ...

    def __call__(self, x: Tensor) -> Tensor: ...


def net_spec(net: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """``net`` as plain data ``{"class_path": str, "init_args": dict}`` (``None``: the papers' CNN)."""
    if net is None:
        return {"class_path": DEFAULT_NET["class_path"], "init_args": {}}
    if not isinstance(net, Mapping) or not isinstance(net.get("class_path"), str) or \
            set(net) - {"class_path", "init_args"}:
        raise UserInputError(f"net must be {{class_path: <module.Class>, init_args: {{...}}}}, e.g. "
                             f"{{class_path: {DEFAULT_NET['class_path']}}} or a conf/net/*.yaml file; got {net!r}")
    init_args = net.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise UserInputError(f"net.init_args must be a mapping of the network's arguments; got {init_args!r}")
    for reserved in ("input_shape", "num_classes"):
        if reserved in init_args:
            raise UserInputError(f"net.init_args sets {reserved!r}, which the defense passes to the network itself "
                                 f"(from model.init_args.{reserved}); remove it from net.init_args")
    return {"class_path": net["class_path"], "init_args": _plain(dict(init_args))}


def _plain(value: Any) -> Any:
    """Tuples as lists, mappings as dicts: the spec stays YAML/JSON data (hparams, checkpoints, cache keys)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        cls = None
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise UserInputError(f"net.class_path {class_path!r} is not an importable nn.Module class "
                             f"(expected e.g. {DEFAULT_NET['class_path']!r})")
    return cls


def build_net(net: Optional[Mapping[str, Any]], *, input_shape: Sequence[int], num_classes: int,
              dropout: float = 0.0) -> nn.Module:
    """A fresh network from its spec, for these input shape and classes; ``dropout`` > 0 is passed on."""
    spec = net_spec(net)
    cls = _import(spec["class_path"])
    kwargs = dict(spec["init_args"])
    if dropout:
        kwargs["dropout"] = dropout
    try:
        model = cls(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    except TypeError as error:
        raise UserInputError(f"could not build {spec['class_path']} with input_shape, num_classes"
                             f"{', dropout' if dropout else ''} and init_args {spec['init_args']}: {error}") from error
    except ValueError as error:
        raise UserInputError(f"{spec['class_path']}: {error}") from error
    missing = [name for name in ("penultimate", "last_layer", "named_layers") if not hasattr(model, name)]
    if missing or not isinstance(model.last_layer, nn.Linear):
        raise UserInputError(f"{spec['class_path']} does not follow the network protocol "
                             f"(lightning_privacy/models/net.py): missing {missing or ['a Linear last_layer']}")
    return model
