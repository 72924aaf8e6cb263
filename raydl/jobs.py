"""`raydl submit` and `raydl jobs`: experiments as Ray jobs, through the cluster's Jobs API.

A job's entrypoint is `python -m raydl run|tune EXPERIMENT --address auto`, run by the
cluster on its head node, so runs and searches use the cluster's resources, not the
submitter's. The experiment is checked here first (bad input never reaches the cluster),
then it travels in the job's runtime_env: the working directory (the user's project,
where the experiment file and the user's env modules lie) is uploaded, and this machine's
raydl package goes with it (py_modules), so the cluster runs the same raydl, shipped
experiments included, whatever version it has installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import raydl
from raydl.errors import ConfigError
from raydl.runtime import AUTH_TOKEN_FILE, token_available, use_token_auth_if_available

# A run's outputs must outlive the job: its working directory is a cache Ray may delete.
DEFAULT_CLUSTER_OUT = "~/raydl_runs"
# Never uploaded with the working directory (gitignore patterns, as Ray reads them; Ray
# also skips what .gitignore and .rayignore list): credentials of any kind, and outputs,
# data, environments and caches, which are big and belong to this machine.
CREDENTIAL_EXCLUDES = [
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*",
    "id_ecdsa*", "id_ed25519*", ".ssh/", ".aws/", ".azure/", ".kube/", ".gcloud/", "gcloud/",
    ".docker/", ".ray/", "auth_token", "*.token", ".netrc", ".git-credentials", ".pypirc",
    "credentials*", "*secret*",
]
UPLOAD_EXCLUDES = ["runs/", "data/", "bench_results/", ".venv/", "venv/", ".git/", "__pycache__/",
                   "*.pyc", ".pytest_cache/", *CREDENTIAL_EXCLUDES]
EXIT_BY_STATUS = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class JobRequest:
    """Everything `raydl submit` sends, resolved and checked before the cluster is asked."""

    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str
    metadata: dict[str, str] = field(default_factory=dict)


def jobs_address(address: str | None) -> str:
    """The Jobs API (dashboard) URL: --address, then RAY_API_SERVER_ADDRESS, then an
    http(s) RAY_ADDRESS, the order `ray job` uses."""
    text = address or os.environ.get("RAY_API_SERVER_ADDRESS") or ""
    if not text:
        env = os.environ.get("RAY_ADDRESS", "")
        text = env if env.startswith(("http://", "https://")) else ""
    if not text:
        raise ConfigError("no Jobs API address: pass --address http://HEAD:8265 "
                          "(or set RAY_API_SERVER_ADDRESS)")
    if text == "auto" or text.startswith(("ray://", "local")):
        raise ConfigError(f"--address {text}: jobs go to the cluster's dashboard, "
                          "e.g. http://127.0.0.1:8265")
    if "://" not in text:
        text = "http://" + text
    return text.rstrip("/")


def _reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _auth_error(what: str, exc: BaseException) -> ConfigError:
    refused = "failed" in str(exc).lower() or "invalid" in str(exc).lower()
    problem = "refused the authentication token" if refused else "requires an authentication token"
    return ConfigError(
        f"{what}: the cluster {problem}: copy the head's {AUTH_TOKEN_FILE} to this machine's "
        f"{AUTH_TOKEN_FILE} (or set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file with it)")


PLAIN_HTTP_OPT_IN = "RAYDL_ALLOW_PLAIN_HTTP"


def refuse_token_in_clear(url: str) -> None:
    """The cluster token travels in every request's header: over plain http to another
    machine anyone on the path can read it, and with it run code on the cluster. Refused
    unless the user opts in; loopback (an SSH tunnel) and https are fine."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if parts.scheme == "http" and not loopback and token_available() and not os.environ.get(PLAIN_HTTP_OPT_IN):
        raise ConfigError(
            f"--address {url}: the cluster token would be sent in clear text to {host}; use "
            "https://, or an SSH tunnel (ssh -L 8265:localhost:8265 HEAD, then --address "
            f"127.0.0.1:8265), or set {PLAIN_HTTP_OPT_IN}=1 to send it anyway")


def connect(address: str | None) -> Any:
    """A JobSubmissionClient, or a one-line ConfigError that says what to fix."""
    url = jobs_address(address)
    refuse_token_in_clear(url)
    use_token_auth_if_available()
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(url)
    except AuthenticationError as exc:
        raise _auth_error(f"--address {url}", exc) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"--address {url}: cannot reach the Ray Jobs API ({_reason(exc)}); is the head's "
            "dashboard running? For a remote head: ssh -L 8265:localhost:8265 HEAD") from None


def _call(what: str, fn: Callable[[], Any]) -> Any:
    """Jobs API calls fail with RuntimeError carrying the HTTP answer; one line each."""
    from ray.exceptions import AuthenticationError

    try:
        return fn()
    except AuthenticationError as exc:
        raise _auth_error(what, exc) from None
    except (RuntimeError, ConnectionError, ValueError) as exc:
        text = str(exc)
        if "does not exist" in text or "404" in text:
            raise ConfigError(f"{what}: no such job on this cluster "
                              "(raydl jobs list shows them)") from None
        raise ConfigError(f"{what}: {_reason(exc)}") from None


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or not ENV_NAME.match(key):
            raise ConfigError(f"--env {text!r}: expected NAME=VALUE with NAME made of "
                              "letters, digits and _")
        env[key] = value
    return env


def _inside(path: Path, working_dir: Path, what: str, kind: str) -> str:
    """`path` relative to the uploaded working directory, where the job finds it."""
    resolved = path.expanduser().resolve()
    if not resolved.is_relative_to(working_dir):
        raise ConfigError(f"{what}: the {kind} file must be inside the working directory "
                          f"{working_dir}, which is uploaded with the job (pass --working-dir)")
    return resolved.relative_to(working_dir).as_posix()


def _job_env(env: Any, working_dir: Path | None) -> str | None:
    """The `env` the job must be given: a `path/to/my_envs.py:ENV_ID` env names a file
    here (relative to the current directory); the job finds the uploaded copy relative to
    the working directory. None when the job can use the experiment's own."""
    from raydl.runtime import env_module_file

    path = env_module_file(env) if isinstance(env, str) else None
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"env: {env.partition(':')[0]}: no such file (a FILE.py:ENV_ID path "
                          f"is absolute or relative to the current directory, {Path.cwd()})")
    relative = _inside(path, working_dir or Path.cwd(), f"env {env}", "env module")
    return f"{relative}:{env.partition(':')[2]}"


def raydl_package(working_dir: Path | None) -> Path | None:
    """The raydl package to send with the job (runtime_env py_modules), so that the
    cluster runs this raydl, whatever it has installed; None when the uploaded working
    directory is the checkout this raydl is imported from (the job imports it there)."""
    package = Path(raydl.__file__).resolve().parent
    return None if working_dir is not None and package.parent == working_dir else package


def cluster_out(out: str) -> str:
    """--out of a job: an absolute path or one under `~/` (the head's home, expanded by
    raydl there). A relative one would land in the job's working-directory copy, which
    Ray deletes with the job."""
    if not (out.startswith("/") or out.startswith("~/")):
        raise ConfigError(f"--out {out!r}: give an absolute path or one under ~/ on the cluster "
                          "(a relative path would be inside the job's temporary working directory)")
    return out


def upload_size(workdir: Path, excludes: list[str]) -> tuple[int, int]:
    """(files, bytes) that Ray will upload from `workdir`: Ray's own walk, with the same
    excludes, .gitignore and .rayignore."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    found = [0, 0]

    def count(path: Path) -> None:
        if path.is_file():
            found[0] += 1
            found[1] += path.stat().st_size

    _dir_travel(workdir, [_get_excludes(workdir, excludes)], count, include_gitignore=True)
    return found[0], found[1]


def _upload_dir(experiment: str, env: Any, working_dir: str | Path | None) -> Path | None:
    """The directory a job uploads: --working-dir; else the current one when the job
    needs the user's files (an experiment file, or an env of the user's own module,
    `MODULE:ENV_ID` or `FILE.py:ENV_ID`); else none (a built-in experiment)."""
    own_env = isinstance(env, str) and ":" in env
    if working_dir is None and not Path(experiment).is_file() and not own_env:
        return None
    workdir = Path(working_dir or ".").expanduser().resolve()
    if not workdir.is_dir():
        raise ConfigError(f"--working-dir {working_dir}: no such directory")
    return workdir


def _checked(experiment: str, overrides: list[str], tune: bool,
             num_samples: int | None) -> tuple[Path, Any]:
    """(the experiment's file here, its config): its values checked as `raydl run|tune`
    would, the world not looked at (the cluster may have what this machine lacks)."""
    from raydl import registry
    from raydl.config import load_experiment

    local = registry.find_experiment(experiment)  # one-line error for unknown names
    if tune:
        from raydl.tune_spec import load_tune_spec

        cfg = load_tune_spec(local, overrides, check=False).cfg
        if num_samples is not None and num_samples < 1:
            raise ConfigError(f"--num-samples: expected an integer >= 1, got {num_samples}")
        return local, cfg
    if num_samples is not None:
        raise ConfigError("--num-samples: only with --tune")
    return local, load_experiment(local, overrides)


def build_request(
    experiment: str,
    overrides: list[str],
    *,
    tune: bool = False,
    num_samples: int | None = None,
    working_dir: str | Path | None = None,
    pip: list[str] | None = None,
    env: list[str] | None = None,
    out: str = DEFAULT_CLUSTER_OUT,
) -> JobRequest:
    """Check the experiment's values as `raydl run|tune` would and build the job; nothing
    is sent (the check step runs on the cluster, whose machines may have what this one
    lacks). A built-in experiment uploads nothing unless --working-dir is given; a file
    uploads its working directory (default: .) without credentials, data or outputs.
    raydl itself goes with the job unless it is imported from the working directory."""
    local, cfg = _checked(experiment, overrides, tune, num_samples)
    workdir = _upload_dir(experiment, getattr(cfg, "env", None), working_dir)
    # A file is sent relative to the uploaded directory; a built-in name stays a name.
    is_file = Path(experiment).is_file()
    name = _inside(local, workdir or Path.cwd(), experiment, "experiment") if is_file else local.stem
    job_env = _job_env(getattr(cfg, "env", None), workdir)
    sets = list(overrides)
    if job_env and job_env != cfg.env:  # the job's name for the same file replaces the user's
        sets = [t for t in sets if t.partition("=")[0].strip() != "env"] + [f"env={job_env}"]
    argv = ["python", "-m", "raydl", "tune" if tune else "run", name, "--address", "auto"]
    for text in sets:
        argv += ["--set", text]
    if num_samples is not None:
        argv += ["--num-samples", str(num_samples)]
    # Every word quoted: the shell runs nothing of it. raydl itself expands a leading ~/
    # of --out on the head, to the head's home.
    argv += ["--out", cluster_out(out)] + ([] if tune else ["--no-progress"])
    runtime_env: dict[str, Any] = {
        # Unbuffered so `tail` shows each line when the run prints it.
        "env_vars": {"PYTHONUNBUFFERED": "1", **_parse_env(env or [])},
        "excludes": list(UPLOAD_EXCLUDES),  # for the working directory and py_modules alike
    }
    if workdir is not None:
        runtime_env["working_dir"] = str(workdir)
    package = raydl_package(workdir)
    if package is not None:
        runtime_env["py_modules"] = [str(package)]
    if pip:
        runtime_env["pip"] = list(pip)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", Path(name).stem)
    return JobRequest(
        entrypoint=" ".join(shlex.quote(a) for a in argv),
        runtime_env=runtime_env,
        submission_id=f"raydl-{stem}-{stamp}-{secrets.token_hex(2)}",
        metadata={"raydl_experiment": name, "raydl_command": "tune" if tune else "run"},
    )


def tail(client: Any, job_id: str, write: Callable[[str], Any] = sys.stdout.write) -> str:
    """Print the job's output as it comes until the job ends; returns its final status."""

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)
            sys.stdout.flush()

    try:
        asyncio.run(follow())
    except RuntimeError:
        pass  # the log socket closed early; the status poll below still finds the end
    while True:
        status = str(_call(f"job {job_id}", lambda: client.get_job_status(job_id)))
        if status in EXIT_BY_STATUS:
            return status
        time.sleep(1.0)


def submit(request: JobRequest, address: str | None, wait: bool = True) -> int:
    """Submit, print the job id, then (by default) tail its logs; exit code by status."""
    client = connect(address)
    workdir = request.runtime_env.get("working_dir")
    if workdir:
        files, size = upload_size(Path(workdir), request.runtime_env["excludes"])
        print(f"raydl submit: uploading {workdir}: {files} files, {size / 2**20:.1f} MiB "
              "(never: credentials, data/, runs/, .git, environments; see raydl.jobs)", flush=True)
    else:
        print("raydl submit: uploading no directory (a built-in experiment; --working-dir DIR "
              "sends one)", flush=True)
    for module in request.runtime_env.get("py_modules", []):
        print(f"raydl submit: sending {module} with the job, so the cluster runs this raydl "
              f"({raydl.version()})", flush=True)
    job_id = _call("submit", lambda: client.submit_job(
        entrypoint=request.entrypoint, submission_id=request.submission_id,
        runtime_env=request.runtime_env, metadata=request.metadata))
    print(f"raydl submit: job {job_id} submitted to {jobs_address(address)}", flush=True)
    print(f"  entrypoint: {request.entrypoint}", flush=True)
    if not wait:
        print(f"  follow: raydl jobs logs {job_id} --follow; stop: raydl jobs stop {job_id}")
        return 0
    try:
        status = tail(client, job_id)
    except KeyboardInterrupt:
        print(f"\nraydl submit: stopped following; job {job_id} keeps running "
              f"(raydl jobs logs {job_id} --follow, raydl jobs stop {job_id})", file=sys.stderr)
        return 130
    info = _call(f"job {job_id}", lambda: client.get_job_info(job_id))
    # Ray's message for a failed job goes on with the log's tail, printed above already.
    detail = f": {_reason(info.message)}" if status != "SUCCEEDED" and info.message else ""
    print(f"raydl submit: job {job_id} {status}{detail}", flush=True)
    return EXIT_BY_STATUS[status]


def list_jobs(address: str | None) -> int:
    client = connect(address)
    jobs = _call("jobs list", client.list_jobs)
    jobs = sorted(jobs, key=lambda j: j.start_time or 0)
    print(f"{'JOB ID':<44}{'STATUS':<11}{'STARTED':<21}ENTRYPOINT")
    for job in jobs:
        started = (datetime.fromtimestamp(job.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
                   if job.start_time else "-")
        print(f"{(job.submission_id or job.job_id or '-'):<44}{str(job.status):<11}"
              f"{started:<21}{job.entrypoint}")
    return 0


def job_logs(job_id: str, address: str | None, follow: bool = False) -> int:
    client = connect(address)
    if follow:
        _call(f"job {job_id}", lambda: client.get_job_status(job_id))  # unknown id: one line
        return EXIT_BY_STATUS[tail(client, job_id)]
    sys.stdout.write(_call(f"job {job_id}", lambda: client.get_job_logs(job_id)))
    return 0


def stop_job(job_id: str, address: str | None, timeout_s: float = 60.0) -> int:
    client = connect(address)
    _call(f"job {job_id}", lambda: client.stop_job(job_id))
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = str(_call(f"job {job_id}", lambda: client.get_job_status(job_id)))
        if status in EXIT_BY_STATUS:
            break
        time.sleep(0.5)
    print(f"raydl jobs: job {job_id} {status or 'stopping'}")
    return 0
