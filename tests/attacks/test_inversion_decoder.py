"""The layer-wise decoder inversion attack (DP-vs-regularization paper, Sec. 4) on a tiny trained CNN."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from lightning_privacy.attacks.inversion.decoder import (
    BLACKBOX, activations, capture_module, decoder_inversion, select_layers)
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.cnn import PaperCNN
from lightning_privacy.models.decoder import Decoder

MEAN, STD = 0.3051, 0.3770


@pytest.fixture(scope="module")
def trained():
    """PaperCNN (8 and 16 channels) trained 30 epochs on 300 digits; attacker and non-member sets beside it."""
    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images / 16.0).float().unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    x = (pixels - MEAN) / STD
    torch.manual_seed(0)
    net = PaperCNN(input_shape=(1, 8, 8), num_classes=10, channels=(8, 16, 16), hidden=32)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(30):
        for batch in torch.randperm(300).split(32):
            loss = F.cross_entropy(net(x[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    sets = {"members": (x[:300], pixels[:300]), "attacker": (x[300:900], pixels[300:900]),
            "nonmembers": (x[900:1100], pixels[900:1100])}
    return net, sets


def test_the_first_conv_reconstructs_better_than_the_prediction_layer(trained):
    net, sets = trained
    result = decoder_inversion(net, attacker=sets["attacker"], layers=["features.0", "prediction"],
                               evaluate={"members": sets["members"], "nonmembers": sets["nonmembers"]},
                               epochs=15, width=32)
    assert result.points == ["features.0", "prediction", BLACKBOX]
    first, last = result.scores["features.0"], result.scores["prediction"]
    for split in ("members", "nonmembers"):
        assert first[split]["mse"] < 0.5 * last[split]["mse"]
        assert first[split]["ssim"] > last[split]["ssim"]
    assert result.reconstructions["features.0"]["members"].shape == (8, 1, 8, 8)


def test_white_box_points_are_read_after_their_activation(trained):
    net, sets = trained
    assert isinstance(capture_module(net, "features.0"), nn.ReLU)
    assert capture_module(net, "prediction") is net.prediction
    a = activations(net, sets["members"][0][:5], layer="features.0")
    assert a.shape == (5, 8, 8, 8) and a.min() >= 0
    assert torch.allclose(a, net.features[1](net.features[0](sets["members"][0][:5])))
    probs = activations(net, sets["members"][0][:5])
    assert torch.allclose(probs, net(sets["members"][0][:5]).softmax(-1))
    pooled = activations(net, sets["members"][0][:5], layer="features.2")
    assert pooled.shape == (5, 8, 4, 4)
    released = activations(net, sets["members"][0][:5], release=lambda z: torch.ones_like(z) / z.shape[1])
    assert torch.allclose(released, torch.full((5, 10), 0.1))


def test_unknown_layer_lists_the_valid_ones(trained):
    net, _ = trained
    with pytest.raises(UserInputError, match=r"features\.0.*prediction"):
        select_layers(net, ["conv9"])
    assert select_layers(net, ["prediction", "features.0"]) == ["features.0", "prediction"]
    # the paper's Table 4 rows: conv, pool (x3), flatten + dense, prediction
    assert select_layers(net, None) == ["features.0", "features.2", "features.3", "features.5", "features.6",
                                        "features.8", "dense.1", "prediction"]


def test_a_network_without_layers_is_one_clear_error():
    with pytest.raises(UserInputError, match="named_layers"):
        select_layers(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), None)


@pytest.mark.parametrize("in_shape", [(10,), (8, 8, 8), (16, 2, 2), (32, 28, 28)])
def test_the_decoder_starts_from_any_layer_shape(in_shape):
    d = Decoder(in_shape, (1, 28, 28), width=16)
    out = d(torch.randn(3, *in_shape))
    assert out.shape == (3, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert isinstance(d.head[-1], nn.Sigmoid) and d.head[-2].out_channels == 1


def test_the_evaluation_classifier_is_cached_by_its_key(trained, tmp_path):
    from lightning_privacy.attacks.inversion.evaluator import attack_accuracy, evaluation_classifier

    _, sets = trained
    x, pixels = sets["attacker"]
    y = torch.from_numpy(load_digits().target[300:900]).long()
    kw = dict(num_classes=10, key={"split": "abc", "role": "reference"}, cache_dir=tmp_path, epochs=3)
    first = evaluation_classifier(x, y, **kw)
    assert len(list(tmp_path.glob("evaluator-*.pt"))) == 1
    second = evaluation_classifier(x, y, **kw)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    evaluation_classifier(x, y, **{**kw, "key": {"split": "other", "role": "reference"}})
    assert len(list(tmp_path.glob("evaluator-*.pt"))) == 2
    x_test, _ = sets["nonmembers"]
    y_test = torch.from_numpy(load_digits().target[900:1100]).long()
    assert attack_accuracy(first, x_test, y_test) > 0.5


@pytest.mark.parametrize("spec", [
    {"class_path": "lightning_privacy.models.class_dp_cnn.ClassDPCNN", "init_args": {"channels": [4, 8]}},
    {"class_path": "lightning_privacy.models.wrn.WideResNet", "init_args": {"depth": 10, "width": 1, "groups": 4}}])
def test_every_layer_of_every_configured_network_can_be_decoded(spec):
    from lightning_privacy.models.net import build_net

    net = build_net(spec, input_shape=(3, 16, 16), num_classes=5).eval()
    x = torch.randn(2, 3, 16, 16)
    for layer in select_layers(net, None):
        a = activations(net, x, layer=layer)
        assert a.shape[0] == 2
        assert Decoder(a.shape[1:], (3, 16, 16), width=8)(a).shape == (2, 3, 16, 16)


def test_the_decoder_is_not_stalled_by_the_scale_of_a_layer(trained):
    """Logits (or deep activations) 100× larger carry the same information: the decoder, whose input is
    standardized with the attacker's own activations, reconstructs from them as well as from the unscaled ones.
    Fed raw, the result depended on the scale (here 0.008 against 0.063; on real MNIST the decoders from the
    papers' CNN's last pooling layer and from an ERM model's logits stayed at the all-black image)."""
    import copy

    net, sets = trained
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled.prediction.weight.mul_(100.0)
        scaled.prediction.bias.mul_(100.0)
    kwargs = dict(attacker=sets["attacker"], evaluate={"nonmembers": sets["nonmembers"]}, layers=["prediction"],
                  blackbox=False, epochs=3, batch_size=32, width=16, seed=0)
    plain = decoder_inversion(net, **kwargs).scores["prediction"]["nonmembers"]["mse"]
    large = decoder_inversion(scaled, **kwargs).scores["prediction"]["nonmembers"]["mse"]
    black = float(sets["nonmembers"][1].pow(2).mean())
    assert large < 0.8 * black
    assert abs(large - plain) < 0.1 * plain


def test_the_decoder_standardizes_with_the_attacker_statistics_only():
    features = torch.tensor([[1.0, 0.0, 5.0], [3.0, 0.0, 5.0], [5.0, 0.0, 5.0]])
    d = Decoder((3,), (1, 8, 8), width=8).fit_input_stats(features)
    assert torch.allclose(d.in_mean, torch.tensor([3.0, 0.0, 5.0]))
    assert d.in_std[0] == 2.0 and d.in_std[1] > 0 and d.in_std[2] > 0  # dead / constant units: floored, no division by 0
    assert torch.isfinite(d(torch.tensor([[9.0, 1.0, -5.0]]))).all()


def test_a_spatial_input_is_standardized_per_channel():
    """Per channel over samples and positions, so the spatial pattern of a conv map reaches the decoder intact."""
    features = torch.zeros(4, 2, 3, 3)
    features[:, 0] = torch.arange(9.0).view(3, 3)  # channel 0: the same spatial ramp in every sample
    features[:, 1] = 7.0
    d = Decoder((2, 3, 3), (1, 8, 8), width=8).fit_input_stats(features)
    assert torch.allclose(d.in_mean[0], torch.full((3, 3), 4.0)) and torch.allclose(d.in_mean[1], torch.full((3, 3), 7.0))
    assert torch.allclose(d.in_std[0], features[:, 0].std().expand(3, 3))
