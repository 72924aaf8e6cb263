"""Any torchvision classification model as a transfer-learning backbone, by name.

torchvision's models differ in where their ImageNet classifier sits (`fc`, `classifier`,
`classifier[6]`, `heads.head`, a 1x1 conv in SqueezeNet) and in auxiliary classifiers
(Inception-v3's `AuxLogits.fc`, GoogLeNet's `aux1.fc2`/`aux2.fc2`). Rather than a table per
model, every layer that outputs the 1,000 ImageNet classes is a head and is replaced by a
fresh one for the task's classes; the last one registered is the main head.

The input a backbone expects (its crop size and normalization) is read from torchvision's
own weights metadata (`Weights.transforms()`), which exists offline with or without the
weights file; the data pipeline (raydl.sl.data.image_splits) applies it.

"Blocks", for `model.freeze: backbone` with `model.unfrozen_blocks: N`, are the model's
repeated units in registration order: the root and plain containers (Sequential,
ModuleList, ModuleDict) are opened, and so is a module holding a stack of at least four
like blocks (ViT's encoder layers); anything else with parameters is one block. ResNet's
are conv1, bn1, layer1.0, ..., layer4.1; VGG's its 13 convolutions and 3 linear layers;
ViT-B/16's the patch embedding, 12 encoder layers and the final norm.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raydl import checkpoint as ckpt
from raydl.errors import ConfigError
from raydl.sl.experiment import OWN_ARCHS, ModelConfig, is_backbone

IMAGENET_CLASSES = 1000
# The auxiliary classifiers' loss weights of torchvision's reference training scripts.
AUX_WEIGHTS = {"InceptionOutputs": 0.4, "GoogLeNetOutputs": 0.3}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class InputSpec:
    """The square size and per-channel normalization a backbone was trained with."""

    size: int
    mean: list[float]
    std: list[float]


def classification_models() -> list[str]:
    """Every torchvision classification model name (not detection, video, ...)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def input_spec(model: ModelConfig) -> InputSpec | None:
    """What the backbone of `model.arch` expects of its input, or None for raydl's own
    networks (which take the data as it is)."""
    if not is_backbone(model.arch):
        return None
    import torchvision

    transforms = torchvision.models.get_model_weights(model.arch).DEFAULT.transforms()
    return InputSpec(int(transforms.crop_size[0]), list(transforms.mean), list(transforms.std))


def _construct(arch: str, aux_logits: bool, weights: Any = None) -> nn.Module:
    import torchvision

    kwargs: dict[str, Any] = {}
    if arch in ("inception_v3", "googlenet"):
        kwargs["aux_logits"] = aux_logits
    with warnings.catch_warnings():  # Inception/GoogLeNet's "default init will change"
        warnings.simplefilter("ignore", FutureWarning)
        return torchvision.models.get_model(arch, weights=weights, **kwargs)


def _weights_file_state(path: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load_torch(path)
    for key in ("model", "state_dict"):  # a training checkpoint rather than bare weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"model.weights_file: {path} holds no state dict")
    return state


def _pretrained(cfg: ModelConfig) -> nn.Module:
    """The ImageNet model: from `model.weights_file`, from torch's hub cache, or fresh."""
    import torchvision

    if cfg.weights_file:
        path = Path(cfg.weights_file).expanduser()
        net = _construct(cfg.arch, aux_logits=True)  # ImageNet files hold the aux heads
        try:
            net.load_state_dict(_weights_file_state(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"model.weights_file: {path} does not fit {cfg.arch}: {first}") from None
        if cfg.arch in ("inception_v3", "googlenet") and not cfg.aux_logits:
            _drop_aux(net)
        return net
    if not cfg.pretrained:
        return _construct(cfg.arch, cfg.aux_logits)
    if cfg.checkpoint_dir:
        torch.hub.set_dir(str(Path(cfg.checkpoint_dir).expanduser()))
    weights = torchvision.models.get_model_weights(cfg.arch).DEFAULT
    return _construct(cfg.arch, cfg.aux_logits, weights)


def _drop_aux(net: nn.Module) -> None:
    """What torchvision does to a pretrained Inception/GoogLeNet asked for no aux heads."""
    net.aux_logits = False  # type: ignore[assignment]
    for name in ("AuxLogits", "aux1", "aux2"):
        if hasattr(net, name):
            setattr(net, name, None)


def imagenet_heads(net: nn.Module) -> list[str]:
    """The layers that output the ImageNet classes, in registration order."""
    return [name for name, m in net.named_modules()
            if (isinstance(m, nn.Linear) and m.out_features == IMAGENET_CLASSES)
            or (isinstance(m, nn.Conv2d) and m.out_channels == IMAGENET_CLASSES)]


def _replace(net: nn.Module, name: str, num_classes: int) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = getattr(parent, attr)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    else:  # SqueezeNet's classifier is a 1x1 convolution
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride)
    setattr(parent, attr, new)


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _is_stack(m: nn.Module) -> bool:
    kinds = Counter(type(c) for c in m.children() if _has_params(c))
    return type(m) in _CONTAINERS and bool(kinds) and max(kinds.values()) >= 4


def blocks(net: nn.Module) -> list[str]:
    """The model's blocks in registration order (see the module docstring)."""
    out: list[str] = []

    def visit(m: nn.Module, prefix: str, root: bool = False) -> None:
        kids = [(n, c) for n, c in m.named_children() if _has_params(c)]
        opened = root or type(m) in _CONTAINERS or any(_is_stack(c) for _, c in kids)
        if opened and kids:
            for name, child in kids:
                visit(child, f"{prefix}{name}.")
        else:
            out.append(prefix[:-1])

    visit(net, "", root=True)
    return out


def freeze_backbone(net: nn.Module, heads: list[str], unfrozen_blocks: int) -> None:
    """Train only the new heads and the last `unfrozen_blocks` blocks of the backbone."""
    body = [b for b in blocks(net) if b not in heads]
    trainable = tuple(f"{name}." for name in heads + (body[-unfrozen_blocks:] if unfrozen_blocks else []))
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith(trainable))


def build_backbone(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The torchvision model `cfg.arch` with every ImageNet head replaced by one for
    `num_classes`, frozen as `cfg.freeze` / `cfg.unfrozen_blocks` say."""
    net = _pretrained(cfg)
    heads = imagenet_heads(net)
    for name in heads:
        _replace(net, name, num_classes)
    if cfg.freeze == "backbone":
        body = len([b for b in blocks(net) if b not in heads])
        if cfg.unfrozen_blocks >= body:
            raise ConfigError(f"model.unfrozen_blocks: {cfg.arch} has {body} blocks below its "
                              f"head; allowed: 0 to {body - 1}")
        freeze_backbone(net, heads, cfg.unfrozen_blocks)
    return net


def set_backbone_trainable(net: nn.Module, trainable: bool) -> None:
    """Unfreeze (or freeze) every parameter: `model.unfreeze_after` fine-tunes it all."""
    for p in net.parameters():
        p.requires_grad_(trainable)


def logits_and_aux(out: Any) -> tuple[torch.Tensor, list[tuple[float, torch.Tensor]]]:
    """A training forward's logits, and its auxiliary logits with their loss weights
    (Inception-v3 and GoogLeNet in train mode return a namedtuple)."""
    weight = AUX_WEIGHTS.get(type(out).__name__)
    if weight is None:
        return out, []
    main, *aux = out
    return main, [(weight, a) for a in aux if a is not None]


# ----------------------------------------------------------------------------- check step


def check_backbone(model: ModelConfig, image_size: int) -> None:
    """Before any work, in one line each: the name is a torchvision classification model,
    it takes `image_size` px (0: its own size) images, and its weights are at hand."""
    names = classification_models()
    if model.arch not in names:
        import difflib

        close = difflib.get_close_matches(model.arch, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"model.arch: {model.arch!r} is neither one of raydl's networks nor a torchvision "
            f"classification model{hint}; allowed: {', '.join(OWN_ARCHS)}, or any of "
            "torchvision.models.list_models(module=torchvision.models)")
    spec = input_spec(model)
    assert spec is not None
    size = image_size or spec.size
    with torch.device("meta"):  # shapes only: no weights are allocated or computed
        net = _construct(model.arch, model.aux_logits)
        try:  # training runs the auxiliary classifiers too, evaluation does not
            net.train()(torch.empty(2, 3, size, size))
            net.eval()(torch.empty(2, 3, size, size))
        except (RuntimeError, AssertionError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"data.image_size: {model.arch} cannot take {size} px images ({first}); "
                              f"allowed: its own {spec.size} (data.image_size: 0)") from None
    if model.weights_file:
        _check_weights_file(model, net)
    elif model.pretrained:
        check_pretrained(model)


def _check_weights_file(model: ModelConfig, meta_net: nn.Module) -> None:
    path = Path(model.weights_file or "").expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights_file: {path} is not a file; give a state dict saved "
                          f"with torch.save({model.arch}.state_dict(), FILE)")
    state = _weights_file_state(path)
    with torch.device("meta"):
        expected = _construct(model.arch, aux_logits=True).state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        what = f"missing {missing[0]}" if missing else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}"
        raise ConfigError(f"model.weights_file: {path} does not fit {model.arch} ({what}); "
                          "allowed: the ImageNet state dict of that very model")


def check_pretrained(model: ModelConfig) -> None:
    """Torch's hub cache has the ImageNet weights, or they can be downloaded now."""
    import contextlib
    import io

    import torchvision

    url = torchvision.models.get_model_weights(model.arch).DEFAULT.url
    hub = Path(model.checkpoint_dir).expanduser() if model.checkpoint_dir else Path(torch.hub.get_dir())
    cached = hub / "checkpoints" / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading: ..." line
            torch.hub.load_state_dict_from_url(url, model_dir=str(hub / "checkpoints"), progress=False)
    except Exception as exc:  # offline: URLError, socket errors, HTTP errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model.pretrained: {model.arch} ImageNet weights are not cached at {cached} and cannot "
            f"be downloaded ({reason}); put the file there, give model.weights_file, or set "
            "model.pretrained: false") from None
