"""The transformers (raydl.sl.transformer) and the learning-rate warm-up without Ray:
the causal and padding masks, weight tying, the warm-up's rates and an exact resume."""

import io
from pathlib import Path

import pytest
import torch

from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.sl.models import ModelConfig, build_model
from raydl.sl.tasks import SupervisedTask
from raydl.sl.warmup import Warmup
from raydl.train.loop import Counters, Worker, _train

SMALL = dict(embedding=16, hidden=32, heads=4, layers=2, dropout=0.0)


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_a_later_token_never_changes_the_logits_before_it(positional: str) -> None:
    lm = build_model(ModelConfig(arch="transformer_lm", positional=positional, **SMALL), (), 0,
                     vocab_size=20, context=12).eval()
    x = torch.randint(0, 20, (3, 12), generator=torch.Generator().manual_seed(0))
    later = x.clone()
    later[:, 7] = (later[:, 7] + 1) % 20
    with torch.no_grad():
        (logits, state), (changed, _) = lm(x), lm(later)
    assert logits.shape == (3, 12, 20) and state is None  # no state goes on to the next window
    assert torch.allclose(logits[:, :7], changed[:, :7], atol=1e-6)
    assert not torch.allclose(logits[:, 7:], changed[:, 7:], atol=1e-3)  # from token 7 on it does


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_never_reaches_the_classifiers_output(pooling: str) -> None:
    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="transformer", pooling=pooling, **SMALL), (), 3,
                      vocab_size=30, context=16).eval()
    x = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    lengths = torch.tensor([3, 5])
    longer = torch.cat([x, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    junk = x.clone()
    junk[0, 3:] = 17  # whatever sits after a document's end is not read
    with torch.no_grad():
        out = net(x, lengths)
        assert out.shape == (2, 3)
        assert torch.allclose(out, net(longer, lengths), atol=1e-6)
        assert torch.allclose(out, net(junk, lengths), atol=1e-6)
        # without the lengths the padding counts: the mask is what keeps it out
        assert not torch.allclose(out[0], net(x)[0], atol=1e-4)


def test_tied_weights_are_one_parameter() -> None:
    tied, untied = (build_model(ModelConfig(arch="transformer_lm", tie_weights=tie, **SMALL), (), 0,
                                vocab_size=50, context=8) for tie in (True, False))
    assert tied.decoder.weight is tied.embed.weight
    assert "decoder.weight" not in dict(tied.named_parameters())
    count = [sum(p.numel() for p in net.parameters()) for net in (tied, untied)]
    assert count[0] == count[1] - 50 * 16


@pytest.mark.parametrize(("sets", "message"), [
    (["model.heads=3"], r"model\.heads: model\.embedding 128 is not a multiple of 3 heads"),
    (["model.tie_weights=true", "model.freeze_embeddings=true"], "model.freeze_embeddings: there are no pretrained"),
    (["model.embeddings_file=glove.txt"], "model.embeddings_file: word vectors need word tokens, model.arch "
                                          "transformer_lm reads characters"),
    (["model.embeddings_file=g.txt", "data.level=word", "model.freeze_embeddings=true"],
     "model.freeze_embeddings: with model.tie_weights the output layer would be frozen too"),
])
def test_bad_transformer_and_embedding_options_are_one_line(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment("transformer_lm_pydoc", sets)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="model.arch: transformer reads documents, data.source is 'digits'"):
        load_experiment({"kind": "classify", "model": {"arch": "transformer"}})


def test_warmup_scales_each_step_and_hands_the_rate_back() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    warmup, moves = Warmup(4), []
    for _ in range(6):
        param.grad = torch.ones(1)
        before = float(param.detach())
        with warmup.scaled(optimizer):
            optimizer.step()
        warmup.stepped()
        moves.append(before - float(param.detach()))
        assert optimizer.param_groups[0]["lr"] == 0.5  # the epoch schedule's value, untouched
    assert moves == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5])  # lr * (k + 1) / (4 + 1), then lr


def test_a_restored_task_continues_the_warmup_and_training_exactly(tmp_path: Path) -> None:
    """Two epochs straight, and one epoch, model.pt's tensors, a fresh task, the second
    epoch: the same weights, losses and rates (the warm-up spans both epochs)."""
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    cfg = load_experiment("transformer_lm_pydoc", [
        f"data.text_file={text}", "data.seq_len=16", "train.batch_size=4", "model.embedding=16",
        "model.hidden=32", "model.layers=1", "model.heads=2", "model.dropout=0", "train.warmup_steps=30",
        "train.epochs=2", "scaling.workers=1"])
    worker = Worker(cfg, tmp_path, rank=0, world=1, device=torch.device("cpu"), group=False)

    def epoch(task: SupervisedTask, number: int) -> dict:
        task.begin_epoch(number)
        totals, _ = _train(task, worker, Counters(epoch=number))
        return task.epoch_metrics(totals)

    torch.manual_seed(0)
    straight = SupervisedTask(worker)
    first = epoch(straight, 1)
    buffer = io.BytesIO()
    torch.save(straight.state(), buffer)  # what model.pt holds after epoch 1
    second = epoch(straight, 2)
    steps = straight.warmup.done // 2
    assert steps == 20 and first["lr"] == pytest.approx(cfg.train.lr * steps / 31)  # still warming up

    resumed = SupervisedTask(worker)
    buffer.seek(0)
    resumed.load(torch.load(buffer, weights_only=True), 1)
    resumed.start(1, restored=True)
    assert resumed.warmup.done == steps
    assert epoch(resumed, 2) == second
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
