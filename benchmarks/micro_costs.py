"""Per-operation costs behind the DQN benchmarks, on this machine's CPU, one thread each.

Prints:
  1. one DQN learner update (Double-DQN target, Huber, grad clip, fused Adam) for the
     CartPole MLP sizes, batch 64: what bounds raydl's CartPole wall time;
  2. a Nature-CNN Q-network forward pass per sample, batch 4/8/16, NCHW vs channels_last:
     what each env runner pays per Atari step when it acts with the network;
  2b. the same forward pass quantized to int8 (static, x86 backend): how much a cheaper
     CPU forward pass would buy;
  3. preprocessed Pong steps/s of one process alone and of two processes at once: the
     emulator reference and whether the machine scales to two cores.

Command:  python benchmarks/micro_costs.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raydl.nn import make_optimizer  # noqa: E402
from raydl.rl.losses import q_loss, td_target  # noqa: E402
from raydl.rl.networks import QNetwork  # noqa: E402


def _time(fn, repeats: int) -> float:
    """Mean milliseconds per call after a warm-up."""
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def update_cost(hidden: list[int], batch: int = 64) -> float:
    q, target = QNetwork(4, 2, hidden), QNetwork(4, 2, hidden)
    opt = make_optimizer("adam", q.parameters(), 1e-3)
    obs, nxt = torch.randn(batch, 4), torch.randn(batch, 4)
    actions, rewards = torch.randint(0, 2, (batch,)), torch.randn(batch)
    ones, zeros = torch.ones(batch), torch.zeros(batch)

    def step() -> None:
        with torch.no_grad():
            next_t = target(nxt)
        both = q(torch.cat([obs, nxt]))
        y = td_target(rewards, ones * 0.99, zeros, next_t, both[batch:].detach(), True)
        loss, _ = q_loss(both[:batch], actions, y, ones)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0, foreach=True)
        opt.step()

    return _time(step, 500)


def cnn_cost(batch: int, channels_last: bool) -> float:
    net = QNetwork((4, 84, 84), 6, [512]).eval()
    x = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
    if channels_last:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _time(lambda: net(x), 200) / batch


def cnn_int8_cost(batch: int) -> tuple[float, float, float]:
    """Static int8 quantization (x86 backend, FX graph mode) of the Nature CNN's layers:
    (fp32 ms/sample, int8 ms/sample, share of greedy actions that agree). The question
    it answers: can a cheaper CPU forward pass close the gap to the emulator?"""
    import copy
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    warnings.filterwarnings("ignore")
    net = QNetwork((4, 84, 84), 6, [512]).eval()

    class Body(torch.nn.Module):  # the layers after the uint8 -> [0, 1] scaling
        def __init__(self, q: QNetwork) -> None:
            super().__init__()
            self.conv, self.trunk, self.head = q.encoder.net, q.trunk, q.advantage  # type: ignore[union-attr]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.trunk(self.conv(x)))

    gen = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (batch, 4, 84, 84), generator=gen, dtype=torch.uint8)
              for _ in range(9)]
    prepared = prepare_fx(Body(copy.deepcopy(net)).eval(), get_default_qconfig_mapping("x86"),
                          (frames[0].float() / 255,))
    with torch.no_grad():
        for f in frames[1:]:  # calibration
            prepared(f.float() / 255)
    quantized = convert_fx(prepared)
    x = frames[0]
    with torch.inference_mode():
        fp32 = _time(lambda: net(x), 200) / batch
        int8 = _time(lambda: quantized(x.float() / 255), 200) / batch
        agree = float((net(x).argmax(1) == quantized(x.float() / 255).argmax(1)).float().mean())
    return fp32, int8, agree


def _pong_rate(seconds: float, out: mp.Queue) -> None:
    from raydl.envs.atari import make_atari

    env = make_atari("ALE/Pong-v5")
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    out.put(steps / seconds)


def pong_rates(processes: int, seconds: float) -> list[float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_pong_rate, args=(seconds, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per Pong measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("1. DQN update (batch 64, 1 thread)")
    for hidden in ([64, 64], [128, 128], [256, 256]):
        print(f"   MLP {hidden}: {update_cost(hidden):.2f} ms/update")
    print("2. Nature-CNN forward per sample (1 thread)")
    for batch in (4, 8, 16):
        nchw, nhwc = cnn_cost(batch, False), cnn_cost(batch, True)
        print(f"   batch {batch:2d}: NCHW {nchw:.3f} ms, channels_last {nhwc:.3f} ms "
              f"({(1 - nhwc / nchw) * 100:+.0f}% faster)")
    print("2b. Nature CNN, static int8 quantization (1 thread)")
    for batch in (8, 16):
        fp32, int8, agree = cnn_int8_cost(batch)
        print(f"   batch {batch:2d}: fp32 {fp32:.3f} ms, int8 {int8:.3f} ms ({fp32 / int8:.2f}x); "
              f"greedy actions agree on {agree:.0%} of random frames")
    print("3. preprocessed Pong, random actions")
    (solo,) = pong_rates(1, args.seconds)
    pair = pong_rates(2, args.seconds)
    print(f"   1 process: {solo:,.0f} steps/s ({1e3 / solo:.2f} ms/step); 2 processes at "
          f"once: {', '.join(f'{r:,.0f}' for r in pair)} steps/s each "
          f"(scaling {sum(pair) / solo:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
