"""torchvision backbones by name: heads replaced, blocks frozen, weights files, the input
each expects, auxiliary losses; and the votes of a classifier ensemble."""

from pathlib import Path

import pytest
import torch
from torchvision.models import GoogLeNetOutputs

from raydl.config import experiment_from_data
from raydl.errors import ConfigError
from raydl.sl.backbones import blocks, build_backbone, check_backbone, input_spec, logits_and_aux
from raydl.sl.data import image_splits
from raydl.sl.evaluate import vote
from raydl.sl.experiment import DataConfig, ModelConfig


def _trainable(net: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[0] for name, p in net.named_parameters() if p.requires_grad}


def test_resnet_blocks_and_the_last_n_trainable() -> None:
    net = build_backbone(ModelConfig(arch="resnet18", freeze="backbone", unfrozen_blocks=1), 3)
    assert net.fc.out_features == 3
    found = blocks(net)
    assert found[:3] == ["conv1", "bn1", "layer1.0"] and found[-2:] == ["layer4.1", "fc"]
    assert found == ["conv1", "bn1", *(f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)), "fc"]
    assert {n for n in _trainable(net) if not n.startswith("layer4.1.")} == {"fc"}
    assert "layer4.1.conv2" in _trainable(net) and "layer4.0.conv2" not in _trainable(net)
    frozen = build_backbone(ModelConfig(arch="resnet18", freeze="backbone"), 3)
    assert _trainable(frozen) == {"fc"}
    with pytest.raises(ConfigError, match="model.unfrozen_blocks: resnet18 has 10 blocks below its head; allowed: 0 to 9"):
        build_backbone(ModelConfig(arch="resnet18", freeze="backbone", unfrozen_blocks=10), 3)


@pytest.mark.parametrize("arch, heads", [
    ("googlenet", ["aux1.fc2", "aux2.fc2", "fc"]),  # the auxiliary heads too
    ("squeezenet1_0", ["classifier.1"]),  # a 1x1 convolution
    ("mobilenet_v3_small", ["classifier.3"]),
])
def test_every_imagenet_head_is_replaced(arch: str, heads: list[str]) -> None:
    net = build_backbone(ModelConfig(arch=arch, freeze="backbone"), 5)
    for name in heads:
        layer = net.get_submodule(name)
        assert getattr(layer, "out_features", getattr(layer, "out_channels", None)) == 5
    assert _trainable(net) == set(heads)


def test_vit_blocks_are_its_encoder_layers() -> None:
    found = blocks(build_backbone(ModelConfig(arch="vit_b_16"), 2))
    assert found == ["conv_proj", *(f"encoder.layers.encoder_layer_{i}" for i in range(12)),
                     "encoder.ln", "heads.head"]


def test_a_local_weights_file_is_loaded_below_the_new_head(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(1)
    imagenet = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    path = tmp_path / "mobilenet.pth"
    torch.save(imagenet.state_dict(), path)
    cfg = ModelConfig(arch="mobilenet_v3_small", weights_file=str(path))
    check_backbone(cfg, 0)
    net = build_backbone(cfg, 4)
    assert torch.equal(net.features[0][0].weight, imagenet.features[0][0].weight)
    assert torch.equal(net.classifier[0].weight, imagenet.classifier[0].weight)
    assert net.classifier[3].weight.shape == (4, 1024)  # the head is new
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), tmp_path / "r.pth")
    with pytest.raises(ConfigError, match=r"model.weights_file: .*r.pth does not fit mobilenet_v3_small \(missing "):
        check_backbone(ModelConfig(arch="mobilenet_v3_small", weights_file=str(tmp_path / "r.pth")), 0)
    with pytest.raises(ConfigError, match="model.weights_file: .*nowhere.pth is not a file"):
        check_backbone(ModelConfig(arch="mobilenet_v3_small", weights_file=str(tmp_path / "nowhere.pth")), 0)


@pytest.mark.parametrize("arch, size, message", [
    ("vit_b_16", 64, "data.image_size: vit_b_16 cannot take 64 px images .*allowed: its own 224"),
    ("inception_v3", 32, "data.image_size: inception_v3 cannot take 32 px images .*allowed: its own 299"),
    ("densenet12", 0, "model.arch: 'densenet12' is neither one of raydl's networks nor a torchvision "
                      "classification model \\(did you mean densenet121"),
])
def test_the_check_step_refuses_what_a_backbone_cannot_take(arch: str, size: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_backbone(ModelConfig(arch=arch), size)


def test_the_pipeline_gives_the_backbone_its_size_and_normalization() -> None:
    spec = input_spec(ModelConfig(arch="inception_v3"))
    assert spec is not None and spec.size == 299
    splits = image_splits(DataConfig(source="digits"), spec)
    image, _ = splits.train[0]
    assert image.shape == (3, 299, 299) and splits.input_shape == (3, 299, 299)
    # the digits' black corner, standardized with ImageNet's statistics channel by channel
    expected = [-m / s for m, s in zip(spec.mean, spec.std)]
    assert image[:, 0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert splits.mean == spec.mean
    small = image_splits(DataConfig(source="digits", image_size=32), spec)
    assert small.input_shape == (3, 32, 32)  # an explicit size wins


def test_auxiliary_logits_carry_torchvisions_loss_weights() -> None:
    main, aux2, aux1 = torch.zeros(2, 3), torch.ones(2, 3), torch.full((2, 3), 2.0)
    logits, aux = logits_and_aux(GoogLeNetOutputs(main, aux2, aux1))
    assert logits is main and [(w, a) for w, a in aux] == [(0.3, aux2), (0.3, aux1)]
    plain = torch.zeros(2, 3)
    assert logits_and_aux(plain) == (plain, [])


def test_soft_and_hard_votes() -> None:
    confident = torch.tensor([[0.9, 0.1, 0.0]])
    unsure = torch.tensor([[0.3, 0.7, 0.0]])
    # one confident model outweighs two unsure ones by probability, not by votes
    assert vote([confident, unsure, unsure], "soft").tolist() == [0]
    assert vote([confident, unsure, unsure], "hard").tolist() == [1]
    # a 1-1 tie goes to the class with the higher mean probability
    assert vote([confident, unsure], "hard").tolist() == [0]


@pytest.mark.parametrize("model, data, message", [
    ({"arch": "cnn", "pretrained": True}, {}, "model.pretrained: applies to torchvision backbones only"),
    ({"arch": "vgg16", "unfrozen_blocks": 2}, {}, "model.unfrozen_blocks: says which blocks stay trainable under"),
    ({"arch": "vgg16"}, {"channels": 1}, "data.channels: vgg16 takes 3-channel images"),
    ({"arch": "densenet121"}, {"source": "csv"}, "model.arch: densenet121 needs images, data.source is 'csv'"),
])
def test_backbone_options_are_checked_when_loading(model: dict, data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        experiment_from_data({"kind": "classify", "model": model, "data": data})
