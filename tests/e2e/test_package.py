"""raydl as a new user gets it: `pip install .` (not editable) of a copy of this checkout
into a fresh venv, then the console script from another directory. The shipped
experiments used to stay behind in the checkout: `raydl list` showed none and
`raydl run dqn_cartpole` said there was no such experiment."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import raydl

ROOT = Path(__file__).resolve().parents[2]


def _copy_of_the_checkout(dest: Path) -> Path:
    """The files git knows of (tracked, and new ones not ignored): what a clone has,
    without .venv, runs/ or build outputs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pip with the build's own output (-v), where setuptools prints its warnings; no
    build isolation: the build uses this environment's setuptools, nothing is fetched."""
    proc = subprocess.run([str(python), "-m", "pip", *args, "-v", "--no-deps", "--no-build-isolation"],
                          capture_output=True, text=True, timeout=180, env=_clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH (it would import a checkout's raydl instead of the installed one)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("PYTHONPATH", "RAY_ADDRESS"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(the venv's bin, the source copy, pip's output) after `pip install .` of the copy."""
    base = tmp_path_factory.mktemp("pkg")
    source = _copy_of_the_checkout(base / "src")
    bin_dir = _venv(base / "venv")
    proc = _pip(bin_dir / "python", "install", str(source))
    yield bin_dir, source, proc.stdout + proc.stderr


def _venv(path: Path) -> Path:
    """A new venv (its bin directory) that also sees this one's packages (torch, Ray:
    gigabytes, not reinstalled) through a .pth line, after its own site-packages: the
    raydl it imports is the one installed into it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    (purelib,) = path.glob("lib/python*/site-packages")
    (purelib / "_parent_env.pth").write_text(site.getsitepackages()[0] + "\n")
    return path / "bin"


def _raydl(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "raydl"), *args], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=180)


def test_pip_install_dot_gives_a_raydl_that_runs_from_any_directory(
    installed: tuple[Path, Path, str], tmp_path: Path,
) -> None:
    bin_dir, _, pip_output = installed
    assert "deprecat" not in pip_output.lower(), pip_output  # setuptools' packaging warnings
    where = subprocess.run([str(bin_dir / "python"), "-c", "import raydl; print(raydl.__file__)"],
                           cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(bin_dir.parent)), where  # the installed copy, not a checkout

    version = _raydl(bin_dir, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"raydl {raydl.__version__}", version
    listed = _raydl(bin_dir, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "dqn_cartpole " in listed.stdout and "cnn_digits " in listed.stdout
    checked = _raydl(bin_dir, "check", "dqn_cartpole", cwd=tmp_path)
    assert checked.stdout.strip() == "raydl check: dqn_cartpole: a valid dqn experiment", checked
    ran = _raydl(bin_dir, "run", "dqn_cartpole", "--set", "stop.env_steps=300", "--set", "runners.num=0",
                 "--set", "log.tensorboard=false", "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.startswith("raydl: dqn on CartPole-v1 stopped (env_steps")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file()


def test_a_built_wheel_holds_the_shipped_experiments_and_installs(
    installed: tuple[Path, Path, str], tmp_path: Path,
) -> None:
    bin_dir, source, _ = installed
    proc = _pip(bin_dir / "python", "wheel", "-w", str(tmp_path / "dist"), str(source))
    assert "deprecat" not in (proc.stdout + proc.stderr).lower()
    (wheel,) = (tmp_path / "dist").glob("raydl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "raydl" / "experiments").glob("*.yaml"))
    assert sorted(n.rpartition("/")[2] for n in names if n.startswith("raydl/experiments/")) == shipped
    assert "raydl/cli.py" in names and not any(n.startswith("tests/") for n in names)

    wheel_bin = _venv(tmp_path / "venv")
    _pip(wheel_bin / "python", "install", str(wheel))
    checked = _raydl(wheel_bin, "check", "ddqn_cartpole_parallel", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert _raydl(wheel_bin, "--version", cwd=tmp_path).stdout.strip() == f"raydl {raydl.__version__}"
