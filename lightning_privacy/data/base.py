"""PrivacyDataModule: official parts -> pooled data -> membership roles -> one loader per role."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence, Union

import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from lightning_privacy.data.splits import ROLES, MembershipSplits, Protocol, Size, draw_splits
from lightning_privacy.errors import DatasetNotFoundError, UserInputError


class TensorImages(Dataset):
    """Images held in memory as a uint8 tensor (N, C, H, W) with integer labels; with ``size``, each
    image is resized (bilinear, antialiased) to a ``size`` x ``size`` square when it is read."""

    def __init__(self, images: Tensor, labels: Tensor, *, size: Optional[int] = None) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"expected uint8 images (N, C, H, W) and N labels; got {tuple(images.shape)}, "
                             f"{images.dtype} and {tuple(labels.shape)}")
        self.images, self.targets = images, labels.long()
        self.size = None if size is None or tuple(images.shape[2:]) == (size, size) else size

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        if self.size is not None:
            x = torch.nn.functional.interpolate(x[None].float(), size=(self.size, self.size), mode="bilinear",
                                                antialias=True, align_corners=False)[0]
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        return x, int(self.targets[i])


class ImageFiles(Dataset):
    """Images decoded lazily from files (JPEG, PNG, ...), converted to a mode and resized to a square."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], *, size: int, mode: str = "RGB") -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} image paths but {len(labels)} labels")
        self.paths, self.targets = list(paths), torch.as_tensor(list(labels), dtype=torch.long)
        self.size, self.mode = size, mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        try:
            with Image.open(self.paths[i]) as img:
                img = img.convert(self.mode)
                if img.size != (self.size, self.size):
                    img = img.resize((self.size, self.size), Image.BILINEAR)
                data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        except OSError as e:
            raise DatasetNotFoundError(f"cannot decode image {self.paths[i]}: {e}; the dataset looks corrupt, "
                                       "re-extract it from its original archive") from e
        return data.view(self.size, self.size, -1).permute(2, 0, 1).contiguous(), int(self.targets[i])


@dataclass
class DatasetParts:
    """A dataset's official parts as distributed; ``test`` is None where there is no labelled test split."""

    train: Dataset
    test: Optional[Dataset] = None


class Normalized(Dataset):
    """Maps a role's uint8 images to normalized float tensors."""

    def __init__(self, base: Dataset, mean: Tensor, std: Tensor) -> None:
        self.base, self.mean, self.std = base, mean, std

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.base[i]
        return (x.float().div_(255.0) - self.mean) / self.std, y


def find_dir(root: Path, candidates: Sequence[str], required: Sequence[str], dataset: str,
             hint: str) -> Path:
    """The first of ``root/<candidate>`` holding every ``required`` entry, else a DatasetNotFoundError
    that names what was expected and where."""
    tried = []
    for rel in candidates:
        d = root / rel if rel else root
        tried.append(str(d))
        if all((d / name).exists() for name in required):
            return d
    raise DatasetNotFoundError(
        f"{dataset} not found: expected {', '.join(required)} in one of: {'; '.join(tried)}. {hint}"
    )


def adapted_for_training(trainer: Any, loader: DataLoader) -> DataLoader:
    """The members loader as the model being fit wants it: a model with ``training_loader`` (DP-SGD's Poisson
    sampling) adapts it."""
    model = getattr(trainer, "lightning_module", None) if trainer is not None else None
    adapt = getattr(model, "training_loader", None)
    return adapt(loader) if callable(adapt) else loader


class PrivacyDataModule(LightningDataModule, ABC):
    """Base datamodule: a subclass names its files and statistics and implements ``load_parts``.

    Train loader = members, val loader = validation, test loader = non-members (the test set);
    ``role_dataloader`` serves any role to the audits.
    """

    dataset_name: ClassVar[str]
    num_classes: ClassVar[int]
    channels: ClassVar[int]
    default_size: ClassVar[int]
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]

    def __init__(
        self,
        root: str = "data",
        protocol: Protocol = "paper",
        members: Size = None,
        nonmembers: Size = None,
        validation: Size = 0.1,
        shadow: Size = 0,
        reference: Size = 0,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        image_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise UserInputError(f"batch sizes must be >= 1; got {batch_size} and {eval_batch_size}")
        self.save_hyperparameters(logger=False)
        self.root = Path(root).expanduser()
        self.protocol = protocol
        self.sizes = {"members": members, "nonmembers": nonmembers, "validation": validation,
                      "shadow": shadow, "reference": reference}
        self.test_fraction, self.seed = test_fraction, seed
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.image_size = image_size or self.default_size
        self.splits: Optional[MembershipSplits] = None
        self._pool: Optional[Dataset] = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @abstractmethod
    def load_parts(self) -> DatasetParts:
        """Read the official parts from ``self.root``; raise DatasetNotFoundError naming the expected files."""

    def prepare_data(self) -> None:
        """Nothing is downloaded; files are checked when ``setup`` reads them."""

    def setup(self, stage: Optional[str] = None) -> None:
        if self._pool is not None:
            return
        parts = self.load_parts()
        test = parts.test if parts.test is not None else TensorImages(
            torch.empty(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8),
            torch.empty(0, dtype=torch.long))
        labels = torch.cat([torch.as_tensor(parts.train.targets), torch.as_tensor(test.targets)]).long()
        is_test = torch.zeros(labels.numel(), dtype=torch.bool)
        is_test[len(parts.train):] = True
        self._pool = ConcatDataset([parts.train, test])
        self.pool_labels = labels
        self.splits = draw_splits(labels=labels, is_official_test=is_test, protocol=self.protocol,
                                  sizes=self.sizes, seed=self.seed, test_fraction=self.test_fraction)

    def role_dataset(self, role: str) -> Dataset:
        if role not in ROLES:
            raise UserInputError(f"unknown role {role!r}; roles are {list(ROLES)}")
        if self.splits is None or self._pool is None:
            self.setup()
        return self.index_dataset(self.splits.indices[role])

    def role_indices(self, role: str) -> Tensor:
        """The pool indices of a role, in the order its loaders serve them."""
        if self.splits is None:
            self.setup()
        return self.splits.indices[role]

    def index_dataset(self, indices: Tensor) -> Dataset:
        """Normalized samples at any pool indices (shadow and reference models train on such subsets)."""
        if self._pool is None:
            self.setup()
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return Normalized(Subset(self._pool, indices.tolist()), mean, std)

    def index_dataloader(self, indices: Tensor, *, batch_size: Optional[int] = None,
                         shuffle: bool = False) -> DataLoader:
        return DataLoader(self.index_dataset(indices), batch_size=batch_size or self.eval_batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def role_labels(self, role: str) -> Tensor:
        if self.splits is None:
            self.setup()
        return self.pool_labels[self.splits.indices[role]]

    def role_dataloader(self, role: str, *, batch_size: Optional[int] = None, shuffle: bool = False) -> DataLoader:
        return self.index_dataloader(self.role_indices(role), batch_size=batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        loader = self.index_dataloader(self.training_indices(), batch_size=self.batch_size, shuffle=True)
        return adapted_for_training(self.trainer, loader)

    def training_indices(self) -> Tensor:
        """The members the model trains on: all of them, less those ``exclude_from_training`` held back."""
        members = self.role_indices("members")
        excluded = getattr(self, "_excluded", None)
        return members if excluded is None else members[~torch.isin(members, excluded)]

    def exclude_from_training(self, indices: Tensor) -> None:
        """Keep these members out of the training loader (the one-run ε audit's OUT canaries)."""
        self._excluded = indices.long()

    def val_dataloader(self) -> Union[DataLoader, list]:
        if self.splits is None:
            self.setup()
        return self.role_dataloader("validation") if self.splits.sizes()["validation"] else []

    def test_dataloader(self) -> DataLoader:
        return self.role_dataloader("nonmembers")

    def predict_dataloader(self) -> DataLoader:
        return self.role_dataloader("nonmembers")

