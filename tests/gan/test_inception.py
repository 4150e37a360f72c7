"""The InceptionV3 loader of gan/fid, gan/is, gan/intra_fid: a local pytorch-fid weights file (never downloaded),
checked by keys, shapes and hash; absent, one warning (or an error when required)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_privacy.callbacks.gan_fidelity import GanFidelity, GanFidelityConfig
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.fidelity import feature_outputs, frechet_distance, inception_score
from lightning_privacy.models.inception import (
    INCEPTION_FILE,
    InceptionLogits,
    InceptionPool,
    fid_inception_network,
    find_inception_weights,
    load_inception,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict of the right keys and shapes: a random init of the same modules (not the real weights)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    torch.save(fid_inception_network().state_dict(), path)
    return path


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_loader_accepts_a_state_dict_of_the_right_shapes(weights: Path) -> None:
    extractor = load_inception(weights, check_hash=False)
    pool, logits = extractor(torch.rand(1, 1, 28, 28))  # grayscale 28x28: 3 channels, 299 px inside
    assert pool.shape == (1, 2048) and logits.shape == (1, 1008)


@pytest.mark.slow
def test_features_match_pytorch_fid_and_torchmetrics(weights: Path) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    extractor = load_inception(weights, check_hash=False)
    torch.manual_seed(1)
    real, fake = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    pool_real, _ = feature_outputs(extractor, real)
    pool_fake, logits_fake = feature_outputs(extractor, fake)
    assert pool_real.shape == (3, 2048) and logits_fake.shape == (3, 1008)
    # the logits are fid_inception_v3()'s forward on pytorch-fid's resized, [-1, 1] input
    net = fid_inception_network()
    net.load_state_dict(torch.load(weights, weights_only=True))
    x = F.interpolate(fake.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), logits_fake, atol=1e-4)
    # the same numbers as the modules passed as feature= to torchmetrics
    fid = FrechetInceptionDistance(feature=InceptionPool(extractor), normalize=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert float(fid.compute()) == pytest.approx(frechet_distance(pool_real, pool_fake), rel=1e-4)
    score = InceptionScore(feature=InceptionLogits(extractor), splits=1)
    score.update(fake)
    assert float(score.compute()[0]) == pytest.approx(inception_score(logits_fake, splits=1)[0], rel=1e-5)


def test_loader_rejects_a_hash_mismatch(weights: Path) -> None:
    with pytest.raises(UserInputError, match="sha256 starts with .*not 6726825d.*inception_check_hash: false"):
        load_inception(weights)


def test_loader_rejects_missing_and_mis_shaped_keys(tmp_path: Path) -> None:
    state = fid_inception_network().state_dict()
    del state["Mixed_7c.branch_pool.conv.weight"]
    state["fc.weight"] = torch.zeros(10, 2048)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(UserInputError, match="not the state dict of pytorch-fid's FID Inception") as e:
        load_inception(tmp_path / "wrong.pth", check_hash=False)
    assert "missing keys: Mixed_7c.branch_pool.conv.weight" in str(e.value)
    assert "fc.weight (10, 2048) (expected (1008, 2048))" in str(e.value)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(UserInputError, match="holds a list"):
        load_inception(tmp_path / "list.pth", check_hash=False)


def test_found_in_a_configured_folder_or_torch_home(weights: Path, empty_torch_home: Path) -> None:
    assert find_inception_weights() is None
    assert find_inception_weights(weights.parent) == weights
    with pytest.raises(UserInputError, match="does not exist"):
        find_inception_weights(weights.parent / "nowhere.pth")
    hub = empty_torch_home / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / INCEPTION_FILE).symlink_to(weights)
    assert find_inception_weights() == hub / INCEPTION_FILE


def test_absent_weights_warn_once_and_skip_the_inception_metrics(empty_torch_home: Path, tmp_path: Path) -> None:
    from tests.gan.conftest import tiny_digits, tiny_trainer
    from lightning_privacy.defenses.gan.gan import GAN

    torch.manual_seed(0)
    dm = tiny_digits(members=64, shadow=100, validation=40)
    audit = GanFidelity(GanFidelityConfig(samples=40, classifier_epochs=1, downstream_samples=40,
                                          downstream_epochs=1, is_splits=2, cache_dir=str(tmp_path)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(1, [audit], limit_train_batches=1).fit(GAN(input_shape=(1, 16, 16)), datamodule=dm)
    ours = [w for w in caught if INCEPTION_FILE in str(w.message)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "91 MiB" in message and str(empty_torch_home / "hub" / "checkpoints") in message
    m = audit.last_result.metrics
    assert "gan/fid_domain" in m and not {"gan/fid", "gan/is", "gan/intra_fid"} & set(m)
    assert audit.last_result.tags["gan_fidelity.inception"] == "absent"


def test_require_inception_turns_the_warning_into_an_error(empty_torch_home: Path) -> None:
    with pytest.raises(UserInputError, match=f"require_inception is true but {INCEPTION_FILE} was not found"):
        GanFidelity(GanFidelityConfig(require_inception=True)).prepare_inception()


def test_a_tiny_fit_logs_gan_fid_and_gan_is(weights: Path, empty_torch_home: Path, tmp_path: Path) -> None:
    from tests.gan.conftest import tiny_digits, tiny_trainer
    from lightning_privacy.defenses.gan.gan import GAN

    torch.manual_seed(0)
    dm = tiny_digits(members=64, shadow=100, validation=40)
    audit = GanFidelity(GanFidelityConfig(samples=40, classifier_epochs=1, downstream_samples=40, downstream_epochs=1,
                                          is_splits=2, inception_weights=str(weights), inception_check_hash=False,
                                          inception_samples=8, cache_dir=str(tmp_path)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(1, [audit], limit_train_batches=1).fit(GAN(input_shape=(1, 16, 16)), datamodule=dm)
    assert not [w for w in caught if INCEPTION_FILE in str(w.message)]
    m = audit.last_result.metrics
    assert m["gan/fid"] > 0 and 1.0 <= m["gan/is"] <= 1008.0
    assert audit.last_result.tags["gan_fidelity.inception"] == str(weights)
