"""End-to-end sanity: a tiny Transformer learns to reverse sequences in 600 steps (seconds on a
CPU). The outcome is asserted, not the time: a busy machine is slower, not wrong."""

from __future__ import annotations

import torch

from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID, TransformerConfig
from transformer_mt.inference.search import generate
from transformer_mt.model import Transformer
from transformer_mt.training.loss import label_smoothed_loss
from transformer_mt.training.optimizer import make_optimizer

VOCAB = 16  # ids 4..15 are symbols


def reverse_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    lengths = torch.randint(3, 9, (n,), generator=generator)
    src = torch.full((n, 9), PAD_ID)
    tgt_in = torch.full((n, 9), PAD_ID)
    tgt_out = torch.full((n, 9), PAD_ID)
    for row, length in enumerate(lengths.tolist()):
        symbols = torch.randint(4, VOCAB, (length,), generator=generator)
        src[row, :length], src[row, length] = symbols, EOS_ID
        tgt_in[row, 0], tgt_in[row, 1 : length + 1] = BOS_ID, symbols.flip(0)
        tgt_out[row, :length], tgt_out[row, length] = symbols.flip(0), EOS_ID
    return src, tgt_in, tgt_out


def test_tiny_model_learns_to_reverse() -> None:
    torch.manual_seed(0)
    config = TransformerConfig.preset(
        "tiny", vocab_size=VOCAB, d_model=64, n_heads=4, d_ff=256, n_encoder_layers=2,
        n_decoder_layers=2, dropout=0.0, max_positions=32,
    )
    model = Transformer(config)
    optimizer, scheduler = make_optimizer(model.parameters(), 64, warmup_steps=50, factor=0.5)
    data = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(600):
        src, tgt_in, tgt_out = reverse_batch(64, data)
        hidden = model.decode_hidden(tgt_in, *model.encode(src))
        loss, _, n_tokens = label_smoothed_loss(
            hidden, model.output_weight(), tgt_out, 0.1, PAD_ID
        )
        optimizer.zero_grad()
        (loss / n_tokens).backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    src, _, tgt_out = reverse_batch(200, torch.Generator().manual_seed(99))
    hyps = generate(model, src, beam_size=1, max_len_a=1.0, max_len_b=2)
    correct = 0
    for row, hyp in enumerate(hyps):
        gold = tgt_out[row][tgt_out[row] > EOS_ID].tolist()
        correct += hyp[0].tokens == gold
    assert correct / len(hyps) >= 0.95, f"exact match {correct}/{len(hyps)}"
