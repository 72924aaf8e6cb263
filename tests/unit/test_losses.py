import torch

from raydl.rl.losses import dqn_loss, q_loss, td_target


def test_td_target_vanilla_uses_max_of_target_net() -> None:
    rewards = torch.tensor([1.0, 0.5])
    discounts = torch.tensor([0.9, 0.9])
    terminated = torch.tensor([0.0, 1.0])
    next_q_target = torch.tensor([[2.0, 3.0], [10.0, -1.0]])
    y = td_target(rewards, discounts, terminated, next_q_target)
    # 1 + 0.9 * 3 ; terminal: reward only
    assert torch.allclose(y, torch.tensor([3.7, 0.5]))


def test_td_target_double_q_online_picks_target_evaluates() -> None:
    rewards = torch.tensor([1.0, 0.0])
    discounts = torch.tensor([0.5, 0.81])  # gamma^1 and gamma^2 (n-step) per sample
    terminated = torch.tensor([0.0, 0.0])
    next_q_target = torch.tensor([[2.0, 3.0], [4.0, 1.0]])
    next_q_online = torch.tensor([[5.0, 0.0], [0.0, 5.0]])  # picks action 0, then 1
    y = td_target(rewards, discounts, terminated, next_q_target, next_q_online, double_q=True)
    assert torch.allclose(y, torch.tensor([1.0 + 0.5 * 2.0, 0.81 * 1.0]))
    # the same inputs without double_q take the target max instead: different numbers
    y_dqn = td_target(rewards, discounts, terminated, next_q_target)
    assert torch.allclose(y_dqn, torch.tensor([2.5, 0.81 * 4.0]))


def test_q_loss_huber_and_weights() -> None:
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    actions = torch.tensor([1, 0])
    targets = torch.tensor([2.5, 3.0])  # errors 0.5 (quadratic) and 3 (linear)
    weights = torch.tensor([1.0, 0.5])
    loss, td = q_loss(q, actions, targets, weights, "huber")
    expected = (1.0 * 0.5 * 0.5**2 + 0.5 * (3.0 - 0.5)) / 2
    assert abs(loss.item() - expected) < 1e-6
    assert torch.allclose(td, torch.tensor([0.5, 3.0]))
    mse, _ = q_loss(q, actions, targets, torch.ones(2), "mse")
    assert abs(mse.item() - (0.25 + 9.0) / 2) < 1e-6
    loss.backward()
    assert q.grad is not None and q.grad[0, 0] == 0  # only taken actions get gradient


def _linear(weight: list[list[float]]) -> torch.nn.Linear:
    net = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
    return net


def test_dqn_loss_on_hand_made_networks() -> None:
    # Q(s) = W s. Online W: Q(s1=[1,0]) = [1, 3], Q(s2=[0,1]) = [2, 4];
    # next states [1,1] and [0,2]: online Q = [3, 7] and [4, 8] (picks action 1 for both);
    # target W = diag(2, 1): target Q = [2, 1] and [0, 2] (its own max: 2 and 2).
    q_net, target = _linear([[1.0, 2.0], [3.0, 4.0]]), _linear([[2.0, 0.0], [0.0, 1.0]])
    batch = {
        "obs": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "next_obs": torch.tensor([[1.0, 1.0], [0.0, 2.0]]),
        "action": torch.tensor([0, 1]),  # Q taken: 1 and 4
        "reward": torch.tensor([1.0, 0.0]),
        "discount": torch.tensor([0.9, 0.5]),
        "terminated": torch.tensor([0.0, 0.0]),
        "weights": torch.tensor([1.0, 1.0]),
    }
    double = dqn_loss(q_net, target, batch, double_q=True)
    # targets 1 + 0.9 * 1 = 1.9 and 0 + 0.5 * 2 = 1.0; TD errors 0.9 and -3 (Huber: 0.405, 2.5)
    assert torch.allclose(double.td_errors, torch.tensor([0.9, -3.0]))
    assert abs(double.loss.item() - (0.405 + 2.5) / 2) < 1e-6
    assert double.q_mean.item() == 2.5  # mean of Q(s1) and Q(s2): (1 + 3 + 2 + 4) / 4
    vanilla = dqn_loss(q_net, target, batch, double_q=False, loss="mse")
    # the target net's own max: 1 + 0.9 * 2 = 2.8 and 1.0; MSE of 1.8 and -3
    assert torch.allclose(vanilla.td_errors, torch.tensor([1.8, -3.0]))
    assert abs(vanilla.loss.item() - (1.8**2 + 9.0) / 2) < 1e-5
    double.loss.backward()
    assert q_net.weight.grad is not None and target.weight.grad is None  # target: no gradient
    batch["terminated"] = torch.tensor([1.0, 0.0])  # no bootstrap after a terminal
    assert dqn_loss(q_net, target, batch, double_q=True).td_errors[0].item() == 0.0
