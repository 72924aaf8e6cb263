"""Property-based: thousands of malformed experiment files and `--set` values, zero
tracebacks; every one a one-line error with exit code 2 (issue 9).

Inputs go through `raydl check`, which runs exactly the checks `raydl run` and `raydl tune`
run before any work (the same `read_experiment` / `experiment_from_data` /
`load_tune_spec`), so a surprise valid input cannot start a training run. A few mutated
files also go through `raydl run` to show it refuses them with the same line.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import tempfile
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raydl import registry
from raydl.cli import main
from raydl.config import read_yaml

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORKDIR = Path(tempfile.mkdtemp(prefix="raydl-bad-input-"))
EXPERIMENTS = {p.stem: read_yaml(p) for p in registry.experiment_files()}


def cli(*argv: str) -> tuple[int, str]:
    """(exit code, stderr) of the CLI in this process; any exception that escapes `main`
    is a traceback a user would see, and fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors, as the shell would see them
            code = exc.code
    return code, err.getvalue()


def assert_clean(code: int, err: str, must_fail: bool) -> None:
    if must_fail:
        assert code == 2, f"accepted: {err!r}"
    assert code in (0, 2)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("raydl: error: "), err


def dump(data: Any, **kwargs: Any) -> str:
    """yaml.safe_dump with libyaml's emitter: thousands of examples, so speed matters."""
    return yaml.dump(data, Dumper=yaml.CSafeDumper, **kwargs)


def write(text: str) -> Path:
    path = WORKDIR / "exp.yaml"
    path.write_text(text)
    return path


# -- anything at all --------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["1e999", "-0", "nan", ".inf", "~", "0x1F", "1_000", "[", "{a: 1", "'"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
FIELD_NAMES = sorted({k for d in EXPERIMENTS.values() for k in d} | {
    f"{s}.{k}" for d in EXPERIMENTS.values() for s, sec in d.items() if isinstance(sec, dict)
    for k in sec})
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))


@settings(max_examples=500, **SETTINGS)
@given(doc=st.one_of(
    st.text(max_size=200),
    st.dictionaries(keys, values, max_size=6).map(lambda d: dump(d)),
    st.sampled_from(list(EXPERIMENTS.values())).flatmap(
        lambda base: st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=3).map(
            lambda extra: dump({**base, **extra}))),
    st.sampled_from(["[" * 3000, "a: " + "9" * 5000, "kind: dqn\n\tenv: x", "\x00\x01", "- 1\n- 2"]),
))
def test_any_experiment_file_is_accepted_or_refused_in_one_line(doc: str) -> None:
    assert_clean(*cli("check", str(write(doc))), must_fail=False)


@settings(max_examples=500, **SETTINGS)
@given(name=st.sampled_from(sorted(EXPERIMENTS)),
       sets=st.lists(st.one_of(
           st.text(max_size=30),
           st.tuples(keys, st.text(max_size=20)).map(lambda kv: f"{kv[0]}={kv[1]}"),
           st.tuples(keys, values).map(lambda kv: f"{kv[0]}={dump(kv[1]).strip()}"),
       ), min_size=1, max_size=3))
def test_any_set_values_are_accepted_or_refused_in_one_line(name: str, sets: list[str]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    assert_clean(*cli("check", name, *args), must_fail=False)


# -- surely malformed: a real experiment with one thing broken ------------------------

def _fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dict[str, Any]]]:
    """(dotted name, type, metadata) of every leaf field of a config dataclass."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp, dict(f.metadata)))
    return out


def _sections(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = [prefix.rstrip(".")] if prefix else [""]
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _sections(hints[f.name], f"{prefix}{f.name}.")
    return out


def _breakages(name: str) -> st.SearchStrategy[tuple[str, Any]]:
    """(dotted key, value) pairs that no correct checker may accept for this experiment."""
    cls = registry.config_class(EXPERIMENTS[name]["kind"])
    fields = _fields(cls)
    options = [
        # a key that exists nowhere, in any section
        st.tuples(st.sampled_from(_sections(cls)), st.from_regex(r"zz[a-z_]{0,8}", fullmatch=True))
        .map(lambda sk: (f"{sk[0]}.{sk[1]}".lstrip("."), 1)),
    ]
    numeric = [(k, tp) for k, tp, _ in fields if tp in (int, float, bool)]
    if numeric:  # a field of a scalar type given a mapping, a list or a word
        options.append(st.tuples(st.sampled_from(numeric), st.one_of(
            st.dictionaries(st.text(min_size=1, max_size=5), scalars, min_size=1, max_size=2),
            st.lists(scalars, min_size=1, max_size=3),
            st.from_regex(r"[g-z]{1,8}", fullmatch=True))).map(lambda kv: (kv[0][0], kv[1])))
    bounded = [(k, m) for k, tp, m in fields if tp in (int, float)
               and any(m.get(b) is not None for b in ("ge", "gt", "le", "lt"))]
    if bounded:  # a number outside the field's bounds
        def outside(km: tuple[str, dict[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
            key, m = km
            lows = [m[b] for b in ("ge", "gt") if m.get(b) is not None]
            highs = [m[b] for b in ("le", "lt") if m.get(b) is not None]
            bad = []
            if lows:
                bad.append(st.integers(min_value=-10**6, max_value=int(min(lows)) - 1)
                           if m.get("gt") is None else st.just(min(lows)))
            if highs:
                bad.append(st.integers(min_value=int(max(highs)) + 1, max_value=10**9)
                           if m.get("lt") is None else st.just(max(highs)))
            return st.one_of(bad).map(lambda v: (key, v))
        options.append(st.sampled_from(bounded).flatmap(outside))
    choices = [(k, tp) for k, tp, _ in fields if get_origin(tp) is Literal]
    if choices:  # a word that is not one of the allowed choices
        options.append(st.tuples(st.sampled_from(choices), st.from_regex(r"Q[a-z]{0,6}", fullmatch=True))
                       .map(lambda kv: (kv[0][0], kv[1])))
    options.append(st.just(("kind", "dqm")))
    return st.one_of(options)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = data
    for part in path:
        node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else node
    node[last] = value


def _draw_broken(data: st.DataObject) -> tuple[str, str, Any, Path]:
    """(experiment name, broken key, its bad value, the broken file)."""
    name = data.draw(st.sampled_from(sorted(EXPERIMENTS)))
    key, value = data.draw(_breakages(name))
    doc = copy.deepcopy(EXPERIMENTS[name])
    _set(doc, key, value)
    return name, key, value, write(dump(doc))


@settings(max_examples=1200, **SETTINGS)
@given(data=st.data())
def test_every_broken_experiment_is_one_line_with_exit_code_2(data: st.DataObject) -> None:
    name, key, value, path = _draw_broken(data)
    as_file = cli("check", str(path))
    assert_clean(*as_file, must_fail=True)
    # the same breakage as a --set override on the untouched experiment
    assert_clean(*cli("check", name, "--set", f"{key}={dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"),
                 must_fail=True)


@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_run_refuses_broken_experiments_with_the_same_line(data: st.DataObject) -> None:
    _, _, _, path = _draw_broken(data)
    checked = cli("check", str(path))
    assert_clean(*checked, must_fail=True)
    out = WORKDIR / "runs"
    ran = cli("run", str(path), "--out", str(out))
    assert ran == checked
    assert not out.exists() or not any(out.iterdir())  # nothing half-made


# -- aliases: a few hundred bytes of YAML that stand for gigabytes ------------------------

def alias_bomb(levels: int, fanout: int = 10) -> str:
    """A list whose YAML is a few hundred bytes and whose repr has fanout**levels items:
    each anchor is a list of `fanout` aliases of the one before."""
    items = ["&a0 [" + ", ".join(["1"] * fanout) + "]"]
    for i in range(1, levels + 1):
        items.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "[" + ", ".join(items) + "]"


def bomb_experiment(levels: int, where: str) -> str:
    section, key = where.split(".") if "." in where else ("", where)
    base = copy.deepcopy(EXPERIMENTS["dqn_cartpole"])
    text = dump({k: v for k, v in base.items() if k != (section or key)})
    value = alias_bomb(levels)
    if section:
        rest = {k: v for k, v in base[section].items() if k != key}
        return text + dump({section: rest}).rstrip() + f"\n  {key}: {value}\n"
    return text + f"{key}: {value}\n"


@settings(max_examples=40, **SETTINGS)
@given(levels=st.integers(min_value=1, max_value=9),
       where=st.sampled_from(["stop.env_steps", "algo.hidden", "algo.lr", "env", "stop", "seed"]))
def test_aliased_values_are_quoted_as_a_bounded_excerpt(levels: int, where: str) -> None:
    """Up to 10**10 items behind 500 bytes: `raydl check` and `raydl run` both refuse them
    in one short line (an error used to print the whole expansion: 358 MB at 7 levels)."""
    path = write(bomb_experiment(levels, where))
    assert len(path.read_bytes()) < 1000
    checked = cli("check", str(path))
    assert_clean(*checked, must_fail=True)
    assert len(checked[1]) < 600
    out = WORKDIR / "runs"
    assert cli("run", str(path), "--out", str(out)) == checked
    assert not out.exists() or not any(out.iterdir())
