"""`raydl run | tune | submit | jobs | check | list | eval | sample | viz`: the command line over the same API tests and Tune use."""

from __future__ import annotations

import argparse
import functools
import typing
import sys
from pathlib import Path

from raydl.config import ConfigError, TrainingError

EXIT_USAGE = 2  # bad input: config errors, unknown names, unusable paths
EXIT_FAILED = 1  # training itself failed (after any retries)
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other raydl error."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"raydl: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


@functools.lru_cache(maxsize=1)  # built once per process; parse_args leaves it as it was
def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="raydl", description="Train RL agents and deep models on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train an experiment until its stop criterion")
    run.add_argument("experiment", nargs="?", help="experiment file, or a name in experiments/")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field, e.g. --set algo.lr=3e-4 (repeatable)")
    run.add_argument("--out", default="runs", help="parent directory of run directories")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded)")
    run.add_argument("--no-progress", action="store_true", help="no live progress line")

    tune = sub.add_parser("tune", help="search an experiment's tune: space with Ray Tune")
    tune.add_argument("experiment", nargs="?", help="experiment file with a tune: section, or its name")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field of the experiment (or of tune.*) before searching")
    tune.add_argument("--num-samples", type=int, help="trials to sample (default: tune.num_samples)")
    tune.add_argument("--out", default="runs", help="parent directory of searches (tune.storage_path wins)")
    tune.add_argument("--resume", metavar="SEARCH_DIR", help="continue an interrupted search")
    tune.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded)")

    submit = sub.add_parser("submit", help="run (or --tune) an experiment as a job on a Ray cluster")
    submit.add_argument("experiment", help="experiment file inside --working-dir, or a built-in name")
    submit.add_argument("--address", help="the cluster's Jobs API, e.g. http://HEAD:8265 "
                        "(default: $RAY_API_SERVER_ADDRESS, else an http $RAY_ADDRESS)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field (repeatable), checked here before submitting")
    submit.add_argument("--tune", action="store_true", help="run `raydl tune` instead of `raydl run`")
    submit.add_argument("--num-samples", type=int, help="with --tune: trials to sample")
    submit.add_argument("--working-dir", default=".",
                        help="directory uploaded with the job, its working directory (default: .)")
    submit.add_argument("--pip", action="append", default=[], metavar="PACKAGE",
                        help="extra pip requirement installed for the job (repeatable)")
    submit.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for the job (repeatable)")
    submit.add_argument("--out", default=None,
                        help="parent directory of the outputs, on the cluster (default: ~/raydl_runs)")
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

    check = sub.add_parser("check", help="check an experiment (and its tune: section) without running it")
    check.add_argument("experiment", help="experiment file or a name in experiments/")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, as for run (repeatable)")

    sub.add_parser("list", help="list experiment files and registered kinds")

    ev = sub.add_parser("eval", help="play episodes (RL), test a classifier or an ensemble, "
                        "or generate text with a language model")
    ev.add_argument("checkpoint", nargs="+",
                    help="checkpoint or run directories (latest); several classifiers: an ensemble")
    ev.add_argument("--episodes", type=int, default=10, help="whole episodes to play")
    ev.add_argument("--gif", type=Path, help="write the first episode as an animated GIF")
    ev.add_argument("--epsilon", type=float, default=None,
                    help="random-action rate (default: 0.05 on Atari as in the DQN papers, "
                         "else 0)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    ev.add_argument("--generate", type=int, default=0, metavar="N",
                    help="language models: print N generated characters")
    ev.add_argument("--prompt", default="", help="language models: text to continue")
    ev.add_argument("--temperature", type=float, default=0.8,
                    help="language models: sampling temperature")
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
    return p


def _cmd_viz(args: argparse.Namespace) -> int:
    from raydl.sl.evaluate import load_checkpoint
    from raydl.sl.viz import write_visualizations

    directory = _resolve_checkpoint(args.checkpoint)
    if not args.image.is_file():
        raise ConfigError(f"--image {args.image}: no such file")
    loaded = load_checkpoint(directory)
    if loaded.cfg.kind != "classify":
        raise ConfigError(f"{directory}: viz needs an image classifier, this is {loaded.cfg.kind}")
    written = write_visualizations(loaded, args.image, args.out)
    for path in written:
        print(path)
    print(f"raydl viz: {len(written) - 1} activation grids and the first layer's filters in {args.out}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from raydl.gen.scoring import save_grid
    from raydl.gen.trainer import load_generator, sample_images

    if args.n < 1:
        raise ConfigError(f"--n: expected an integer >= 1, got {args.n}")
    if args.nrow < 1:
        raise ConfigError(f"--nrow: expected an integer >= 1, got {args.nrow}")
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: expected a .png file name")
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: directory {args.out.parent} does not exist")
    directory = _resolve_checkpoint(args.checkpoint)
    cfg, net = load_generator(directory)
    images = sample_images(cfg, net, args.n, seed=args.seed)
    save_grid(images, args.out, nrow=args.nrow)
    print(f"raydl sample: {args.n} images of {cfg.title} from {directory} in {args.out}")
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
    from raydl.config import experiment_from_data, read_experiment

    data = read_experiment(args.experiment, args.overrides)
    if "tune" in data:
        from raydl.tune import load_tune_spec

        load_tune_spec(data)
    data.pop("tune", None)
    cfg = experiment_from_data(data)
    print(f"raydl check: {args.experiment}: a valid {cfg.kind} experiment")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    from raydl import registry
    from raydl.config import read_yaml

    print("experiments (raydl run NAME):")
    for path in registry.experiment_files():
        try:
            data = read_yaml(path)
            where = f"env={data['env']}" if "env" in data else f"data={(data.get('data') or {}).get('source', 'digits')}"
            print(f"  {path.stem:<28} kind={data.get('kind')}  {where}")
        except ConfigError as exc:
            print(f"  {path.stem:<28} (unreadable: {exc})")
    print("kinds: " + ", ".join(registry.kinds()))
    return 0


def _resolve_checkpoint(text: str) -> Path:
    """A checkpoint directory, or the newest checkpoint of a run directory (RL runs keep
    checkpoints/iter_*, supervised runs checkpoints/epoch_*)."""
    from raydl import checkpoint as ckpt
    from raydl.sl.trainer import latest_epoch_checkpoint

    path = Path(text)
    if not path.exists():
        raise ConfigError(f"{path}: no such checkpoint or run directory")
    if (path / ckpt.COMPLETE_MARKER).is_file():
        return path
    return latest_epoch_checkpoint(path) or ckpt.latest_checkpoint(path)


def _eval_supervised(args: argparse.Namespace, directories: list[Path]) -> int:
    from raydl.sl.evaluate import evaluate_classifiers, generate, load_checkpoint

    models = [load_checkpoint(d) for d in directories]
    if models[0].cfg.kind == "language_model":
        if len(models) > 1:
            raise ConfigError("eval: give one language-model checkpoint")
        if args.generate < 1:
            raise ConfigError("eval: a language model needs --generate N (characters to print)")
        print(generate(models[0], args.prompt, args.generate, args.temperature, args.seed))
        return 0
    if any(m.cfg.kind != "classify" for m in models):
        raise ConfigError("eval: an ensemble takes classifier checkpoints only")
    report = evaluate_classifiers(models)
    for d, acc in zip(directories, report["accuracies"]):
        print(f"{d}: {report['split']} accuracy {acc:.4f}")
    line = f"raydl eval: {report['examples']} {report['split']} examples"
    if len(models) > 1:
        line += f", ensemble of {len(models)} accuracy {report['ensemble_accuracy']:.4f}"
        line += f" (best single {max(report['accuracies']):.4f})"
    else:
        line += f", accuracy {report['accuracies'][0]:.4f}"
    print(line)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from raydl import registry
    from raydl.config import load_experiment
    from raydl.envs.atari import is_atari
    from raydl.rl.evaluate import evaluate

    if args.episodes < 1:
        raise ConfigError(f"--episodes: expected an integer >= 1, got {args.episodes}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise ConfigError(f"--epsilon: expected a number in [0, 1], got {args.epsilon}")
    directories = [_resolve_checkpoint(c) for c in args.checkpoint]
    cfg = load_experiment(directories[0] / "config.yaml")
    if cfg.kind in ("classify", "language_model"):
        return _eval_supervised(args, directories)
    if cfg.kind in ("gan", "vae"):
        raise ConfigError(f"eval: {directories[0]} is a {cfg.kind} checkpoint; sample it with "
                          "`raydl sample CHECKPOINT --n 64 --out grid.png`")
    if len(directories) > 1:
        raise ConfigError("eval: RL checkpoints are evaluated one at a time")
    directory = directories[0]
    epsilon = args.epsilon
    if epsilon is None:
        epsilon = 0.05 if is_atari(cfg.env) else 0.0
    net = registry.algorithm_class(cfg.kind).load_policy(directory, cfg)
    result = evaluate(cfg.env, net, args.episodes, seed=args.seed, epsilon=epsilon,
                      gif=args.gif, atari=getattr(cfg, "atari", None))
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {i + 1}: return {ret:.1f}, length {length}")
    print(
        f"raydl eval: {cfg.env}, {len(result.returns)} episodes, return mean "
        f"{result.mean:.1f} (min {min(result.returns):.1f}, max {max(result.returns):.1f})"
        + (f"; gif in {result.gif}" if result.gif else "")
    )
    return 0


# Every character str.splitlines() breaks at, written as its escape.
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


def _one_line(exc: BaseException) -> str:
    """Errors are written as one line; a line break in one can only come from the user's
    input (a key or value quoted back), so it is shown escaped."""
    return str(exc).translate(_LINE_BREAKS)


def main(argv: list[str] | None = None) -> int:
    from raydl.checkpoint import CheckpointError

    args = _parser().parse_args(argv)
    handlers = {"run": _cmd_run, "list": _cmd_list, "eval": _cmd_eval, "viz": _cmd_viz,
                "sample": _cmd_sample, "tune": _cmd_tune, "submit": _cmd_submit, "check": _cmd_check,
                "jobs": _cmd_jobs}
    try:
        return handlers[args.command](args)
    except (ConfigError, CheckpointError) as exc:
        print(f"raydl: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingError as exc:
        print(f"raydl: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("raydl: interrupted; a checkpoint was written, continue with "
              "`raydl run --resume RUN_DIR`", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
