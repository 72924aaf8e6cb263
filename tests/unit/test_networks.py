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


def test_actor_critic_heads_shared_and_separate_trunks() -> None:
    from raydl.rl.networks import ActorCritic

    obs = torch.randn(5, 4)
    shared = ActorCritic(4, 3, [16, 16])
    logits, values = shared.logits_and_value(obs)
    assert logits.shape == (5, 3) and values.shape == (5,)
    assert torch.equal(shared(obs), logits)  # forward = the policy logits (for eval)
    # near-uniform initial policy (policy head gain 0.01)
    assert torch.softmax(logits, -1).max() < 0.4
    values.sum().backward()
    assert shared.trunk[0].weight.grad is not None  # the value loss trains the shared trunk

    separate = ActorCritic(4, 3, [16, 16], shared=False)
    _, values = separate.logits_and_value(obs)
    values.sum().backward()
    assert separate.trunk[0].weight.grad is None  # ...but not the policy's own trunk
    assert separate.value_trunk is not None and separate.value_trunk[0].weight.grad is not None

    pixels = ActorCritic((4, 84, 84), 6, [512])
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert pixels.logits_and_value(frames)[0].shape == (2, 6)
