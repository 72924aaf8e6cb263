"""`raydl export`: a checkpoint's inference network as one ONNX or TorchScript file.

Each family's registry entry point (`KindSpec.export`) builds an `Exportable` from a
checkpoint: a torch module that takes what a user has at hand (the raw env
observation, a [0, 1] image, token ids, noise) with every preprocessing step folded in,
an example input, and the names of its inputs and outputs. This module writes it:

- onnx: torch's own exporter (`torch.onnx.export(dynamo=True)`, which needs onnxscript),
  batch (and sequence) axes dynamic; the written file is then run once by onnxruntime
  on the example and compared with torch, so a file that disagrees is never left behind.
- torchscript: `torch.jit.trace` (PyTorch keeps TorchScript in maintenance; ONNX is the
  format to prefer), checked the same way after `torch.jit.load`.

Either file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raydl.errors import ConfigError, first_line

FORMATS = ("onnx", "torchscript")
# What the onnx format needs: the exporter (onnx, onnxscript) and the runtime that checks
# the file and plays it (`raydl eval --onnx`).
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install 'raydl[export]'"
# Largest |torch - exported| on the example for a file to be kept: float32 arithmetic in
# another order differs by ~1e-6 on these networks; 1e-4 leaves room, a wrong graph not.
TOLERANCE = 1e-4
_AXIS_NAMES = {0: "N", 1: "T"}  # dynamic axes as the summary shows them: batch, sequence


@dataclass
class Exportable:
    """A module ready to export, with what describes its interface."""

    module: Any  # torch.nn.Module in eval mode, raw inputs in, named outputs out
    example: tuple[Any, ...]  # example inputs (torch tensors), batch of at least 2
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    # per input, the axes of any size (batch; sequence for token ids)
    dynamic_axes: tuple[tuple[int, ...], ...] = field(default=((0,),))
    # per output, its axes of any size (None: the batch axis of each)
    output_axes: tuple[tuple[int, ...], ...] | None = None
    what: str = ""  # one line: what the inputs and outputs are, for the summary
    # False: torch's TorchScript-based ONNX exporter, for LSTMs over token ids, whose
    # sequence length torch.export fixes to the example's (it keeps them dynamic)
    dynamo: bool = True

    def axes_of_outputs(self) -> tuple[tuple[int, ...], ...]:
        return self.output_axes or tuple((0,) for _ in self.output_names)


def require_onnx(what: str, modules: Sequence[str] = ONNX_MODULES) -> None:
    """A one-line ConfigError when a module the onnx format needs is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{what}: needs {', '.join(missing)} (not installed); {INSTALL_HINT}")


def check_request(fmt: str, out: Path) -> None:
    """Everything about `raydl export`'s arguments, before any work."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; expected a file name")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    if fmt == "onnx":
        require_onnx("export --format onnx")


def exportable(directory: Path, cfg: Any) -> Exportable:
    """The kind's exportable module of checkpoint `directory` (its registry entry point)."""
    from raydl import registry

    build = registry.entry_point(cfg.kind, "export")
    if build is None:
        raise ConfigError(f"{directory}: kind {cfg.kind} has nothing to export; allowed kinds: "
                          f"{', '.join(registry.kinds_with('export'))}")
    return build(directory, cfg)


def export(item: Exportable, fmt: str, out: Path) -> float:
    """Write `item` to `out` in `fmt`; the largest difference between the written file
    and torch on the example (ConfigError, and no file, past TOLERANCE)."""
    import torch

    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    # checked on the example repeated along every dynamic axis: a size baked in shows
    check = tuple(t.repeat(*[2 if i in axes else 1 for i in range(t.dim())])
                  for t, axes in zip(item.example, item.dynamic_axes))
    try:
        with torch.no_grad():
            expected = _as_tuple(item.module(*check))
        try:
            if fmt == "onnx":
                _write_onnx(item, tmp)
                got = run_onnx(load_onnx(tmp), item.input_names, [t.numpy() for t in check])
            else:
                _write_torchscript(item, tmp)
                got = [t.numpy() for t in _as_tuple(load_torchscript(tmp)(*check))]
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch's exporter or the runtime refused it
            raise ConfigError(f"export: the {item.what} cannot be written as {fmt}: "
                              f"{first_line(exc)}; nothing written") from None
        diff = max_abs_diff([t.numpy() for t in expected], got)
        if not diff <= TOLERANCE:
            raise ConfigError(f"export: the {fmt} file differs from torch by {diff:.3g} on the "
                              f"example (allowed {TOLERANCE:g}); nothing written")
        tmp.replace(out)
        return diff
    finally:
        tmp.unlink(missing_ok=True)


def _write_onnx(item: Exportable, path: Path) -> None:
    import torch
    from torch.export import Dim

    names = dict(input_names=list(item.input_names), output_names=list(item.output_names))
    with warnings.catch_warnings():
        # the exporters warn about torch internals (deprecations inside torch.export) and,
        # for the TorchScript-based one, about itself
        warnings.simplefilter("ignore")
        if item.dynamo:
            dynamic = tuple({axis: Dim.DYNAMIC for axis in axes} for axes in item.dynamic_axes)
            torch.onnx.export(item.module, item.example, str(path), dynamo=True, **names,
                              dynamic_shapes=dynamic, external_data=False, verbose=False)
            return
        axes = dict(zip(item.input_names + item.output_names,
                        item.dynamic_axes + item.axes_of_outputs()))
        torch.onnx.export(item.module, item.example, str(path), dynamo=False, **names,
                          dynamic_axes={name: {a: _AXIS_NAMES[a] for a in dims}
                                        for name, dims in axes.items()})


def _write_torchscript(item: Exportable, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export; the format is asked for
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(item.module, item.example, check_trace=False)
    traced.save(str(path))


def load_torchscript(path: Path) -> Any:
    """A TorchScript file as a module ready for inference (no gradients kept)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation: the format is asked for
        module = torch.jit.load(str(path))
    return lambda *inputs: _no_grad(module, inputs)


def _no_grad(module: Any, inputs: tuple[Any, ...]) -> Any:
    import torch

    with torch.no_grad():
        return module(*inputs)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def max_abs_diff(expected: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    """Largest |a - b| over paired outputs (inf when their number or shapes differ)."""
    if len(expected) != len(got):
        return float("inf")
    worst = 0.0
    for a, b in zip(expected, got):
        if a.shape != b.shape:
            return float("inf")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return worst


def load_onnx(path: Path) -> Any:
    """An onnxruntime session of `path` on the CPU (one line when it cannot be read)."""
    require_onnx(f"{path}", ("onnxruntime",))
    import onnxruntime as ort

    if not path.is_file():
        raise ConfigError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: shape-inference notes are not the user's
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        text = str(exc).strip().splitlines()
        raise ConfigError(f"{path}: not a usable ONNX file: {text[0] if text else exc}") from None


def run_onnx(session: Any, names: Sequence[str], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The session's outputs for `inputs`, fed by name."""
    return list(session.run(None, dict(zip(names, inputs))))


def describe(item: Exportable) -> str:
    """`name dtype (shape)` of each input and output, batch axes shown as N."""
    def one(name: str, tensor: Any, dynamic: tuple[int, ...]) -> str:
        dims = [_AXIS_NAMES.get(i, "?") if i in dynamic else str(s)
                for i, s in enumerate(tensor.shape)]
        return f"{name} {str(tensor.dtype).removeprefix('torch.')} ({', '.join(dims)})"

    import torch

    with torch.no_grad():
        outputs = _as_tuple(item.module(*item.example))
    ins = [one(n, t, d) for n, t, d in zip(item.input_names, item.example, item.dynamic_axes)]
    outs = [one(n, t, d) for n, t, d in zip(item.output_names, outputs, item.axes_of_outputs())]
    return f"{', '.join(ins)} -> {', '.join(outs)}"


def export_command(checkpoint: str, fmt: str, out: Path) -> None:
    """`raydl export`: the checks, then the newest checkpoint's network written to `out`."""
    from raydl.checkpoint import newest_checkpoint
    from raydl.config import load_experiment

    check_request(fmt, out)
    directory = newest_checkpoint(Path(checkpoint))
    cfg = load_experiment(directory / "config.yaml")
    item = exportable(directory, cfg)
    diff = export(item, fmt, out)
    print(f"raydl export: the {item.what} of {directory} in {out} ({fmt}): {describe(item)}; "
          f"largest difference to torch on the example {diff:.2g}")
