import dataclasses

import pytest
import torch

from lightning_privacy.canonical import canonical, canonical_hash, canonical_json


@dataclasses.dataclass
class Net:
    class_path: str = "m.Net"
    widths: tuple = (32, 64)


def test_equal_settings_give_equal_keys():
    a = {"input_shape": (1, 14, 14), "lr": 1, "net": {"init_args": {"w": [1, 2]}, "class_path": "x.Y"}, "p": None}
    b = {"p": None, "net": {"class_path": "x.Y", "init_args": {"w": (1, 2)}}, "lr": 1.0, "input_shape": [1, 14, 14]}
    assert canonical_json(a) == canonical_json(b) and canonical_hash(a) == canonical_hash(b)
    assert canonical_hash(Net()) == canonical_hash(Net(widths=[32, 64]))
    assert canonical_hash(torch.arange(4)) == canonical_hash(torch.arange(4).clone())


@pytest.mark.parametrize("other", [
    {"input_shape": (1, 14, 15)}, {"input_shape": (1, 14, 14), "lr": 0.1}, {"input_shape": "(1, 14, 14)"},
    {"input_shape": (1, 14, 14), "x": None},
])
def test_different_settings_give_different_keys(other):
    assert canonical_hash({"input_shape": (1, 14, 14)}) != canonical_hash(other)


def test_tensors_differ_by_content_dtype_and_shape():
    keys = {canonical_hash(t) for t in (torch.zeros(4), torch.zeros(4, dtype=torch.float64), torch.zeros(2, 2),
                                        torch.tensor([0.0, 0.0, 0.0, 1.0]))}
    assert len(keys) == 4


def test_objects_without_a_canonical_form_are_refused():
    with pytest.raises(TypeError, match="no canonical form"):
        canonical({"model": object()})
