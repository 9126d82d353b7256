"""Checkpoint averaging (paper §6.1), behind `transformer-mt average`.

The paper's reported models average the last 5 (base) or 20 (big) checkpoints, written at
10-minute intervals; the average is usually worth a fraction of a BLEU point over the last one.

Rules, chosen so the result is exactly what the inputs imply and nothing silently mixes:
- every input must have the same `state_dict` keys, shapes and dtypes, the same model config and
  the same sentencepiece model (else a UserError naming the offending file);
- floating tensors are summed in float64 and divided once, then cast back to their dtype, so
  averaging 20 bf16/fp32 checkpoints loses no precision to repeated rounding;
- integer and bool tensors (counters, masks) cannot be meaningfully averaged: they should be
  equal across inputs, and where they are not, the LAST input's value is kept (and reported);
- tensors that share storage in the inputs (tied source/target/output embeddings) share it in
  the output too, so the file does not grow.
The output is a copy of the last input's checkpoint dict (so Lightning `validate --ckpt_path`
and `translate` accept it) with the averaged weights, no optimizer or scheduler state (they
belonged to one of the inputs, not to the average), and `transformer_mt["averaged_from"]`.

torch is imported inside functions, as in the command that calls this module.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_mt.errors import UserError
from transformer_mt.training import INTERRUPTED_NAME

if TYPE_CHECKING:
    import torch

# Files `fit` rewrites as the run goes on: Lightning's rolling `last.ckpt` (`last-v1.ckpt` when
# the name was taken) and the interrupted run's save. They often hold the step of a periodic
# checkpoint again; when they hold a step of their own (the end of a run), they are its only copy.
_ROLLING_NAME = re.compile(rf"last(-v\d+)?\.ckpt|{re.escape(INTERRUPTED_NAME)}")


def _quick_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's dict with tensors memory-mapped rather than read, for cheap metadata.

    Ranking a run directory needs only `global_step`; reading every full checkpoint (weights and
    Adam state, gigabytes each for the big model) just for that would be slow. Files that cannot
    be memory-mapped go through `load_checkpoint_dict`, which reads them fully or raises the
    project's usual error for a corrupt, unsafe or foreign file.
    """
    import torch

    from transformer_mt.checkpoint import META_KEY, load_checkpoint_dict

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError):
        checkpoint = None
    if not isinstance(checkpoint, dict) or META_KEY not in checkpoint:
        checkpoint = load_checkpoint_dict(path)
    return checkpoint


def find_recent_checkpoints(run_dir: Path, n: int, output: Path) -> list[Path]:
    """One checkpoint for each of the `n` highest distinct global_steps under `run_dir`,
    oldest first.

    Every step is averaged once: files with the same global_step hold the same weights
    (last.ckpt or interrupted.ckpt saved at a periodic checkpoint's step) or are one step
    written twice (a run restarted in the same folder). Of these, a periodic checkpoint is
    preferred to the rolling last.ckpt / interrupted.ckpt, whose contents change when training
    goes on, then the newest file. The rolling files still count with a step of their own: a
    run stopped between two periodic checkpoints (`max_time`, a signal) keeps its final
    weights only there, and the newest state belongs in the average. Skipped: symlinks
    (Lightning links to existing checkpoints), symlinked directories, `output`, and earlier
    averages (their `averaged_from` record), which would otherwise be averaged again.
    """
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such directory")
    # global_step -> (periodic, mtime, path) of the file chosen for that step so far
    by_step: dict[int, tuple[bool, float, Path]] = {}
    for root, dirs, files in os.walk(run_dir):  # does not descend into symlinked directories
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if not name.endswith(".ckpt") or path.is_symlink() or path.resolve() == output:
                continue
            checkpoint = _quick_meta(path)
            if "averaged_from" in _meta(checkpoint, path):
                continue
            step = checkpoint.get("global_step")
            if not isinstance(step, int):
                raise UserError(
                    f"{path}: records no global_step, so it cannot be ranked; "
                    "list the checkpoints to average with --inputs"
                )
            candidate = (not _ROLLING_NAME.fullmatch(name), path.stat().st_mtime, path)
            by_step[step] = max(by_step.get(step, candidate), candidate)
    if len(by_step) < n:
        raise UserError(
            f"{run_dir}: found {len(by_step)} distinct global_step(s) to average (*.ckpt, not "
            f"counting symlinks and earlier averages), fewer than --last {n}"
        )
    return [by_step[step][2] for step in sorted(by_step)[-n:]]


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Identifies a tensor's exact view of its storage, to find tied weights."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tensor.stride(), tensor.dtype)


def _meta(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """The checkpoint's `transformer_mt` section, which must be a dict."""
    from transformer_mt.checkpoint import META_KEY

    meta = checkpoint[META_KEY]
    if not isinstance(meta, dict):
        raise UserError(f"{path}: malformed '{META_KEY}' section (not a dict)")
    return meta


def _state_dict(checkpoint: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    import torch

    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path}: the checkpoint holds no weights ('state_dict' missing or empty)")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: state_dict entry {key!r} is not a tensor")
    return state


def _check_compatible(
    path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any],
    first: Path, first_specs: dict[str, tuple], first_meta: dict[str, Any],
) -> None:
    """Raise a UserError naming `path` unless it can be averaged with the first input.

    `first_specs` maps each key of the first input to its (shape, dtype).
    """
    config, first_config = meta.get("model_config"), first_meta.get("model_config")
    if config != first_config:
        raise UserError(
            f"{path}: model config differs from {first}'s ({_dict_diff(config, first_config)}); "
            "only checkpoints of one model can be averaged"
        )
    if meta.get("sentencepiece") != first_meta.get("sentencepiece"):
        raise UserError(f"{path}: its sentencepiece vocabulary differs from {first}'s")
    missing, extra = sorted(set(first_specs) - set(state)), sorted(set(state) - set(first_specs))
    if missing or extra:
        raise UserError(
            f"{path}: weights differ from {first}'s: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, value in state.items():
        shape, dtype = first_specs[key]
        if tuple(value.shape) != shape or value.dtype != dtype:
            raise UserError(
                f"{path}: {key} is {tuple(value.shape)} {value.dtype}, "
                f"but {shape} {dtype} in {first}"
            )


def _dict_diff(a: Any, b: Any) -> str:
    """A short 'key: a vs b' description of how two config dicts differ."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"{a!r} vs {b!r}"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys[:4])


def average_checkpoints(paths: Sequence[Path]) -> dict[str, Any]:
    """The averaged checkpoint dict (see the module docstring for the rules).

    Inputs are loaded one at a time, so memory holds at most two of them (the one being read
    and the previous one) plus the float64 running sums, never all of them.
    """
    import torch

    from transformer_mt.checkpoint import META_KEY, load_checkpoint_dict

    first = paths[0]
    first_specs: dict[str, tuple] = {}  # key -> (shape, dtype) of the first input
    first_meta: dict[str, Any] = {}
    canonical: dict[str, str] = {}  # key -> the first key sharing its storage (tied weights)
    sums: dict[str, torch.Tensor] = {}  # float64 running sums / kept integer tensors
    differing: set[str] = set()
    checkpoint: dict[str, Any] = {}
    for index, path in enumerate(paths):
        checkpoint = load_checkpoint_dict(path)
        state, meta = _state_dict(checkpoint, path), _meta(checkpoint, path)
        step = checkpoint.get("global_step", "?")
        print(f"  [{index + 1}/{len(paths)}] {path} (step {step})", file=sys.stderr)
        if index == 0:
            first_meta = meta
            first_specs = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
            seen: dict[tuple, str] = {}
            for key, value in state.items():
                canonical[key] = seen.setdefault(_storage_key(value), key)
        else:
            _check_compatible(path, state, meta, first, first_specs, first_meta)
        for key, value in state.items():
            if canonical[key] != key:
                continue
            if value.is_floating_point():
                if index == 0:
                    sums[key] = value.to(torch.float64, copy=True)
                else:
                    sums[key] += value.to(torch.float64)
            else:
                if index > 0 and not torch.equal(sums[key], value):
                    differing.add(key)
                sums[key] = value.clone()
    if differing:
        print(f"  note: non-float tensors differ across inputs, kept the last's: "
              f"{', '.join(sorted(differing))}", file=sys.stderr)

    last_state = checkpoint["state_dict"]
    averaged: dict[str, torch.Tensor] = {}
    for key, value in last_state.items():
        source = canonical[key]
        if source not in averaged:
            total = sums[source]
            if value.is_floating_point():
                total = (total / len(paths)).to(value.dtype)
            averaged[source] = total
        averaged[key] = averaged[source]
    result = dict(checkpoint)
    result["state_dict"] = {key: averaged[key] for key in last_state}
    result["optimizer_states"] = []
    result["lr_schedulers"] = []
    result[META_KEY] = {**checkpoint[META_KEY], "averaged_from": [str(p) for p in paths]}
    return result
