"""What every export shares: refusing what a target cannot express, writing into a staged
directory that appears only when complete, and checking the result against our own forward
pass."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_mt.errors import UserError

if TYPE_CHECKING:
    import torch

    from transformer_mt.config import TransformerConfig
    from transformer_mt.inference.loaded_model import LoadedModel

# An export must reproduce our logits this closely (float32 kernels differ in summation order).
VERIFY_ATOL = 1e-3


def check_exportable(config: TransformerConfig, target: str) -> None:
    """Refuse what the target cannot express, before anything is written."""
    if config.norm_first and target == "hf":
        raise UserError(
            "this checkpoint is a pre-norm model (norm_first=True); Marian is post-norm only "
            "(the paper's layout), so it cannot be exported to Hugging Face; "
            "--to ctranslate2 supports it"
        )


@contextlib.contextmanager
def staged_directory(out: Path, force: bool) -> Iterator[Path]:
    """A fresh directory beside `out` to write into; moved to `out` only if the block succeeds.

    A failed or interrupted export therefore never leaves a directory that looks complete, and
    an existing non-empty `out` is replaced only with --force.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: directory exists and is not empty; pass --force to replace it")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"{out}: parent directory {parent} does not exist")
    stage = parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        stage.mkdir()
    except OSError as exc:
        raise UserError(f"{out}: cannot write in {parent} ({exc.strerror})") from None
    try:
        yield stage
        if out.exists():
            old = parent / f".{out.name}.{uuid.uuid4().hex[:12]}.old"
            os.replace(out, old)
            try:
                os.replace(stage, out)
            except BaseException:
                os.replace(old, out)  # put the user's directory back
                raise
            shutil.rmtree(old)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def probe_batch(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (source, decoder input) pair of real pieces for comparing logits after export."""
    import torch

    sp, c = loaded.tokenizer.sp, loaded.model.config
    ordinary = [i for i in range(sp.get_piece_size())
                if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))]
    generator = torch.Generator().manual_seed(0)
    n = min(8, c.max_positions - 1)
    pick = torch.tensor(ordinary)[torch.randint(len(ordinary), (2, n), generator=generator)]
    src = torch.cat([pick[0], torch.tensor([c.eos_id])])[None]
    tgt_in = torch.cat([torch.tensor([c.bos_id]), pick[1]])[None]
    return src, tgt_in


def check_close(ours: torch.Tensor, theirs: torch.Tensor, runtime: str) -> float:
    """The largest absolute difference; a UserError (and so no output) when above tolerance."""
    diff = float((ours - theirs).abs().max())
    if not diff <= VERIFY_ATOL:  # also catches NaN
        raise UserError(
            f"the {runtime} export does not reproduce the checkpoint (max difference {diff:.3g} "
            f"> {VERIFY_ATOL}), so nothing was written; the installed {runtime} version may "
            "lay the model out differently: please report it with `pip list` output"
        )
    return diff
