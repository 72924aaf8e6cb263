"""Supervised data and models without Ray: splits, vocabularies, BPTT windows, shapes."""

import torch

from raydl.sl.data import CharVocab, DataConfig, bptt_batches, image_splits, shard
from raydl.sl.models import ModelConfig, build_model, set_backbone_trainable


def test_digits_split_is_disjoint_reproducible_and_standardized() -> None:
    a, b = image_splits(DataConfig()), image_splits(DataConfig())
    assert (len(a.train), len(a.val), len(a.test)) == (1257, 270, 270)  # 1,797 digits
    assert a.num_classes == 10 and a.input_shape == (1, 8, 8)
    assert torch.equal(a.train[5][0], b.train[5][0])  # same seed, same split
    pixels = torch.stack([a.train[i][0] for i in range(len(a.train))])
    assert abs(float(pixels.mean())) < 0.05 and abs(float(pixels.std()) - 1) < 0.05
    other = image_splits(DataConfig(seed=1))
    assert not torch.equal(a.val[0][0], other.val[0][0])
    rows = image_splits(DataConfig(sequence=True))
    assert rows.input_shape == (8, 8)  # 8 time steps of 8 pixels


def test_exact_shards_cover_every_example_once() -> None:
    data = list(range(11))
    parts = [list(shard(data, r, 3)) for r in range(3)]  # type: ignore[arg-type]
    assert sorted(sum(parts, [])) == data and [len(p) for p in parts] == [4, 4, 3]


def test_vocab_round_trip_and_bptt_windows_continue_each_row(tmp_path) -> None:
    vocab = CharVocab.build("hello world")
    assert vocab.decode(vocab.encode("hello").tolist()) == "hello"
    vocab.save(tmp_path / "v.json")
    assert CharVocab.load(tmp_path / "v.json").chars == vocab.chars
    stream = torch.arange(41)
    windows = bptt_batches(stream, batch_size=2, seq_len=8)
    x0, y0 = windows[0]
    assert x0.shape == (2, 8) and torch.equal(y0, x0 + 1)  # targets: the next token
    # row 0 of window 1 continues row 0 of window 0 (the LSTM state carries over)
    assert int(windows[1][0][0, 0]) == int(x0[0, -1]) + 1
    assert int(x0[1, 0]) == 20  # the second row starts halfway through the stream


def test_model_shapes_and_frozen_backbone() -> None:
    cnn = build_model(ModelConfig(), (1, 8, 8), 10)
    assert cnn(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    lstm = build_model(ModelConfig(arch="lstm", bidirectional=True), (8, 8), 10)
    assert lstm(torch.zeros(3, 8, 8)).shape == (3, 10)
    lm = build_model(ModelConfig(arch="lstm_lm", embedding=16, hidden=16, tie_weights=True), (), 0, vocab_size=30)
    logits, state = lm(torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, 30) and lm.decoder.weight is lm.embed.weight
    net = build_model(ModelConfig(arch="resnet18", freeze="backbone"), (3, 32, 32), 4)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    set_backbone_trainable(net, True)
    assert all(p.requires_grad for p in net.parameters())
