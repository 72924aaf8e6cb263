"""DiffAugment's transforms, the train.diff_augment policy field, and the generator's
weight average (EMA) with its save/restore, without Ray."""

import pytest
import torch

from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.gen.diffaugment import POLICIES, brightness, contrast, cutout, diff_augment, saturation, translation
from raydl.gen.experiment import AUGMENT_POLICIES, augment_policies
from raydl.gen.gan import GeneratorAverage
from raydl.gen.models import Generator


def test_every_policy_keeps_the_shape_and_passes_gradients_to_its_input() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, ("color", "translation", "cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the generator learns through it
    assert diff_augment(x, ()) is x  # no policy: no copy, no change


def test_translation_moves_each_image_by_at_most_an_eighth_and_pads_with_zeros() -> None:
    torch.manual_seed(1)
    x = torch.zeros(64, 2, 16, 16)
    x[:, 0, 7, 7] = 1.0  # channel 0, one lit pixel: where it lands is the shift
    x[:, 1] = 1.0  # channel 1, all ones: what comes in from outside shows as zeros
    y = translation(x)
    lit = y[:, 0].flatten(1).argmax(1)
    dy, dx = lit // 16 - 7, lit % 16 - 7
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2  # 16 / 8 = 2 pixels
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 10  # shifts differ per image
    assert torch.equal(y[:, 0].sum((1, 2)), torch.ones(64))  # moved, not duplicated
    kept = (16 - dy.abs()) * (16 - dx.abs())
    assert torch.equal(y[:, 1].sum((1, 2)), kept.float())  # the same shift in every channel, zero padded


def test_cutout_zeroes_a_square_of_half_the_side_at_most() -> None:
    torch.manual_seed(2)
    y = cutout(torch.ones(200, 2, 16, 16))
    hole = y[:, 0] == 0
    rows, cols = hole.any(2).sum(1), hole.any(1).sum(1)
    assert torch.equal(hole.sum((1, 2)), rows * cols)  # one rectangle per image
    assert rows.max() == cols.max() == 8  # 16 / 2, all of it inside the image
    assert rows.min() >= 4 and cols.min() >= 4  # centred on the image: at least half a side
    assert torch.equal(y[:, 0], y[:, 1])  # the same square in every channel


def test_color_transforms_and_the_one_channel_saturation() -> None:
    torch.manual_seed(3)
    x = torch.rand(100, 1, 8, 8)
    shift = (brightness(x) - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift)) and shift.abs().max() <= 0.5
    assert torch.equal(saturation(x), x)  # one channel: the channel mean is the pixel
    rgb = torch.rand(4, 3, 8, 8)
    assert not torch.equal(saturation(rgb), rgb)
    mean = x.mean((1, 2, 3))
    assert torch.allclose(contrast(x).mean((1, 2, 3)), mean, atol=1e-6)  # scaled around the mean


def test_two_calls_draw_fresh_randomness() -> None:
    torch.manual_seed(4)
    x = torch.rand(32, 1, 16, 16)
    policy = ("color", "translation", "cutout")
    assert not torch.equal(diff_augment(x, policy), diff_augment(x, policy))  # real, then fake batch


@pytest.mark.parametrize(("value", "names"), [
    ("color,translation,cutout", ("color", "translation", "cutout")),
    (["translation", "cutout"], ("translation", "cutout")),
    (" translation , color", ("translation", "color")),
    (None, ()), ("", ()), ("none", ()), ([], ()),
])
def test_diff_augment_policy_forms(value: object, names: tuple[str, ...]) -> None:
    assert augment_policies(value) == names
    assert set(POLICIES) == set(AUGMENT_POLICIES)


@pytest.mark.parametrize(("train", "message"), [
    ({"diff_augment": "color,flip"}, r"^train\.diff_augment: unknown policy 'flip'; allowed: color, "
                                     r"translation, cutout"),
    ({"g_ema": 1.0}, r"^train\.g_ema: expected a number >= 0 and < 1"),
])
def test_bad_gan_options_are_one_line(train: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_experiment({"kind": "gan", "data": {"image_size": 28}, "train": train})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"train\.diff_augment: applies to kind gan only"):
        load_experiment({"kind": "vae", "data": {"image_size": 28}, "train": {"diff_augment": "color"}})


def test_generator_average_values_and_restore() -> None:
    torch.manual_seed(5)
    g = Generator(4, 1, 28, width=4)
    average = GeneratorAverage(g, decay=0.9)
    first = [p.detach().clone() for p in g.parameters()]
    average.update(g)  # the first update copies
    for _ in range(20):
        with torch.no_grad():
            for p in g.parameters():
                p.add_(1.0)
        average.update(g)
    # w_n = w0 + n, d_n = min(0.9, (1 + n) / (10 + n)): warm-up for n < 80, so by hand
    expected = 0.0
    for n in range(1, 21):
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * n
    for avg, w0 in zip(average.module.parameters(), first):
        torch.testing.assert_close(avg, w0 + expected)
    assert not any(p.requires_grad for p in average.module.parameters())
    saved = average.state()
    assert saved["ema_updates"] == 21
    restored = GeneratorAverage(Generator(4, 1, 28, width=4), decay=0.9)
    restored.load(saved)
    restored.update(g)
    average.update(g)  # the same next step from the restored state: exact resume
    for a, b in zip(average.module.state_dict().values(), restored.module.state_dict().values()):
        assert torch.equal(a, b)


def test_the_shipped_search_over_the_gan_options_loads_and_refuses_a_bad_policy() -> None:
    from raydl.tune_spec import load_tune_spec, trial_experiment

    spec = load_tune_spec("tune_dcgan_digits", check=False)
    assert spec.cfg.kind == "gan" and spec.metric == "classifier_score" and spec.mode == "max"
    trial = trial_experiment(spec.base, {"train.diff_augment": "color,translation", "train.g_ema": 0.99})
    assert augment_policies(trial.train.diff_augment) == ("color", "translation") and trial.train.g_ema == 0.99
    with pytest.raises(ConfigError, match=r"tune\.space\.train\.diff_augment: value 'flip' is refused: "
                                          r"train\.diff_augment: unknown policy 'flip'"):
        load_tune_spec("tune_dcgan_digits", ["tune.space.train.diff_augment={choice: [flip]}"], check=False)
