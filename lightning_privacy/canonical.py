"""One canonical serialisation of configuration values, and its hash: equal settings give equal keys.

Used for the model bank's cache key (and meant for any config hash, e.g. a sweep's): mappings are keyed by sorted
string keys, lists and tuples are the same sequence (``(1, 14, 14) == [1, 14, 14]``), numbers compare as Python
does (``1 == 1.0``), dataclasses are their fields under their class name, tensors and arrays their dtype, shape
and a digest of their bytes. An object with no canonical form is an error, never a silently unstable key.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from pathlib import PurePath
from typing import Any

import numpy as np
import torch


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _number(x: float) -> Any:
    if math.isnan(x) or math.isinf(x):
        return {"__float__": repr(x)}
    if x.is_integer() and abs(x) < 2**53:
        return int(x)  # 1.0 and 1 are one value
    return x  # json writes the shortest round-trip repr: deterministic


def canonical(value: Any) -> Any:
    """A JSON-serialisable form of ``value`` that depends on its content only."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _number(float(value))
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().view(-1)
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {"__tensor__": str(value.dtype), "shape": list(value.shape), "sha256": _digest(data)}
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        return {"__ndarray__": str(a.dtype), "shape": list(a.shape), "sha256": _digest(a.tobytes())}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value)}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"__dataclass__": f"{cls.__module__}.{cls.__qualname__}",
                "fields": {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict) or hasattr(value, "items") and callable(value.items):
        items = [(str(k), canonical(v)) for k, v in value.items()]
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise TypeError(f"mapping keys collide once written as strings: {sorted(keys)}")
        return dict(sorted(items))
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(value, type):
        return {"__type__": f"{value.__module__}.{value.__qualname__}"}
    raise TypeError(f"no canonical form for a {type(value).__module__}.{type(value).__qualname__}; give a "
                    "config value (numbers, strings, None, lists, mappings, dataclasses, tensors)")


def canonical_json(value: Any) -> str:
    """``canonical(value)`` as compact JSON with sorted keys."""
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_hash(value: Any, length: int = 20) -> str:
    """The first ``length`` hex digits of the sha256 of ``canonical_json(value)``."""
    return _digest(canonical_json(value).encode())[:length]
