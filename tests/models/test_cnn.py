import pytest
import torch
from torch import nn

from lightning_privacy.errors import UserInputError
from lightning_privacy.models.class_dp_cnn import ClassDPCNN
from lightning_privacy.models.cnn import PaperCNN
from lightning_privacy.models.net import ClassifierNet, build_net, net_spec
from lightning_privacy.models.wrn import WideResNet


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 64, 64), (3, 96, 96), (1, 5, 7)])
def test_output_shape(shape):
    net = PaperCNN(shape, num_classes=7)
    assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_three_conv_pool_stages_dense_and_prediction():
    net = PaperCNN((1, 28, 28), 10)
    assert [type(m) for m in net.features if isinstance(m, (nn.Conv2d, nn.MaxPool2d))] == \
        [nn.Conv2d, nn.MaxPool2d] * 3
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [128, 10]
    assert net.prediction.out_features == 10


def test_dropout_between_weighted_layers():
    """DP-vs-regularization paper Sec. 3: after conv 1, after conv 2, once between conv 3 and the dense layer,
    after the dense layer: one dropout between each pair of consecutive weighted layers, never two in a row."""
    leaves = [m for m in PaperCNN(dropout=0.2).modules() if not list(m.children())]
    kinds = ["W" if isinstance(m, (nn.Conv2d, nn.Linear)) else "D" for m in leaves
             if isinstance(m, (nn.Conv2d, nn.Linear, nn.Dropout))]
    assert "".join(kinds) == "WDWDWDWDW"
    assert not any(isinstance(m, nn.Dropout) for m in PaperCNN().modules())


def test_bad_input():
    with pytest.raises(ValueError, match="input_shape"):
        PaperCNN((28, 28), 10)
    with pytest.raises(ValueError, match="dropout"):
        PaperCNN(dropout=1.0)


@pytest.mark.parametrize("cls, kwargs, shape", [
    (PaperCNN, {}, (1, 28, 28)),
    (ClassDPCNN, {}, (1, 28, 28)),
    (WideResNet, {"depth": 10, "width": 1}, (3, 16, 16)),
])
def test_networks_follow_the_protocol(cls, kwargs, shape):
    net = cls(input_shape=shape, num_classes=7, **kwargs)
    x = torch.randn(3, *shape)
    assert isinstance(net, ClassifierNet) and isinstance(net.last_layer, nn.Linear)
    assert torch.equal(net(x), net.last_layer(net.penultimate(x))) and net(x).shape == (3, 7)
    names = [name for name, _ in net.named_layers()]
    assert names and names[-1] == "prediction" and dict(net.named_modules())[names[0]] is net.named_layers()[0][1]


def test_class_dp_cnn_has_two_conv_and_two_dense_layers():
    layers = [m for _, m in ClassDPCNN().named_layers()]
    assert [type(m) for m in layers] == [nn.Conv2d, nn.Conv2d, nn.Linear, nn.Linear]


def test_wrn_16_4_uses_group_norm_and_its_widths():
    net = WideResNet()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert len(net.blocks) == 6 and net.last_layer.in_features == 256
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 1 + 6 * 2 + 3  # stem, blocks, 3 shortcuts


def test_build_net_from_plain_data_and_errors():
    net = build_net({"class_path": "lightning_privacy.models.class_dp_cnn.ClassDPCNN", "init_args": {"hidden": 8}},
                    input_shape=(1, 8, 8), num_classes=3)
    assert isinstance(net, ClassDPCNN) and net.last_layer.in_features == 8
    assert isinstance(build_net(None, input_shape=(1, 8, 8), num_classes=3), PaperCNN)
    with pytest.raises(UserInputError, match="not an importable"):
        build_net({"class_path": "nowhere.Net"}, input_shape=(1, 8, 8), num_classes=3)
    with pytest.raises(UserInputError, match="passes to the network itself"):
        net_spec({"class_path": "lightning_privacy.models.cnn.PaperCNN", "init_args": {"num_classes": 3}})
    with pytest.raises(UserInputError, match="network protocol"):
        build_net({"class_path": "torch.nn.Identity"}, input_shape=(1, 8, 8), num_classes=3)
    assert net_spec({"class_path": "x.Y", "init_args": {"channels": (1, 2)}})["init_args"]["channels"] == [1, 2]
