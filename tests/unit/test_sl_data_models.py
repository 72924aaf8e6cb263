"""Supervised data and models without Ray: splits, vocabularies, BPTT windows, shapes."""

import torch

from raydl.sl.data import CharVocab, DataConfig, bptt_batches, image_splits, shard
from raydl.sl.backbones import set_backbone_trainable
from raydl.sl.models import ModelConfig, build_model


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


def _reviews(root, n: int = 30) -> None:
    for label, word in (("pos", "great"), ("neg", "awful")):
        for split in ("train", "test"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}.txt").write_text(f"This film was {word}, truly {word}.<br />Seen {i} times.")


def test_documents_from_an_imdb_style_folder(tmp_path) -> None:
    from raydl.sl.data import UNK, document_splits, pad_batch, tokenize

    assert tokenize("A <br />GREAT film!") == ["a", "great", "film", "!"]
    _reviews(tmp_path)
    docs = document_splits(DataConfig(source="text_folder", data_dir=str(tmp_path), val_fraction=0.2))
    assert docs.labels == ["neg", "pos"]
    assert (len(docs.train), len(docs.val), len(docs.test)) == (48, 12, 60)  # test/ kept whole
    assert docs.vocab.words[:2] == ["<pad>", "<unk>"] and "great" in docs.vocab.index
    assert int(docs.vocab.encode(["zebra"])[0]) == UNK
    x, lengths, y = pad_batch([docs.train[0], docs.train[1]])
    assert x.shape == (2, int(lengths.max())) and y.shape == (2,)


def test_text_classifiers_take_padded_batches() -> None:
    lstm = build_model(ModelConfig(arch="lstm", embedding=8, hidden=8), (), 2, vocab_size=50)
    cnn = build_model(ModelConfig(arch="textcnn", embedding=8, hidden=8), (), 2, vocab_size=50)
    x = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    lengths = torch.tensor([3, 5])
    assert lstm(x, lengths).shape == (2, 2) and cnn(x, lengths).shape == (2, 2)
    # packing: padding after a sequence's end does not change its output
    longer = torch.cat([x, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    lstm.eval()
    assert torch.allclose(lstm(x, lengths), lstm(longer, lengths), atol=1e-6)


def test_wikitext_style_directory_gives_word_streams(tmp_path) -> None:
    from raydl.sl.data import WordVocab, text_splits, words

    assert words(" = Title = \n\n the cat sat \n") == ["=", "Title", "=", "<eos>", "the", "cat", "sat", "<eos>"]
    (tmp_path / "wiki.train.tokens").write_text("the cat sat on the mat\nthe dog sat\n")
    (tmp_path / "wiki.valid.tokens").write_text("the cat ran\n")
    (tmp_path / "wiki.test.tokens").write_text("a dog sat\n")
    s = text_splits(DataConfig(source="text", text_file=str(tmp_path), level="word"))
    assert isinstance(s.vocab, WordVocab)
    assert s.vocab.decode(s.train[:4].tolist()) == "the cat sat on"
    assert s.vocab.decode(s.val.tolist()) == "the cat <unk> <eos>"  # 'ran' never trained on
    assert len(s.test) == 4


def test_documents_from_a_csv_and_its_errors(tmp_path) -> None:
    import pytest

    from raydl.errors import ConfigError
    from raydl.sl.data import document_splits

    path = tmp_path / "reviews.csv"
    rows = [f'"a {"good" if i % 2 else "bad"} movie, {i}",{"pos" if i % 2 else "neg"}' for i in range(40)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    docs = document_splits(DataConfig(source="csv", csv_file=str(path)))
    assert docs.labels == ["neg", "pos"] and len(docs.train) + len(docs.val) + len(docs.test) == 40
    (tmp_path / "bad.csv").write_text("review,stars\nfine,5\n")
    with pytest.raises(ConfigError, match="needs columns text and label"):
        document_splits(DataConfig(source="csv", csv_file=str(tmp_path / "bad.csv")))
    with pytest.raises(ConfigError, match="data.csv_file: None is not a file"):
        document_splits(DataConfig(source="csv"))


def test_digits_read_from_scikit_learns_file_equal_load_digits() -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    from raydl.sl.data import digits_arrays

    images, labels = digits_arrays()
    bunch = load_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)


def test_a_cosine_schedule_resumed_with_more_epochs_keeps_falling_to_its_end() -> None:
    import torch

    from raydl.sl.tasks import _scheduler, restore_schedule
    from raydl.sl.experiment import TrainConfig

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    first = optimizer()
    schedule = _scheduler(TrainConfig(epochs=4, lr=0.1, schedule="cosine"), first)
    lrs = []
    for _ in range(3):  # epochs 1-3, then the run stops (a checkpoint after epoch 3)
        lrs.append(first.param_groups[0]["lr"])
        first.step()
        schedule.step()
    resumed = optimizer()
    resumed.load_state_dict(first.state_dict())
    again = _scheduler(TrainConfig(epochs=8, lr=0.1, schedule="cosine"), resumed)
    restore_schedule(again, schedule.state_dict(), epochs=8)
    for _ in range(5):  # epochs 4-8 under --set train.epochs=8
        lrs.append(resumed.param_groups[0]["lr"])
        resumed.step()
        again.step()
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:])), lrs  # it used to climb back up
    assert resumed.param_groups[0]["lr"] < 1e-9  # the minimum, at the new last epoch
    assert lrs[3] < lrs[2]
