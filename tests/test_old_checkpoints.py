"""Checkpoints written before the package was reorganised still load everywhere.

`fixtures/checkpoint_edd6c0e.ckpt.xz` is a real `fit` checkpoint (Lightning's whole dict:
weights, optimizer state, loops, callbacks, hyper-parameters naming `transformer_mt.lit`) of a
d_model-16 model trained for 2 steps at commit edd6c0e, the last one of the flat layout
(`tests/_tiny_fit.tiny_fit_args` with `--trainer.max_steps 2 --data.vocab_size 400
--model.d_model 16 --model.d_ff 32 --model.max_positions 64`), compressed with xz.
"""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import pytest
import torch

from tests._tiny_fit import small_corpus
from tests.conftest import REPO
from transformer_mt import Translator
from transformer_mt.checkpoint import META_KEY, load_checkpoint_dict, model_state_dict
from transformer_mt.commands.main import main
from transformer_mt.config import TransformerConfig
from transformer_mt.inference.search import generate
from transformer_mt.model import Transformer

FIXTURE = REPO / "tests" / "fixtures" / "checkpoint_edd6c0e.ckpt.xz"


@pytest.fixture(scope="module")
def old_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("old") / "last.ckpt"
    with lzma.open(FIXTURE) as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


def test_the_fixture_is_of_the_old_layout(old_checkpoint: Path) -> None:
    checkpoint = load_checkpoint_dict(old_checkpoint)
    assert checkpoint["hparams_name"] == "kwargs"
    assert checkpoint["global_step"] == 2
    assert {"loops", "callbacks", "optimizer_states", META_KEY} <= set(checkpoint)


def test_translator_loads_it_with_its_weights(old_checkpoint: Path) -> None:
    """The loaded model is the stored one: the same weights, hence the same search result as
    a Transformer built by hand from the raw state dict."""
    raw = load_checkpoint_dict(old_checkpoint)
    by_hand = Transformer(TransformerConfig.from_dict(raw[META_KEY]["model_config"]))
    by_hand.load_state_dict(model_state_dict(raw))
    translator = Translator.from_checkpoint(old_checkpoint, device="cpu", cpu_gemm="default")
    for name, value in translator.loaded.model.state_dict().items():
        assert torch.equal(value, by_hand.state_dict()[name]), name
    sentence = "The cat sleeps under the table."
    ids = translator.loaded.tokenizer.encode([sentence])[0] + [by_hand.config.eos_id]
    expected = generate(by_hand.eval(), torch.tensor([ids]), beam_size=4)[0][0]
    found = translator.search([sentence]).hypotheses[0][0]
    assert found.tokens == expected.tokens
    assert found.score == pytest.approx(expected.score)


def test_lightning_validates_it_and_average_reads_it(old_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    """`validate --ckpt_path` goes through Lightning's own checkpoint loading (hyper-parameters,
    loops, callbacks); `average` through ours."""
    argv = ["validate", "--config", str(REPO / "configs" / "demo.yaml"),
            "--data.data_dir", str(small_corpus()), "--data.cache_dir", str(tmp_path / "cache"),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1",
            "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
            "--model.n_encoder_layers", "1", "--model.n_decoder_layers", "1",
            "--model.max_positions", "64", "--model.val_bleu_sentences", "2",
            "--ckpt_path", str(old_checkpoint)]
    assert main(argv) == 0
    averaged = tmp_path / "averaged.ckpt"
    copy = tmp_path / "copy.ckpt"
    shutil.copy(old_checkpoint, copy)
    assert main(["average", "--inputs", str(old_checkpoint), str(copy),
                 "--output", str(averaged)]) == 0
    old = model_state_dict(load_checkpoint_dict(old_checkpoint))
    new = model_state_dict(load_checkpoint_dict(averaged))
    assert all(torch.allclose(old[k], new[k]) for k in old)
