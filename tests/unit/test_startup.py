"""Start-up: commands that need neither torch nor Ray do not import them; the console
command exits promptly with main()'s code and its whole output; start-up marks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "sklearn", "torchvision")


def _imported_after(argv: list[str]) -> list[str]:
    code = (
        "import sys\nfrom raydl.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    heavy, exit_code = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert exit_code == "0", done.stdout
    return [m for m in heavy.split(",") if m]


@pytest.mark.parametrize("experiment", ["dqn_cartpole", "a3c_cartpole", "cnn_digits", "dcgan_digits", "vae_digits", "lstm_lm_pydoc", "dbn_digits"])
def test_check_imports_neither_torch_nor_ray(experiment: str) -> None:
    assert _imported_after(["check", experiment]) == []


def test_list_and_config_import_neither_torch_nor_ray() -> None:
    assert _imported_after(["list"]) == []
    assert _imported_after(["config", "a3c_cartpole"]) == []


def test_the_console_command_exits_with_mains_code_and_all_its_output() -> None:
    listed = subprocess.run([sys.executable, "-m", "raydl", "list"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    names = sorted(p.stem for p in (Path(__file__).parents[2] / "raydl" / "experiments").glob("*.yaml"))
    assert all(name in listed.stdout for name in names)  # nothing lost to the prompt exit
    bad = subprocess.run([sys.executable, "-m", "raydl", "check", "dqn_cartpole", "--set", "algo.lr=-1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "algo.lr" in bad.stderr


def test_profile_marks_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raydl.profile import mark

    path = tmp_path / "marks.jsonl"
    monkeypatch.delenv("RAYDL_PROFILE", raising=False)
    mark("not recorded")
    assert not path.exists()
    monkeypatch.setenv("RAYDL_PROFILE", str(path))
    mark("a")
    mark("b")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["mark"] for r in rows] == ["a", "b"]
    assert all(r["pid"] == os.getpid() for r in rows)
    assert rows[0]["t"] <= rows[1]["t"]
    # this process started before its first mark, and not long before (pytest's start-up)
    assert rows[0]["started"] is not None and 0 < rows[0]["t"] - rows[0]["started"] < 3600


def test_check_runs_gymnasiums_env_checker_on_a_users_env() -> None:
    """`raydl check` of a `module:EnvId` env: gymnasium's own checker, each warning one
    line (exit 0), a failed check one error line (exit 2); shipped envs are not checked."""
    def check(env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "raydl", "check", "dqn_cartpole", "--set", f"env={env}"],
                              capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])

    warned = check("tests.faulty_envs:raydl_test/NanReward-v0")
    assert warned.returncode == 0, warned.stderr
    lines = warned.stdout.strip().splitlines()
    assert lines[-1] == "raydl check: dqn_cartpole: a valid dqn experiment"
    assert "raydl check: tests.faulty_envs:raydl_test/NanReward-v0: A Box observation space minimum value " \
           "is -infinity. This is probably too low." in lines
    failed = check("tests.faulty_envs:raydl_test/Float64Obs-v0")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1
    assert "fails gymnasium's env checker: AssertionError: The first element returned by `env.reset()` " \
           "is not within the observation space" in failed.stderr
    assert "probably" not in check("CartPole-v1").stdout
