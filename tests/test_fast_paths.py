"""The fast paths give what the plain paths give (docs/benchmarks.md measures them).

- training fuses the output projection into the label-smoothed loss (`TranslationModel._loss`):
  its loss and every parameter's gradient must be those of the plain logits-then-loss path;
- beam search shares one encoder row among a sentence's beams (`DecoderState.group`): its
  results must be exactly those of the plain layout with one encoder row per beam;
- int8 dynamic quantization (`translate --quantize int8`) changes numbers, so it must keep the
  line count and agree with float32 on (nearly) every sentence of a trained model;
- oneDNN products (`translate --cpu-gemm`, the default on non-Intel CPUs) only sum in another
  order: same logits to rounding and the same searches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests._tiny_ckpt import (
    WORDS,
    make_src,
    make_tiny_checkpoint,
    save_checkpoint,
    tiny_model,
    tiny_tokenizer,
)
from tests.test_loss import plain_loss
from transformer_mt.commands import main as cli
from transformer_mt.config import BOS_ID, EOS_ID, TransformerConfig
from transformer_mt.inference.search import beam_search, generate
from transformer_mt.model import Transformer, cpu_gemm
from transformer_mt.model.cpu_gemm import OneDNNLinear, use_onednn
from transformer_mt.model.quantize import quantize
from transformer_mt.model.transformer import DecoderState
from transformer_mt.training.translation_model import TranslationModel


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Matrices this small gain nothing from a second thread, and on a busy 2-core machine two
    OpenMP threads wait on each other (as in test_export.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)




@pytest.mark.parametrize("share_embeddings", [True, False])
def test_fused_training_loss_equals_logits_then_loss(share_embeddings: bool) -> None:
    """With tied embeddings the shared matrix gets gradient from the lookups and from the
    fused projection; both must add up to what autograd gives through the logits."""
    torch.manual_seed(0)
    lit = TranslationModel(preset="tiny", vocab_size=60, d_model=32, d_ff=64, dropout=0.0)
    if not share_embeddings:
        lit.model = Transformer(TransformerConfig.preset(
            "tiny", vocab_size=60, d_model=32, d_ff=64, dropout=0.0, share_embeddings=False))
    src, tgt = make_src([9, 4, 6, 2], 60, seed=1), make_src([8, 3, 5, 8], 60, seed=2)
    batch = {"src": src, "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}
    loss, nll, n = lit._loss(batch)
    (loss / n).backward()
    fused = {name: p.grad.clone() for name, p in lit.named_parameters()}
    lit.zero_grad()
    ref_loss, ref_nll, ref_n = plain_loss(lit.model(src, batch["tgt_in"]), batch["tgt_out"],
                                          lit.hparams.label_smoothing, 0)
    (ref_loss / ref_n).backward()
    assert n == ref_n and n < batch["tgt_out"].numel()  # the batch has padding
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(nll, ref_nll)
    for name, p in lit.named_parameters():
        torch.testing.assert_close(fused[name], p.grad, msg=name)


def test_grouped_cross_attention_equals_one_encoder_row_per_beam() -> None:
    """Step by step, with re-ranking inside each sentence and a sentence leaving."""
    model = tiny_model()
    src = make_src([5, 9, 3], vocab=12)
    k = 3
    memory, mask = model.encode(src)
    grouped = model.start_decoding(memory, mask)
    plain = model.start_decoding(memory, mask)
    expand = torch.arange(3).repeat_interleave(k)
    grouped.reorder(expand, group=k)
    plain.reorder(expand)
    assert grouped.src_mask.size(0) == 3 and plain.src_mask.size(0) == 9
    assert grouped.cross_caches[0].k.size(0) == 3 and plain.cross_caches[0].k.size(0) == 9
    gen = torch.Generator().manual_seed(1)
    rows = torch.arange(9)
    with torch.inference_mode():
        for step in range(6):
            tokens = torch.randint(4, 12, (rows.numel(),), generator=gen)
            torch.testing.assert_close(model.decode_step(tokens, grouped),
                                       model.decode_step(tokens, plain), rtol=1e-5, atol=1e-5)
            n_sent = rows.numel() // k
            # beams move within their sentence, as in beam search
            within = torch.randint(0, k, (n_sent, k), generator=gen)
            index = (torch.arange(n_sent)[:, None] * k + within).view(-1)
            if step == 3:  # the middle sentence is done
                index = index.view(n_sent, k)[[0, 2]].view(-1)
            grouped.reorder(index, group=k)
            plain.reorder(index)
            rows = index


@pytest.mark.parametrize("nbest", [1, 3])
def test_beam_search_matches_the_plain_layout(monkeypatch: pytest.MonkeyPatch,
                                              nbest: int) -> None:
    """The fast path against the same search with every beam holding its own encoder row."""
    model = tiny_model()
    src = make_src([3, 9, 5, 14, 2, 7], vocab=12)
    fast = beam_search(model, src, beam_size=4, nbest=nbest, max_len_a=1.0, max_len_b=6)

    plain_reorder = DecoderState.reorder

    def one_row_per_beam(self: DecoderState, index: torch.Tensor, group: int = 1) -> None:
        plain_reorder(self, index)

    monkeypatch.setattr(DecoderState, "reorder", one_row_per_beam)
    plain = beam_search(model, src, beam_size=4, nbest=nbest, max_len_a=1.0, max_len_b=6)
    assert [[h.tokens for h in hyps] for hyps in fast] == \
        [[h.tokens for h in hyps] for hyps in plain]
    for f, p in zip(fast, plain, strict=True):
        assert [h.score for h in f] == pytest.approx([h.score for h in p], abs=1e-5)


def reverse_task_model(vocab_size: int = 14, tokens: Sequence[int] = range(4, 14)
                       ) -> Transformer:
    """A tiny model trained to reverse strings of `tokens` (a few seconds): a quantization
    check needs confident predictions, which random weights do not have. lr 1e-3 for 300
    steps learns the task on every seed tried and on Intel and AMD CPUs alike; at 3e-3 the
    loss spiked and whether it was learnt depended on the CPU's rounding."""
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=vocab_size, d_model=64, n_heads=4, d_ff=128,
                               n_encoder_layers=2, n_decoder_layers=2, dropout=0.0,
                               max_positions=32)
    model = Transformer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(0)
    token_ids = torch.tensor(list(tokens))
    for _ in range(300):
        seq = token_ids[torch.randint(0, len(token_ids), (32, 6), generator=gen)]
        src = torch.cat([seq, torch.full((32, 1), EOS_ID)], 1)
        tgt_in = torch.cat([torch.full((32, 1), BOS_ID), seq.flip(1)], 1)
        tgt_out = torch.cat([seq.flip(1), torch.full((32, 1), EOS_ID)], 1)
        loss = F.cross_entropy(model(src, tgt_in).transpose(1, 2), tgt_out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_int8_quantization_agrees_with_float32() -> None:
    model = reverse_task_model()
    seq = torch.randint(4, 14, (60, 6), generator=torch.Generator().manual_seed(1))
    src = torch.cat([seq, torch.full((60, 1), EOS_ID)], 1)
    reference = [h[0].tokens for h in generate(model, src, beam_size=1)]
    assert sum(r == s.flip(0).tolist() for r, s in zip(reference, seq, strict=True)) >= 50, \
        "the model should have learnt the task, or agreement means little"
    quantize(model, "int8")
    assert type(model.output_proj).__module__.startswith("torch.ao.nn.quantized")
    assert all(type(m) is not torch.nn.Linear for m in model.modules())
    quantized = [h[0].tokens for h in generate(model, src, beam_size=1)]
    assert sum(a == b for a, b in zip(quantized, reference, strict=True)) >= 57
    assert len(generate(model, src, beam_size=4)) == len(src)


def test_translate_quantize_int8_agrees_with_float32(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """`translate --quantize int8` on a trained checkpoint (the reversal task over ten words):
    the same translation as float32 on nearly every line, and one output line per input line
    whatever the input (an empty line, characters the task never saw)."""
    tokenizer = tiny_tokenizer(tmp_path / "spm")
    words = [w for w in WORDS if len(tokenizer.encode([w])[0]) == 1][:10]
    ids = [tokenizer.encode([w])[0][0] for w in words]
    ckpt = save_checkpoint(tmp_path / "reverse.ckpt",
                           reverse_task_model(tokenizer.vocab_size, ids), tokenizer)
    rng = random.Random(1)
    lines = [" ".join(rng.choice(words) for _ in range(6)) for _ in range(60)]
    source = tmp_path / "in.txt"
    source.write_text("".join(f"{line}\n" for line in [*lines, "", "🙂 emoji"]),
                      encoding="utf-8")
    outputs = {}
    for extra in ([], ["--quantize", "int8"]):
        assert cli.main(["translate", "--checkpoint", str(ckpt), "--input", str(source),
                         "--device", "cpu", "--quiet", "--beam-size", "1", *extra]) == 0
        outputs[bool(extra)] = capsys.readouterr().out.split("\n")
    float32, int8 = outputs[False], outputs[True]
    assert len(float32) == len(int8) == 63 and float32[-1] == int8[-1] == ""
    assert float32[60] == int8[60] == ""
    reversed_lines = [" ".join(line.split()[::-1]) for line in lines]
    assert sum(a == b for a, b in zip(float32, reversed_lines, strict=False)) >= 50, \
        "the model should have learnt the task, or agreement means little"
    assert sum(a == b for a, b in zip(int8[:60], float32[:60], strict=True)) >= 57


def test_quantize_refuses_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.ckpt", tmp_path / "spm")
    rc = cli.main(["translate", "--checkpoint", str(ckpt), "--device", "cuda",
                   "--quantize", "int8", "--input", str(ckpt)])
    assert rc == 2
    assert "--device" in capsys.readouterr().err  # no CUDA here, or: int8 is for the CPU


@pytest.mark.parametrize("share_embeddings", [True, False])
def test_onednn_linears_give_the_plain_outputs(share_embeddings: bool) -> None:
    """`--cpu-gemm onednn` swaps the product kernel only: same logits to rounding, the same
    searches on a trained model, every linear layer switched, the weights untouched."""
    model = reverse_task_model()
    if not share_embeddings:
        torch.manual_seed(0)
        model = Transformer(TransformerConfig.preset(
            "tiny", vocab_size=14, d_model=32, d_ff=64, dropout=0.0, share_embeddings=False))
        model.eval()
    seq = torch.randint(4, 14, (60, 6), generator=torch.Generator().manual_seed(2))
    src = torch.cat([seq, torch.full((60, 1), EOS_ID)], 1)
    tgt_in = torch.cat([torch.full((60, 1), BOS_ID), seq.flip(1)], 1)
    with torch.inference_mode():
        logits = model(src, tgt_in)
    searches = {beam: [[h.tokens for h in hyps] for hyps in generate(model, src, beam_size=beam)]
                for beam in (1, 4)}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    use_onednn(model)
    assert model.output_proj is not None
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is OneDNNLinear for m in linears)
    with torch.inference_mode():
        torch.testing.assert_close(model(src, tgt_in), logits, rtol=1e-4, atol=1e-4)
    for beam, tokens in searches.items():
        assert [[h.tokens for h in hyps] for hyps in generate(model, src, beam_size=beam)] \
            == tokens
    state = model.state_dict()
    for key, value in weights.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize(("vendor", "expected"), [
    ("AuthenticAMD", "onednn"), ("HygonGenuine", "onednn"), ("GenuineIntel", "default"),
    ("", "default"),  # not x86, or no /proc/cpuinfo: torch's default
])
def test_cpu_gemm_auto_picks_onednn_off_intel(monkeypatch: pytest.MonkeyPatch, vendor: str,
                                              expected: str) -> None:
    monkeypatch.setattr(cpu_gemm, "cpu_vendor", lambda: vendor)
    assert cpu_gemm.resolve_cpu_gemm("auto") == expected
    assert cpu_gemm.resolve_cpu_gemm("default") == "default"
    assert cpu_gemm.resolve_cpu_gemm("onednn") == "onednn"
    with pytest.raises(ValueError, match="choose one of"):
        cpu_gemm.resolve_cpu_gemm("mkl")


def test_translate_cpu_gemm(tmp_path: Path, capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """auto switches to oneDNN on an AMD CPU; both kernels give the same lines; oneDNN with
    int8 is refused before the model loads."""
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.ckpt", tmp_path / "spm")
    source = tmp_path / "in.txt"
    source.write_text("the cat sleeps\n\nder Hund läuft schnell\n🙂 emoji\n", encoding="utf-8")
    switched = []
    monkeypatch.setattr(cpu_gemm, "cpu_vendor", lambda: "AuthenticAMD")
    use_onednn_itself = cpu_gemm.use_onednn
    monkeypatch.setattr(cpu_gemm, "use_onednn",
                        lambda model: switched.append(use_onednn_itself(model)))
    outputs = {}
    for choice in ("auto", "default"):
        assert cli.main(["translate", "--checkpoint", str(ckpt), "--input", str(source),
                         "--device", "cpu", "--quiet", "--cpu-gemm", choice]) == 0
        outputs[choice] = capsys.readouterr().out
    assert len(switched) == 1  # by auto, not by default
    assert outputs["auto"] == outputs["default"] and outputs["auto"].count("\n") == 4
    rc = cli.main(["translate", "--checkpoint", str(ckpt), "--input", str(source),
                   "--cpu-gemm", "onednn", "--quantize", "int8", "--device", "cpu"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--cpu-gemm onednn" in err and "Traceback" not in err
