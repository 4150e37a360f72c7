"""Seeded, disjoint membership roles over a pooled dataset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Optional, Union

import numpy as np
import torch
from jsonargparse.typing import ClosedUnitInterval, register_type, restricted_number_type
from torch import Tensor

from lightning_privacy.errors import UserInputError

ROLES = ("members", "nonmembers", "validation", "shadow", "reference")
Protocol = Literal["paper", "pooled"]
RoleCount = restricted_number_type("RoleCount", int, [(">=", 0), ("<", 2**62)],
                                   docstring="a role size as a count of samples (an int >= 0)")


def _count(value: object) -> int:
    """Serialises a count; refuses a fraction (jsonargparse's int serialiser would write 0.2 as 0)."""
    return int(RoleCount(value))


register_type(RoleCount, serializer=_count)
Size = Optional[Union[RoleCount, ClosedUnitInterval]]
"""A role's size: an int is a count, a float in [0, 1] a fraction of the part it is drawn from,
None takes what is left (at most one role per part). Restricted types, not ``Union[int, float]``: typing
caches Unions as sets, so after another library builds ``Union[float, int]`` a YAML ``250`` would parse as 250.0."""


@dataclass(frozen=True)
class MembershipSplits:
    """Sorted pool indices per role; roles never share an index."""

    seed: int
    protocol: str
    indices: Mapping[str, Tensor]

    def sizes(self) -> dict[str, int]:
        return {role: int(self.indices[role].numel()) for role in ROLES}

    def digest(self) -> str:
        """A short sha256 of the roles and their indices: equal digests mean equal splits."""
        h = hashlib.sha256()
        for role in ROLES:
            h.update(role.encode())
            h.update(self.indices[role].to(torch.int64).numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        arrays = {role: self.indices[role].numpy() for role in ROLES}
        meta = json.dumps({"seed": self.seed, "protocol": self.protocol, "digest": self.digest()})
        np.savez_compressed(path, meta=np.array(meta), **arrays)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "MembershipSplits":
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            indices = {role: torch.from_numpy(f[role]).long() for role in ROLES}
        return cls(seed=meta["seed"], protocol=meta["protocol"], indices=indices)


def stratified_order(labels: Tensor, generator: torch.Generator) -> Tensor:
    """A permutation of ``range(len(labels))`` whose every contiguous chunk is stratified by label
    (each class's share of a chunk is within one sample of its share of the whole)."""
    n = labels.numel()
    keys = torch.empty(n, dtype=torch.float64)
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        jitter = torch.rand(idx.numel(), generator=generator, dtype=torch.float64)
        keys[idx] = (torch.arange(idx.numel(), dtype=torch.float64) + jitter) / idx.numel()
    return torch.argsort(keys, stable=True)


def _resolve_sizes(specs: list[tuple[str, Size]], available: int, part: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    rest = [role for role, spec in specs if spec is None]
    if len(rest) > 1:
        raise UserInputError(f"only one role of the {part} part may take 'the rest' (size null); got {rest}")
    for role, spec in specs:
        if spec is None:
            continue
        if isinstance(spec, bool) or not isinstance(spec, (int, float)):
            raise UserInputError(f"size of role '{role}' must be an int count, a float fraction or null; got {spec!r}")
        if isinstance(spec, float):
            if not 0.0 <= spec <= 1.0:
                raise UserInputError(f"fraction for role '{role}' must be in [0, 1]; got {spec}")
            counts[role] = int(round(spec * available))
        else:
            if spec < 0:
                raise UserInputError(f"size of role '{role}' must be >= 0; got {spec}")
            counts[role] = spec
    taken = sum(counts.values())
    if taken > available:
        raise UserInputError(
            f"the {part} part has {available} samples but the roles ask for {taken} ({counts}); "
            "lower the role sizes"
        )
    if rest:
        counts[rest[0]] = available - taken
    return counts


def _carve(order: Tensor, specs: list[tuple[str, Size]], part: str) -> dict[str, Tensor]:
    counts = _resolve_sizes(specs, order.numel(), part)
    out, start = {}, 0
    for role, _ in specs:
        out[role] = order[start : start + counts[role]]
        start += counts[role]
    return out


def draw_splits(
    *,
    labels: Tensor,
    is_official_test: Tensor,
    protocol: Protocol,
    sizes: Mapping[str, Size],
    seed: int,
    test_fraction: float = 0.2,
) -> MembershipSplits:
    """Split a pool into the five roles.

    ``paper`` (the DAP paper's protocol): non-members come from the official test part, the other
    roles from the official train part (validation, shadow and reference carved first, members get
    what is left unless sized). A pool with no official test part gets a seeded stratified one of
    ``test_fraction``. ``pooled``: all roles are drawn from the whole pool, stratified.
    """
    if labels.ndim != 1 or labels.shape != is_official_test.shape:
        raise ValueError("labels and is_official_test must be 1-D tensors of the same length")
    unknown = set(sizes) - set(ROLES)
    if unknown:
        raise UserInputError(f"unknown roles {sorted(unknown)}; roles are {list(ROLES)}")
    g = torch.Generator().manual_seed(seed)
    # An unsized role is empty, but members take the rest and, in the paper protocol, non-members the test part.
    spec = {role: sizes.get(role, None if role == "members" or (role == "nonmembers" and protocol == "paper") else 0)
            for role in ROLES}
    pool = torch.arange(labels.numel())
    if protocol == "paper":
        if not bool(is_official_test.any()):
            if not 0.0 < test_fraction < 1.0:
                raise UserInputError(f"test_fraction must be in (0, 1); got {test_fraction}")
            order = stratified_order(labels, g)
            n_test = int(round(test_fraction * labels.numel()))
            is_official_test = torch.zeros_like(is_official_test, dtype=torch.bool)
            is_official_test[order[:n_test]] = True
        train_part = pool[~is_official_test]
        test_part = pool[is_official_test]
        train_order = train_part[stratified_order(labels[train_part], g)]
        test_order = test_part[stratified_order(labels[test_part], g)]
        roles = _carve(
            train_order,
            [("validation", spec["validation"]), ("shadow", spec["shadow"]), ("reference", spec["reference"]),
             ("members", spec["members"])],
            "official train",
        )
        roles.update(_carve(test_order, [("nonmembers", spec["nonmembers"])], "official test"))
    elif protocol == "pooled":
        roles = _carve(pool[stratified_order(labels, g)], [(role, spec[role]) for role in ROLES], "pooled")
    else:
        raise UserInputError(f"unknown split protocol {protocol!r}; choose 'paper' or 'pooled'")
    for role in ("members", "nonmembers"):
        if roles[role].numel() == 0:
            raise UserInputError(f"role '{role}' is empty: give it a size > 0 (or null for the rest)")
    indices = {role: torch.sort(roles[role]).values for role in ROLES}
    return MembershipSplits(seed=seed, protocol=protocol, indices=indices)
