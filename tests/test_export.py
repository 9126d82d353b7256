"""Export to Hugging Face Marian and CTranslate2 (`exporters`, `transformer-mt export`), checked
on a TRAINED model.

Random weights hide mapping mistakes (docs/design.md §3: a start-token embedding that is wrong
only after training), so a module fixture trains a tiny model on a synthetic word-translation task
until its outputs are mostly right but not certain, which gives beam search real choices.

Settings aligned for the search comparisons (see docs/export.md):
- our length limit floor(a * src_len + b) tokens + EOS is `max_new_tokens=limit + 1` for
  Hugging Face and `max_decoding_length=limit` for CTranslate2 (which does not count EOS);
- beam search is compared at length penalty 0: ours is GNMT's ((5 + len) / 6) ** alpha,
  Hugging Face divides by len ** alpha, so only alpha = 0 means the same in both;
- beam search is compared on sentences that end before the length limit: at the limit
  Hugging Face's forced EOS costs nothing (log-prob 0), ours keeps EOS's own log-prob, so the
  hypotheses cut there are ranked differently (greedy search is unaffected and is tested there).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import import_extra
from transformer_mt.commands import export
from transformer_mt.config import EOS_ID, PAD_ID, TransformerConfig
from transformer_mt.data.tokenizer import Tokenizer, train_tokenizer
from transformer_mt.errors import UserError
from transformer_mt.exporters import marian
from transformer_mt.inference.loaded_model import LoadedModel, load_for_inference
from transformer_mt.inference.search import generate, max_lengths
from transformer_mt.model import Transformer

transformers = import_extra("transformers", "export")

TRAIN_STEPS = 300


def run_export(argv: list[str]) -> int:
    """`transformer-mt export ARGV` through the module's own parser."""
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    return export.run(parser.parse_args(argv))


def synthetic_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Sentences of made-up words and their word-by-word 'translations'."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou")
                       for _ in range(rng.randint(1, 3)))

    lexicon: dict[str, str] = {}
    while len(lexicon) < 40:
        lexicon[word()] = word()[::-1] + "x"
    words = sorted(lexicon)
    pairs = []
    for _ in range(n):
        sentence = [rng.choice(words) for _ in range(rng.randint(2, 7))]
        pairs.append((" ".join(sentence), " ".join(lexicon[w] for w in sentence)))
    return pairs


def pad(seqs: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(seqs), max(map(len, seqs))), PAD_ID)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq)
    return out


def save_checkpoint(model: Transformer, tokenizer: Tokenizer, path: Path) -> Path:
    """The checkpoint layout `load_for_inference` reads (what `fit` writes, minus training
    state)."""
    torch.save({
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "transformer_mt": {
            "model_config": model.config.to_dict(), "sentencepiece": tokenizer.model_proto,
            "src_lang": "xx", "tgt_lang": "yy",
        },
    }, path)
    return path


def train_tiny(pairs: list[tuple[str, str]], tokenizer: Tokenizer) -> Transformer:
    """A few hundred Adam steps of a d_model=64 post-norm model (plain torch loop)."""
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=tokenizer.vocab_size, d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2,
        n_decoder_layers=2, dropout=0.0, max_positions=128,
    )
    model = Transformer(config)
    sources = [ids + [EOS_ID] for ids in tokenizer.encode([s for s, _ in pairs])]
    targets = tokenizer.encode([t for _, t in pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.98))
    rng = random.Random(0)
    for _ in range(TRAIN_STEPS):
        batch = rng.sample(range(len(pairs)), 64)
        src = pad([sources[i] for i in batch])
        tgt_in = pad([[config.bos_id] + targets[i] for i in batch])
        tgt_out = pad([targets[i] + [EOS_ID] for i in batch])
        loss = F.cross_entropy(model(src, tgt_in).transpose(1, 2), tgt_out,
                               ignore_index=PAD_ID, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These matrices are too small to gain from a second thread, and on a busy 2-core machine
    two OpenMP threads wait on each other: one thread runs this module 2-3x faster there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Checkpoint of the trained model, its training pairs and held-out sources."""
    tmp = tmp_path_factory.mktemp("export")
    pairs = synthetic_pairs(800, seed=0)
    tokenizer = train_tokenizer([s for s, _ in pairs] + [t for _, t in pairs], vocab_size=340,
                                cache_dir=tmp / "spm")
    model = train_tiny(pairs, tokenizer)
    words = sorted({w for s, _ in pairs for w in s.split()})
    rng = random.Random(1)
    held_out = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(20)]
    held_out += ["zuzu kiki popo", "Hello, world!"]  # unseen words and characters
    return {
        "checkpoint": save_checkpoint(model, tokenizer, tmp / "model.ckpt"),
        "pairs": pairs[:20],
        "sources": [s for s, _ in pairs[:20]] + held_out,
        "tmp": tmp,
    }


@pytest.fixture(scope="module")
def loaded(trained: dict) -> LoadedModel:
    return load_for_inference(trained["checkpoint"])


@pytest.fixture(scope="module")
def hf_dir(trained: dict) -> Path:
    out = trained["tmp"] / "hf"
    assert run_export(["--checkpoint", str(trained["checkpoint"]), "--to", "hf",
                       "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def hf_model(hf_dir: Path):
    return transformers.MarianMTModel.from_pretrained(hf_dir).eval()


@pytest.fixture(scope="module")
def hf_tokenizer(hf_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sacremoses is recommended but unused
        return transformers.MarianTokenizer.from_pretrained(hf_dir)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything must load from the local directory; never ask the hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def our_sources(loaded: LoadedModel, texts: list[str]) -> list[list[int]]:
    return [ids + [EOS_ID] for ids in loaded.tokenizer.encode(texts)]


def hf_tokens(sequences: torch.Tensor) -> list[list[int]]:
    """generate() rows -> ids without the start token, EOS and padding."""
    return [[t for t in row[1:] if t not in (PAD_ID, EOS_ID)] for row in sequences.tolist()]


def test_model_is_trained(loaded: LoadedModel, trained: dict) -> None:
    """Parity on random outputs would prove little: the model must mostly translate."""
    sources = our_sources(loaded, [s for s, _ in trained["pairs"]])
    hyps = generate(loaded.model, pad(sources), beam_size=1)
    outputs = loaded.tokenizer.decode([h[0].tokens for h in hyps])
    correct = sum(out == ref for out, (_, ref) in zip(outputs, trained["pairs"], strict=True))
    assert correct >= len(outputs) // 2, outputs


def test_hf_files_and_config(hf_dir: Path, hf_model, loaded: LoadedModel) -> None:
    for name in ("config.json", "generation_config.json", "model.safetensors", "source.spm",
                 "target.spm", "vocab.json", "tokenizer_config.json"):
        assert (hf_dir / name).is_file(), name
    assert not list(hf_dir.parent.glob(".hf.*")), "the staging directory must be gone"
    c, hf = loaded.model.config, hf_model.config
    assert (hf.d_model, hf.encoder_layers, hf.decoder_layers, hf.encoder_attention_heads,
            hf.encoder_ffn_dim) == (c.d_model, c.n_encoder_layers, c.n_decoder_layers,
                                    c.n_heads, c.d_ff)
    assert hf.scale_embedding and hf.activation_function == "relu"
    assert hf.max_position_embeddings == c.max_positions
    assert (hf.pad_token_id, hf.eos_token_id, hf.decoder_start_token_id) == (0, 3, 2)
    assert torch.count_nonzero(hf_model.final_logits_bias) == 0
    shared = hf_model.model.shared.weight
    assert hf_model.lm_head.weight.data_ptr() == shared.data_ptr()  # tied, as ours
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["decoder_start_token_id"] == 2
    assert generation["forced_eos_token_id"] == 3
    assert generation["max_length"] == c.max_positions + 1  # start + tokens + EOS
    assert sorted(generation["suppress_tokens"]) == [0, 2]


def test_hf_logits_match(loaded: LoadedModel, hf_model, trained: dict) -> None:
    """Teacher-forced logits of a padded batch agree, so the permuted weights are right."""
    sources = our_sources(loaded, trained["sources"][:12])
    targets = loaded.tokenizer.encode([t for _, t in trained["pairs"][:12]])
    src = pad(sources)
    tgt_in = pad([[2] + t for t in targets])
    with torch.no_grad():
        ours = loaded.model(src, tgt_in)
        theirs = hf_model(input_ids=src, attention_mask=src.ne(PAD_ID),
                          decoder_input_ids=tgt_in).logits
    real = tgt_in.ne(PAD_ID)  # positions after a target's end are padding in both
    torch.testing.assert_close(theirs[real], ours[real], atol=1e-4, rtol=1e-4)


def test_hf_tokenizer_matches(loaded: LoadedModel, hf_tokenizer, trained: dict) -> None:
    texts = trained["sources"] + ["Grüße, 漢字 and emoji 😀"]
    assert hf_tokenizer(texts)["input_ids"] == our_sources(loaded, texts)
    ids = loaded.tokenizer.encode(texts)
    assert hf_tokenizer.batch_decode(ids, skip_special_tokens=True) == \
        loaded.tokenizer.decode(ids)


def test_hf_greedy_and_beam_match(loaded: LoadedModel, hf_model, hf_tokenizer,
                                  trained: dict) -> None:
    texts = trained["sources"]
    batch = hf_tokenizer(texts, return_tensors="pt", padding=True)
    src = pad(our_sources(loaded, texts))
    assert torch.equal(batch["input_ids"], src)
    limit = int(max_lengths(loaded.model, src, 1.0, 50).max())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_new_tokens overrides the config's max_length
        hf_greedy = hf_model.generate(**batch, num_beams=1, max_new_tokens=limit + 1)
        hf_beam = hf_model.generate(**batch, num_beams=4, length_penalty=0.0,
                                    early_stopping=True, max_new_tokens=limit + 1)
    greedy = [h[0].tokens for h in generate(loaded.model, src, beam_size=1)]
    beam = [h[0].tokens for h in generate(loaded.model, src, beam_size=4, length_penalty=0.0)]
    assert hf_tokens(hf_greedy) == greedy
    assert hf_tokens(hf_beam) == beam
    assert greedy != beam, "beam search should change some outputs, or this test is weak"


def test_hf_greedy_matches_at_the_length_limit(loaded: LoadedModel, hf_model,
                                               trained: dict) -> None:
    """With a limit shorter than the translations, both force EOS after `limit` tokens."""
    for ids in our_sources(loaded, trained["sources"][:8]):
        src = torch.tensor([ids])
        limit = int(max_lengths(loaded.model, src, 0.0, 3)[0])
        ours = generate(loaded.model, src, beam_size=1, max_len_a=0.0, max_len_b=3)[0][0]
        with torch.no_grad():
            out = hf_model.generate(src, num_beams=1, max_new_tokens=limit + 1)
        assert out[0, -1].item() == EOS_ID
        assert hf_tokens(out) == [ours.tokens]


@pytest.fixture(scope="module")
def ct2_dir(trained: dict) -> Path:
    import_extra("ctranslate2", "export")
    out = trained["tmp"] / "ct2"
    assert run_export(["--checkpoint", str(trained["checkpoint"]), "--to", "ctranslate2",
                       "--out", str(out)]) == 0
    return out


def test_ctranslate2_greedy_matches(loaded: LoadedModel, ct2_dir: Path, trained: dict) -> None:
    import ctranslate2

    config = json.loads((ct2_dir / "config.json").read_text())
    assert config["decoder_start_token"] == "<s>" and config["add_source_eos"]
    translator = ctranslate2.Translator(str(ct2_dir), device="cpu")
    sp = loaded.tokenizer.sp
    texts = trained["sources"]
    pieces = [sp.encode(t, out_type=str) for t in texts]
    src = pad(our_sources(loaded, texts))
    for a, b in [(1.0, 50), (0.0, 3)]:  # the second cuts most translations at the limit
        ours = [h[0].tokens for h in generate(loaded.model, src, beam_size=1, max_len_a=a,
                                              max_len_b=b)]
        for i, limit in enumerate(max_lengths(loaded.model, src, a, b).tolist()):
            result = translator.translate_batch([pieces[i]], beam_size=1,
                                                max_decoding_length=limit)[0]
            assert [sp.piece_to_id(p) for p in result.hypotheses[0]] == ours[i], (a, b, i)


def test_ctranslate2_quantized_export(trained: dict, ct2_dir: Path, loaded: LoadedModel) -> None:
    """The int8 export translates like the float32 one on most sentences (int8 rounding may
    flip a close call; a wrong scale or layout would change nearly every output)."""
    ctranslate2 = import_extra("ctranslate2", "export")
    out = trained["tmp"] / "ct2-int8"
    assert run_export(["--checkpoint", str(trained["checkpoint"]), "--to", "ctranslate2",
                       "--quantization", "int8", "--out", str(out)]) == 0
    pieces = [loaded.tokenizer.pieces(text) for text in trained["sources"]]
    outputs = {}
    for folder, compute_type in ((ct2_dir, "float32"), (out, "int8")):
        translator = ctranslate2.Translator(str(folder), device="cpu", compute_type=compute_type)
        results = translator.translate_batch(pieces, beam_size=1)
        outputs[compute_type] = [result.hypotheses[0] for result in results]
    agree = sum(a == b for a, b in zip(outputs["int8"], outputs["float32"], strict=True))
    assert agree >= 0.8 * len(pieces), (agree, len(pieces))


def test_wrong_position_layout_is_caught(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the sin/cos permutation the export would silently translate differently; the
    built-in check refuses it and leaves no output behind."""
    monkeypatch.setattr(marian, "marian_permutation", lambda d: torch.arange(d))
    out = trained["tmp"] / "hf-unpermuted"
    with pytest.raises(UserError, match="does not reproduce"):
        run_export(["--checkpoint", str(trained["checkpoint"]), "--to", "hf", "--out", str(out)])
    assert not out.exists()
    assert not list(out.parent.glob(".hf-unpermuted.*"))


def random_checkpoint(tmp: Path, tokenizer_source: Path, **overrides) -> Path:
    """An untrained model with the trained model's vocabulary, for layout checks."""
    base = load_for_inference(tokenizer_source)
    torch.manual_seed(1)
    config = TransformerConfig.from_dict({**base.model.config.to_dict(), **overrides})
    return save_checkpoint(Transformer(config).eval(), base.tokenizer,
                           tmp / f"random-{'-'.join(map(str, overrides.values()))}.ckpt")


@pytest.mark.parametrize("target", ["hf", "ctranslate2"])
def test_untied_random_model_at_the_position_cap(trained: dict, target: str) -> None:
    """Separate source, target and output matrices map to Marian's and CTranslate2's own (the
    export's built-in logit check fails otherwise), and a random model, which never emits EOS,
    stops where ours does: max_positions - 1 tokens, then EOS."""
    ckpt = random_checkpoint(trained["tmp"], trained["checkpoint"], share_embeddings=False)
    out = trained["tmp"] / f"{target}-untied"
    if target == "ctranslate2":
        import_extra("ctranslate2", "export")
    assert run_export(["--checkpoint", str(ckpt), "--to", target, "--out", str(out)]) == 0
    loaded = load_for_inference(ckpt)
    cap = loaded.model.config.max_positions - 1
    src = torch.tensor(our_sources(loaded, ["zuzu kiki popo"]))
    ours = generate(loaded.model, src, beam_size=1, max_len_a=0.0, max_len_b=10 * cap)[0][0]
    assert len(ours.tokens) == cap
    if target == "hf":
        hf_model = transformers.MarianMTModel.from_pretrained(out).eval()
        assert hf_model.lm_head.weight.data_ptr() != \
            hf_model.model.encoder.embed_tokens.weight.data_ptr()
        with torch.no_grad():
            theirs = hf_tokens(hf_model.generate(src, num_beams=1))  # the exported defaults
    else:
        import ctranslate2

        translator = ctranslate2.Translator(str(out), device="cpu")
        pieces = [loaded.tokenizer.pieces("zuzu kiki popo")]
        translator.translate_batch(pieces, beam_size=1)  # its defaults run past our cap
        result = translator.translate_batch(pieces, beam_size=1, max_decoding_length=cap)[0]
        theirs = [[loaded.tokenizer.sp.piece_to_id(p) for p in result.hypotheses[0]]]
    assert theirs == [ours.tokens]


def test_pre_norm_is_refused_for_marian_and_exported_to_ctranslate2(trained: dict) -> None:
    ckpt = random_checkpoint(trained["tmp"], trained["checkpoint"], norm_first=True)
    out = trained["tmp"] / "hf-prenorm"
    with pytest.raises(UserError, match="Marian is post-norm only"):
        run_export(["--checkpoint", str(ckpt), "--to", "hf", "--out", str(out)])
    assert not out.exists()
    ctranslate2 = import_extra("ctranslate2", "export")
    out = trained["tmp"] / "ct2-prenorm"
    # The export's log-prob check covers the final LayerNorms; greedy output must match too.
    assert run_export(["--checkpoint", str(ckpt), "--to", "ctranslate2", "--out", str(out)]) == 0
    loaded = load_for_inference(ckpt)
    text = trained["sources"][0]
    ours = generate(loaded.model, torch.tensor(our_sources(loaded, [text])), beam_size=1,
                    max_len_a=0.0, max_len_b=20)[0][0].tokens
    # A random model favours <s>, which our search bans; CTranslate2 can ban it only per call.
    result = ctranslate2.Translator(str(out)).translate_batch(
        [loaded.tokenizer.pieces(text)], beam_size=1, max_decoding_length=20,
        suppress_sequences=[["<pad>"], ["<s>"]])[0]
    assert [loaded.tokenizer.sp.piece_to_id(p) for p in result.hypotheses[0]] == ours


def test_existing_output_needs_force(trained: dict) -> None:
    import_extra("ctranslate2", "export")
    ckpt = str(trained["checkpoint"])
    out = trained["tmp"] / "occupied"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(UserError, match="--force"):
        run_export(["--checkpoint", ckpt, "--to", "ctranslate2", "--out", str(out)])
    assert (out / "keep.txt").read_text() == "user data"
    assert run_export(["--checkpoint", ckpt, "--to", "ctranslate2", "--out", str(out),
                       "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.bin", "shared_vocabulary.json"]
    with pytest.raises(UserError, match="ctranslate2 only"):
        run_export(["--checkpoint", ckpt, "--to", "hf", "--quantization", "int8",
                    "--out", str(trained["tmp"] / "unused")])


@pytest.mark.parametrize("target, module", [("hf", "transformers"),
                                            ("ctranslate2", "ctranslate2")])
def test_missing_extra_is_a_user_error(trained: dict, monkeypatch: pytest.MonkeyPatch,
                                       target: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    out = trained["tmp"] / f"missing-{module}"
    with pytest.raises(UserError, match=r"needs the 'export' extra.*pip install "
                                        r"'transformer-mt\[export\]'"):
        run_export(["--checkpoint", str(trained["checkpoint"]), "--to", target,
                    "--out", str(out)])
    assert not out.exists()
