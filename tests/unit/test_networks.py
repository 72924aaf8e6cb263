import torch

from raydl.rl.networks import QNetwork


def test_mlp_q_network_shapes_and_dueling_identity() -> None:
    net = QNetwork(4, 3, [8, 8], "tanh", dueling=True)
    q = net(torch.randn(5, 4))
    assert q.shape == (5, 3)
    # dueling: mean over actions of Q equals V (the advantage is centred)
    feats = net.trunk(torch.randn(2, 4))
    adv, value = net.advantage(feats), net.value(feats)  # type: ignore[misc]
    q = value + adv - adv.mean(dim=1, keepdim=True)
    assert torch.allclose(q.mean(dim=1, keepdim=True), value, atol=1e-6)


def test_nature_cnn_takes_uint8_frames() -> None:
    net = QNetwork((4, 84, 84), 6, [512])
    assert net.encoder.out_features == 3136  # 64 x 7 x 7, as in the paper
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    q = net(frames)
    assert q.shape == (2, 6) and q.dtype == torch.float32
    # scaling happens inside: all-255 frames equal all-1.0 float frames
    ones = net(torch.full((1, 4, 84, 84), 255, dtype=torch.uint8))
    assert torch.allclose(ones, net.trunk(net.encoder.net(torch.ones(1, 4, 84, 84))) @ net.advantage.weight.T + net.advantage.bias, atol=1e-5)
