"""`raydl run | tune | submit | jobs | check | list | eval | sample | viz | export`: the command line over the same API tests and Tune use."""

from __future__ import annotations

import argparse
import functools
import sys
import typing
from pathlib import Path
from typing import Any

import raydl
from raydl.errors import CheckpointError, ConfigError, TrainingError, one_line

EXIT_USAGE = 2  # bad input: config errors, unknown names, unusable paths
EXIT_FAILED = 1  # training itself failed (after any retries)
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other raydl error."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"raydl: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class _Version(argparse.Action):
    """--version, looked up only when asked (reading the installed metadata takes time
    every other command would pay)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"raydl {raydl.version()}")
        parser.exit()


def _overrides(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help=text)


@functools.lru_cache(maxsize=1)  # built once per process; parse_args leaves it as it was
def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="raydl", description="Train RL agents and deep models on Ray.")
    p.add_argument("--version", action=_Version, nargs=0, help="print raydl's version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run_and_tune(sub)
    _add_cluster_commands(sub)
    check = sub.add_parser("check", help="check an experiment (and its tune: section) without running it")
    check.add_argument("experiment", help="experiment file or a built-in name (raydl list)")
    _overrides(check, "override a field, as for run (repeatable)")
    config = sub.add_parser("config", help="print an experiment with every field, its default and "
                            "its help: a file to save, edit and run")
    config.add_argument("experiment", help="experiment file or a built-in name (raydl list)")
    _overrides(config, "override a field, as for run (repeatable)")
    sub.add_parser("list", help="list experiment files and registered kinds")
    plot = sub.add_parser("plot", help="overlay the curves of runs (or of a search's trials)")
    plot.add_argument("runs", nargs="+", type=Path, help="run directories or raydl tune search folders")
    plot.add_argument("--metric", help="the metric to draw (default: the first run's headline)")
    plot.add_argument("--x", choices=["env_steps", "epoch", "iteration", "time_total_s"],
                      help="x axis (default: env_steps where there are, else epoch)")
    plot.add_argument("--out", type=Path, required=True, help="PNG file to write")
    _add_checkpoint_commands(sub)
    _add_export_command(sub)
    return p


def _add_run_and_tune(sub: Any) -> None:
    run = sub.add_parser("run", help="train an experiment until its stop criterion")
    run.add_argument("experiment", nargs="?", help="experiment file, or a built-in name (raydl list)")
    _overrides(run, "override a field, e.g. --set algo.lr=3e-4 (repeatable)")
    run.add_argument("--out", default="runs", help="parent directory of run directories")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded)")
    run.add_argument("--no-progress", action="store_true", help="no live progress line")

    tune = sub.add_parser("tune", help="search an experiment's tune: space with Ray Tune")
    tune.add_argument("experiment", nargs="?", help="experiment file with a tune: section, or its name")
    _overrides(tune, "override a field of the experiment (or of tune.*) before searching")
    tune.add_argument("--num-samples", type=int, help="trials to sample (default: tune.num_samples)")
    tune.add_argument("--out", default="runs", help="parent directory of searches (tune.storage_path wins)")
    tune.add_argument("--resume", metavar="SEARCH_DIR", help="continue an interrupted search")
    tune.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded)")


def _add_cluster_commands(sub: Any) -> None:
    submit = sub.add_parser("submit", help="run (or --tune) an experiment as a job on a Ray cluster")
    submit.add_argument("experiment", help="experiment file inside --working-dir, or a built-in name")
    submit.add_argument("--address", help="the cluster's Jobs API, e.g. http://HEAD:8265 "
                        "(default: $RAY_API_SERVER_ADDRESS, else an http $RAY_ADDRESS)")
    _overrides(submit, "override a field (repeatable), checked here before submitting")
    submit.add_argument("--tune", action="store_true", help="run `raydl tune` instead of `raydl run`")
    submit.add_argument("--num-samples", type=int, help="with --tune: trials to sample")
    submit.add_argument("--working-dir", default=None,
                        help="directory uploaded with the job, its working directory (default: "
                        "nothing for a built-in experiment, . for an experiment file); "
                        "credentials, data/ and runs/ are never uploaded")
    submit.add_argument("--pip", action="append", default=[], metavar="PACKAGE",
                        help="extra pip requirement installed for the job (repeatable)")
    submit.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for the job (repeatable)")
    submit.add_argument("--out", default=None,
                        help="parent directory of the outputs on the cluster: absolute or under ~/ "
                        "(default: ~/raydl_runs)")
    submit.add_argument("--no-wait", action="store_true",
                        help="print the job id and return instead of following the logs")

    jobs = sub.add_parser("jobs", help="list the cluster's jobs, print a job's logs, stop a job")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    for name, text in (("list", "jobs on the cluster, oldest first"),
                       ("logs", "a job's output so far (--follow: until it ends)"),
                       ("stop", "stop a running job")):
        cmd = jobs_sub.add_parser(name, help=text)
        if name != "list":
            cmd.add_argument("job_id", help="the id `raydl submit` printed")
        if name == "logs":
            cmd.add_argument("--follow", action="store_true", help="keep printing until the job ends")
        cmd.add_argument("--address", help="the cluster's Jobs API, e.g. http://HEAD:8265")


def _add_checkpoint_commands(sub: Any) -> None:
    ev = sub.add_parser("eval", help="play episodes (RL), test a classifier or an ensemble, "
                        "or generate text with a language model")
    ev.add_argument("checkpoint", nargs="+",
                    help="checkpoint or run directories (latest); several classifiers: an ensemble")
    ev.add_argument("--episodes", type=int, default=10, help="whole episodes to play")
    ev.add_argument("--gif", type=Path, help="write the first episode as an animated GIF")
    ev.add_argument("--video", type=Path, help="write the first episode as an MP4 video")
    ev.add_argument("--epsilon", type=float, default=None,
                    help="random-action rate (default: 0.05 on Atari as in the DQN papers, "
                         "else 0)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    ev.add_argument("--generate", type=int, default=0, metavar="N",
                    help="language models: print N generated characters")
    ev.add_argument("--prompt", default="", help="language models: text to continue")
    ev.add_argument("--temperature", type=float, default=0.8,
                    help="language models: sampling temperature")
    ev.add_argument("--vote", choices=("soft", "hard"), default="soft",
                    help="classifier ensembles: average the probabilities (soft) or take the "
                         "majority of the models' classes (hard)")
    ev.add_argument("--top", type=int, default=10, metavar="N",
                    help="cf_rbm: recommend each user's N best unrated items")
    ev.add_argument("--user", type=int, action="append", default=[], metavar="ID",
                    help="cf_rbm: the user to recommend to, by id in the ratings file "
                         "(repeatable; default: every user)")
    ev.add_argument("--onnx", type=Path, help="RL: play the policy `raydl export` wrote to this "
                    "file, by onnxruntime, instead of the checkpoint's network")
    sample = sub.add_parser("sample", help="new images from a GAN or VAE checkpoint, as a PNG grid")
    sample.add_argument("checkpoint", help="a gan/vae checkpoint or run directory (latest)")
    sample.add_argument("--n", type=int, default=64, help="images to generate")
    sample.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sample.add_argument("--seed", type=int, default=0, help="seed of the noise")
    sample.add_argument("--nrow", type=int, default=8, help="images per grid row")
    viz = sub.add_parser("viz", help="PNG grids of a CNN's activation maps for one image")
    viz.add_argument("checkpoint", help="a classifier checkpoint or run directory (latest)")
    viz.add_argument("--image", type=Path, required=True, help="the image to look at")
    viz.add_argument("--out", type=Path, required=True, help="directory for the PNG files")


def _add_export_command(sub: Any) -> None:
    from raydl.export import FORMATS

    export = sub.add_parser("export", help="write a checkpoint's network as ONNX or TorchScript: "
                            "greedy policy, classifier or generator, preprocessing inside")
    export.add_argument("checkpoint", help="a checkpoint or run directory (latest)")
    export.add_argument("--format", choices=FORMATS, default="onnx", help="file format")
    export.add_argument("--out", type=Path, required=True, help="file to write")


def _checkpoint_kind(text: str) -> tuple[Path, Any]:
    """(checkpoint directory, its experiment) of a checkpoint or run directory (newest)."""
    from raydl.checkpoint import newest_checkpoint
    from raydl.config import load_experiment

    directory = newest_checkpoint(Path(text))
    return directory, load_experiment(directory / "config.yaml")


def _cmd_viz(args: argparse.Namespace) -> int:
    from raydl import registry

    directory, cfg = _checkpoint_kind(args.checkpoint)
    viz = registry.entry_point(cfg.kind, "visualize")
    if viz is None:
        raise ConfigError(f"{directory}: viz needs an image classifier, this is {cfg.kind}; "
                          f"allowed kinds: {', '.join(registry.kinds_with('visualize'))}")
    viz(directory, args.image, args.out)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from raydl import registry

    if args.n < 1:
        raise ConfigError(f"--n: expected an integer >= 1, got {args.n}")
    if args.nrow < 1:
        raise ConfigError(f"--nrow: expected an integer >= 1, got {args.nrow}")
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: expected a .png file name")
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: directory {args.out.parent} does not exist")
    directory, cfg = _checkpoint_kind(args.checkpoint)
    sample = registry.entry_point(cfg.kind, "sample")
    if sample is None:
        raise ConfigError(f"{directory}: not a generative checkpoint (kind {cfg.kind}); "
                          f"allowed kinds: {', '.join(registry.kinds_with('sample'))}")
    sample(directory, args.n, args.seed, args.nrow, args.out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from raydl.export import export_command

    export_command(args.checkpoint, args.format, args.out)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from raydl.run import train

    if args.experiment and args.resume:
        raise ConfigError("run: give an experiment or --resume RUN_DIR, not both")
    train(
        args.experiment,
        args.overrides,
        out=args.out,
        resume=args.resume,
        address=args.address,
        progress=False if args.no_progress else None,
    )
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from raydl.tune import tune_experiment

    if args.experiment and args.resume:
        raise ConfigError("tune: give an experiment or --resume SEARCH_DIR, not both")
    if args.resume and (args.overrides or args.num_samples):
        raise ConfigError("tune --resume: continues the search as it was; --set and --num-samples are not allowed")
    tune_experiment(args.experiment, args.overrides, num_samples=args.num_samples, out=args.out,
                    resume=args.resume, address=args.address)
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from raydl.jobs import DEFAULT_CLUSTER_OUT, build_request, submit

    request = build_request(args.experiment, args.overrides, tune=args.tune,
                            num_samples=args.num_samples, working_dir=args.working_dir,
                            pip=args.pip, env=args.env, out=args.out or DEFAULT_CLUSTER_OUT)
    return submit(request, args.address, wait=not args.no_wait)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from raydl import jobs

    if args.jobs_command == "list":
        return jobs.list_jobs(args.address)
    if args.jobs_command == "logs":
        return jobs.job_logs(args.job_id, args.address, follow=args.follow)
    return jobs.stop_job(args.job_id, args.address)


def _cmd_check(args: argparse.Namespace) -> int:
    """Every check `raydl run` / `raydl tune` make before any work, and nothing else."""
    from raydl import registry
    from raydl.config import experiment_from_data, read_experiment

    data = read_experiment(args.experiment, args.overrides)
    if "tune" in data:
        from raydl.tune_spec import load_tune_spec

        cfg = load_tune_spec(data).cfg  # the experiment's check step included
    else:
        cfg = experiment_from_data(data)
        registry.check(cfg)
    env = getattr(cfg, "env", None)
    if isinstance(env, str) and ":" in env and not env.startswith("ALE/"):  # the user's own env
        from raydl.envs.spec import env_checker_problems

        for problem in env_checker_problems(env):
            print(f"raydl check: {env}: {problem}")
    print(f"raydl check: {args.experiment}: a valid {cfg.kind} experiment")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    """The resolved experiment as commented YAML on stdout (checked as `raydl check` does
    its values; the world is not looked at)."""
    from raydl.config import experiment_from_data, read_experiment
    from raydl.config_doc import commented_yaml

    data = read_experiment(args.experiment, args.overrides)
    tune = data.pop("tune", None)
    cfg = experiment_from_data(data)
    sets = "".join(f" --set {s}" for s in args.overrides)
    sys.stdout.write(commented_yaml(cfg, f"raydl config {args.experiment}{sets}", tune))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from raydl.plot import plot_runs

    drawn = plot_runs(args.runs, args.out, args.metric, args.x)
    print(f"raydl plot: {len(drawn)} curves in {args.out}")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    from raydl import registry
    from raydl.config import read_yaml

    print("experiments (raydl run NAME):")
    for path in registry.experiment_files():
        try:
            data = read_yaml(path)
            section = data.get("data") or {}  # images and text name a source; ratings a file
            source = section.get("source") or section.get("ratings_file") or "digits"
            where = f"env={data['env']}" if "env" in data else f"data={source}"
            print(f"  {path.stem:<28} kind={data.get('kind')}  {where}")
        except ConfigError as exc:
            print(f"  {path.stem:<28} (unreadable: {exc})")
    print("kinds: " + ", ".join(registry.kinds()))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from raydl import registry
    from raydl.checkpoint import newest_checkpoint
    from raydl.config import load_experiment

    if args.episodes < 1:
        raise ConfigError(f"--episodes: expected an integer >= 1, got {args.episodes}")
    if args.top < 1:
        raise ConfigError(f"--top: expected an integer >= 1, got {args.top}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise ConfigError(f"--epsilon: expected a number in [0, 1], got {args.epsilon}")
    if args.video is not None and args.video.suffix.lower() != ".mp4":
        raise ConfigError(f"--video {args.video}: expected a .mp4 file (an animated GIF: --gif)")
    directories = [newest_checkpoint(Path(c)) for c in args.checkpoint]
    cfg = load_experiment(directories[0] / "config.yaml")
    if args.onnx is not None:
        _check_onnx_eval(args.onnx, cfg.kind)
    evaluate = registry.entry_point(cfg.kind, "evaluate")
    if evaluate is None:
        raise ConfigError(f"eval: {directories[0]} is a {cfg.kind} checkpoint; sample it with "
                          "`raydl sample CHECKPOINT --n 64 --out grid.png`")
    options = registry.EvalOptions(
        episodes=args.episodes, gif=args.gif, video=args.video, epsilon=args.epsilon, seed=args.seed,
        generate=args.generate, prompt=args.prompt, temperature=args.temperature, onnx=args.onnx,
        vote=args.vote, top=args.top, users=tuple(args.user))
    evaluate(cfg, directories, options)
    return 0


def _check_onnx_eval(path: Path, kind: str) -> None:
    """`raydl eval --onnx`: an RL run, onnxruntime installed, the file there."""
    from raydl import registry
    from raydl.export import require_onnx

    if registry.family(kind) != "stepped":
        rl = [k for k in registry.kinds() if registry.family(k) == "stepped"]
        raise ConfigError(f"eval --onnx: plays episodes of RL kinds ({', '.join(rl)}); this "
                          f"checkpoint is {kind}")
    require_onnx("eval --onnx", ("onnxruntime",))
    if not path.is_file():
        raise ConfigError(f"--onnx {path}: no such file")


def main(argv: list[str] | None = None) -> int:
    from raydl.profile import mark

    mark("driver: raydl imported")
    args = _parser().parse_args(argv)
    handlers = {"run": _cmd_run, "list": _cmd_list, "eval": _cmd_eval, "viz": _cmd_viz,
                "sample": _cmd_sample, "tune": _cmd_tune, "submit": _cmd_submit, "check": _cmd_check,
                "config": _cmd_config, "plot": _cmd_plot, "export": _cmd_export,
                "jobs": _cmd_jobs}
    try:
        code = handlers[args.command](args)
        mark("driver: command done")
        return code
    except (ConfigError, CheckpointError) as exc:
        print(f"raydl: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingError as exc:
        print(f"raydl: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        # A stepped run says what it saved (raydl.run); other commands save nothing here
        # (a fit's checkpoints are Ray Train's, each written whole at an epoch's end).
        print(getattr(exc, "line", None) or "raydl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The `raydl` console command: `main()`, then a prompt exit.

    Once `main()` returns, every file of the run is written and closed. What is left is
    the interpreter's teardown, which destroys torch's and Ray's modules object by object:
    0.5-1.5 s added to every command. So the remaining threads are joined, the exit
    handlers run (Ray's shutdown and logging's flush among them), the streams are flushed
    and the process ends with main()'s exit code. An exception still leaves through the
    normal path, traceback and all."""
    import atexit
    import os
    import threading

    # As `python -m raydl` would: the user's own modules (`env: my_envs:Maze-v0`) import
    # from the current directory; Ray puts the same directory on its workers' path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    code = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        # Now rather than in Ray's exit hook, which first sleeps 0.5 s so that worker log
        # lines reach the terminal; raydl's Ray sends none (log_to_driver=False).
        ray.shutdown()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
