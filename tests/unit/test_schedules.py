import pytest

from raydl.rl.schedules import LinearSchedule


def test_linear_schedule_anneals_then_holds() -> None:
    s = LinearSchedule(1.0, 0.1, 100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.55)
    assert s(100) == pytest.approx(0.1)
    assert s(10_000) == pytest.approx(0.1)
    assert LinearSchedule(1.0, 0.2, 0)(0) == 0.2  # zero duration: already at the end


def test_apex_epsilons() -> None:
    from raydl.rl.schedules import apex_epsilons

    assert apex_epsilons(1) == [0.4]
    eps = apex_epsilons(3, base=0.4, alpha=7)
    assert eps == pytest.approx([0.4, 0.4**4.5, 0.4**8])
    assert eps == sorted(eps, reverse=True)  # runner 0 explores most
