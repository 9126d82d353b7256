"""What the model computes for one sentence (`inference.explanation`), as POST /v1/explain,
`transformer-mt attention --json` and the page's Inside view give it: every array against the
model's own forward pass, the beam tree's best against `translate`, the endpoint's limits, and
the view in a real browser."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests._server import Server, chromium, distinct_sentences, start_server, stop
from tests.conftest import import_extra
from transformer_mt import Translator
from transformer_mt.commands import attention
from transformer_mt.errors import UserError
from transformer_mt.inference.attention_weights import source_ids
from transformer_mt.inference.explanation import explain, to_json
from transformer_mt.inference.search import BeamStep, SearchOptions, beam_search
from transformer_mt.model.layers import sinusoidal_table

SENTENCES = distinct_sentences(4)
EOS_BIAS = 1.5  # added to the tiny model's EOS logit: its hypotheses then end on their own


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


def explained(translator: Translator, text: str, **options) -> dict:
    return explain(translator.loaded, source_ids(translator.loaded, text),
                   SearchOptions(**options))


def forward_ids(translator: Translator, record: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The (1, S) source and (1, T) decoder input of an explanation, as the model takes them."""
    return (torch.tensor([record["source"]["ids"]]),
            torch.tensor([record["decoder_input"]["ids"]]))


def test_attention_is_the_forward_pass_rows_sum_to_one_and_the_decoder_is_causal(
    translator: Translator,
) -> None:
    record = explained(translator, SENTENCES[0])
    src, tgt_in = forward_ids(translator, record)
    with torch.inference_mode():
        expected = translator.loaded.model.attention_weights(src, tgt_in)
    n_src, n_tgt = src.size(1), tgt_in.size(1)
    c = translator.loaded.model.config
    shapes = {"encoder": (n_src, n_src), "decoder_self": (n_tgt, n_tgt), "cross": (n_tgt, n_src)}
    for kind, per_layer in expected.items():
        array = record["attention"][kind]
        assert array.shape == (len(per_layer), c.n_heads, *shapes[kind])
        np.testing.assert_allclose(array, np.stack([w[0].numpy() for w in per_layer]),
                                   atol=1e-6)
        np.testing.assert_allclose(array.sum(axis=-1), 1.0, atol=1e-5)
    above = np.triu(np.ones((n_tgt, n_tgt), dtype=bool), k=1)
    assert (record["attention"]["decoder_self"][..., above] == 0).all()
    assert (record["attention"]["decoder_self"][..., ~above] > 0).any()
    # the cross-attention is target x source: a row per piece predicted, EOS included
    assert len(record["translation"]["pieces"]) == n_tgt
    assert len(record["source"]["pieces"]) == n_src


@pytest.mark.parametrize("options", [
    {}, {"beam_size": 1}, {"beam_size": 3, "length_penalty": 1.0, "nbest": 2},
    {"beam_size": 5, "max_len_a": 0.5, "max_len_b": 3},
])
def test_the_beam_trees_best_is_translates(translator: Translator, options: dict) -> None:
    for text in SENTENCES:
        record = explained(translator, text, **options)
        search = record["search"]
        want = translator.translate(text, scores=True, nbest=options.get("nbest", 1),
                                    **{k: v for k, v in options.items() if k != "nbest"})
        assert record["translation"]["text"] == want[0].text
        assert [h["text"] for h in search["nbest"]] == [w.text for w in want]
        assert [h["score"] for h in search["nbest"]] == pytest.approx(
            [w.score for w in want], abs=1e-5)
        nodes, best = search["nodes"], search["best"]
        assert nodes[best]["state"] == "finished"
        path, at = [], best
        while at is not None:
            path.append(nodes[at]["token"])
            at = nodes[at]["parent"]
        assert path[::-1] == record["translation"]["ids"]
        assert nodes[best]["score"] == pytest.approx(want[0].score, abs=1e-3)


def test_the_tree_keeps_a_full_beam_whose_parents_were_kept(translator: Translator) -> None:
    k = 3
    record = explained(translator, SENTENCES[1], beam_size=k)
    nodes, limit = record["search"]["nodes"], record["search"]["max_output_tokens"]
    for step in range(1, record["search"]["steps"] + 1):
        here = [n for n in nodes if n["step"] == step]
        assert sorted(n["rank"] for n in here) == list(range(len(here)))
        if step == limit + 1:  # the length limit: every beam's only extension is EOS
            assert [n["state"] for n in here] == ["finished"] * k
        else:  # the 2K best extensions are ranked; K stay alive
            assert len(here) == 2 * k
            assert sum(n["state"] == "kept" for n in here) == k
            assert {n["state"] for n in here} <= {"kept", "pruned", "finished"}
        for n in here:
            assert (n["parent"] is None) == (step == 1)
            if n["parent"] is not None:
                assert nodes[n["parent"]]["state"] == "kept"
                assert nodes[n["parent"]]["step"] == step - 1
                assert n["log_prob"] <= nodes[n["parent"]]["log_prob"] + 1e-4
        scores = [n["log_prob"] for n in sorted(here, key=lambda n: n["rank"])]
        assert scores == sorted(scores, reverse=True)


@pytest.fixture
def eos_prone(translator: Translator, monkeypatch: pytest.MonkeyPatch) -> Translator:
    """The tiny random model with EOS_BIAS added to its end-of-sentence logit, everywhere the
    logits are computed (search and forward pass alike): its hypotheses then end on their own,
    before the length limit, and some ends are pruned, as with a trained model."""
    model = translator.loaded.model
    plain = model.logits
    bias = torch.zeros(model.config.vocab_size)
    bias[model.config.eos_id] = EOS_BIAS
    monkeypatch.setattr(model, "logits", lambda hidden: plain(hidden) + bias)
    return translator


@pytest.mark.parametrize("beam_size", [3, 4])
def test_hypotheses_that_end_on_their_own(eos_prone: Translator, beam_size: int) -> None:
    natural = pruned_ends = 0
    for text in SENTENCES:
        record = explained(eos_prone, text, beam_size=beam_size, nbest=2)
        search, eos = record["search"], eos_prone.loaded.model.config.eos_id
        want = eos_prone.translate(text, beam_size=beam_size, nbest=2, scores=True)
        assert [h["text"] for h in search["nbest"]] == [w.text for w in want]
        finished = [n for n in search["nodes"] if n["state"] == "finished"]
        assert all(n["token"] == eos and n["rank"] < beam_size for n in finished)
        natural += sum(n["step"] <= search["max_output_tokens"] for n in finished)
        pruned_ends += sum(n["state"] == "pruned" and n["token"] == eos for n in search["nodes"])
        assert search["steps"] <= search["max_output_tokens"]  # ended before the limit
        # the best finished node is the winner, by the length-penalised score
        assert search["nodes"][search["best"]]["score"] == max(n["score"] for n in finished)
    assert natural >= len(SENTENCES)
    assert pruned_ends > 0


def test_the_observer_sees_every_step_and_changes_nothing(translator: Translator) -> None:
    model, tokenizer = translator.loaded.model, translator.loaded.tokenizer
    c = model.config
    ids = [s + [c.eos_id] for s in tokenizer.encode(SENTENCES)]
    src = torch.full((len(ids), max(map(len, ids))), c.pad_id)
    for row, sentence in enumerate(ids):
        src[row, : len(sentence)] = torch.tensor(sentence)
    steps: list[BeamStep] = []
    with torch.inference_mode():
        plain = beam_search(model, src, beam_size=3, nbest=2)
        watched = beam_search(model, src, beam_size=3, nbest=2, observer=steps.append)
    assert watched == plain
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0].sentences.tolist() == list(range(len(ids)))
    longest = max(len(h[0].tokens) for h in plain) + 1  # EOS included
    assert len(steps) >= longest


def test_the_output_distribution_is_the_softmax_beside_the_smoothed_target(
    translator: Translator,
) -> None:
    translator.loaded.hyper_parameters["label_smoothing"] = 0.2
    try:
        record = explained(translator, SENTENCES[2])
    finally:
        del translator.loaded.hyper_parameters["label_smoothing"]
    src, tgt_in = forward_ids(translator, record)
    with torch.inference_mode():
        log_probs = F.log_softmax(translator.loaded.model(src, tgt_in)[0].float(), dim=-1)
    dist, vocab = record["distribution"], log_probs.size(-1)
    assert dist["label_smoothing"] == 0.2 and dist["vocab_size"] == vocab
    assert dist["smoothed_target"] == pytest.approx(0.8 + 0.2 / vocab)
    assert dist["smoothed_other"] == pytest.approx(0.2 / vocab)
    gold = record["translation"]["ids"]
    assert [p["target_id"] for p in dist["positions"]] == gold
    for t, position in enumerate(dist["positions"]):
        top = log_probs[t].topk(10)
        assert [e["id"] for e in position["top"]] == top.indices.tolist()
        assert [e["p"] for e in position["top"]] == pytest.approx(top.values.exp().tolist(),
                                                                  abs=1e-5)
        nll = -float(log_probs[t, gold[t]])
        assert position["nll"] == pytest.approx(nll, abs=1e-3)
        # (1 - eps) * -log p(gold) + eps * mean over the vocabulary of -log p
        smoothed = 0.8 * nll - 0.2 * float(log_probs[t].mean())
        assert position["smoothed_loss"] == pytest.approx(smoothed, abs=1e-3)
        assert position["rank"] == int((log_probs[t] > log_probs[t, gold[t]]).sum()) + 1


def test_subwords_and_positional_encoding(translator: Translator) -> None:
    record = explained(translator, SENTENCES[3])
    loaded = translator.loaded
    c, piece = loaded.model.config, loaded.tokenizer.sp.id_to_piece
    ids = loaded.tokenizer.encode([SENTENCES[3]])[0] + [c.eos_id]
    assert record["source"]["ids"] == ids
    assert record["source"]["pieces"] == [piece(i) for i in ids]
    assert record["translation"]["pieces"] == [piece(i) for i in record["translation"]["ids"]]
    assert record["decoder_input"]["pieces"][0] == "<s>"
    n = record["positions"]["length"]
    assert n == max(len(ids), len(record["decoder_input"]["ids"]))
    np.testing.assert_allclose(record["positions"]["table"], sinusoidal_table(n, c.d_model),
                               atol=1e-4)
    assert record["embedding"]["scale"] == pytest.approx(math.sqrt(c.d_model))
    assert record["embedding"]["position_norms"] == pytest.approx(
        [math.sqrt(c.d_model / 2)] * len(ids), abs=1e-2)


def test_json_attention_has_four_decimals(translator: Translator) -> None:
    """The attention maps, most of the answer's bytes, are written with four decimals (a
    float32 rounded and then printed as a float64 would take three times the bytes)."""
    record = explained(translator, SENTENCES[0])
    as_text = json.loads(to_json(record), parse_float=str)["attention"]
    for kind, array in record["attention"].items():
        numbers = np.array(as_text[kind]).ravel()
        assert max(len(n) for n in numbers) <= len("0.1234")
        np.testing.assert_allclose(numbers.astype(float), array.ravel(), atol=5e-5)


def run_attention(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    attention.add_arguments(parser)
    return attention.run(parser.parse_args(argv))


def test_attention_command_writes_the_same_json(translator: Translator, tiny_checkpoint: Path,
                                                tmp_path: Path,
                                                capsysbinary: pytest.CaptureFixture) -> None:
    out = tmp_path / "explain.json"
    assert run_attention(["--checkpoint", str(tiny_checkpoint), "--src", SENTENCES[0],
                          "--json", str(out), "--beam-size", "3"]) == 0
    written = json.loads(out.read_text("utf-8"))
    assert written == json.loads(to_json(explained(translator, SENTENCES[0], beam_size=3)))
    assert run_attention(["--checkpoint", str(tiny_checkpoint), "--src", SENTENCES[0],
                          "--json", "-", "--beam-size", "3"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == written


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to write"),
    (["--json", "x.json", "--tgt", "der Hund"], "leave out --tgt"),
    (["--json", "x.json", "--beam-size", "0"], "--beam-size must be >= 1"),
])
def test_attention_command_errors(tiny_checkpoint: Path, argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        run_attention(["--checkpoint", str(tiny_checkpoint), "--src", SENTENCES[0], *argv])


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[Server]:
    import_extra("fastapi", "serve")
    running = start_server(tiny_checkpoint, "--max-chars", "400", "--max-beam", "6")
    yield running
    rc, err = stop(running)
    assert rc == 0 and "Traceback" not in err, err


def test_explain_endpoint_is_the_librarys_record(server: Server,
                                                 translator: Translator) -> None:
    reply = server.call("/v1/explain", {"text": SENTENCES[1], "beam_size": 2,
                                        "length_penalty": 1.0})
    assert reply.status == 200
    want = json.loads(to_json(explained(translator, SENTENCES[1], beam_size=2,
                                        length_penalty=1.0)))
    body = reply.body
    for kind in ("encoder", "decoder_self", "cross"):
        np.testing.assert_allclose(body["attention"][kind], want["attention"][kind], atol=1e-3)
    for key in ("source", "translation", "search", "positions", "model"):
        assert body[key] == want[key]
    assert body["translation"]["text"] == translator.translate(SENTENCES[1], beam_size=2,
                                                               length_penalty=1.0)
    assert server.call("/info").body["limits"]["explain"] == {
        "max_source_tokens": 63, "max_beam": 6, "max_output_tokens": 63}


@pytest.mark.parametrize("body, status, message", [
    ({"text": "  "}, 422, "text is empty"),
    ({"text": "the cat", "beam_size": 7}, 422, "beam_size must be at most 6"),
    ({"text": "the cat", "beam_size": 6, "nbest": 7}, 422, "exceeds"),
    ({"text": "the cat", "sampling": True}, 422, "sampling"),
    ({"text": "the cat", "max_len_b": 10**6}, 422, "max_len_b must be at most"),
    ({"text": "the cat " * 40}, 413, "an explanation takes at most 63"),
    ({"text": "x" * 401}, 413, "401 characters"),
])
def test_explain_limits(server: Server, body: dict, status: int, message: str) -> None:
    reply = server.call("/v1/explain", body)
    assert reply.status == status, reply.body
    assert message in reply.body["error"]


def test_output_length_is_capped(translator: Translator) -> None:
    record = explain(translator.loaded, source_ids(translator.loaded, SENTENCES[0]),
                     SearchOptions(max_len_a=0.0, max_len_b=50), max_output_tokens=2)
    assert record["search"]["max_output_tokens"] == 2
    assert len(record["translation"]["ids"]) <= 3
    assert record["search"]["steps"] <= 3


def test_inside_view_in_a_real_browser(server: Server, translator: Translator) -> None:
    """Headless Chromium follows the link from / to the Inside view, types a sentence and
    reads back what it drew: every attention map, the beam tree's best hypothesis and the top
    piece of the first step; a click enlarges a map with its token labels."""
    text = SENTENCES[2]
    record = explained(translator, text)
    c = translator.loaded.model.config
    with chromium() as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(server.url + "/")
        driver.find_element(By.ID, "inside-link").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#beam-size option"))
        driver.find_element(By.ID, "inside-source").send_keys(text)
        driver.find_element(By.ID, "explain").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.endswith("ms"))
        maps = driver.find_elements(By.CSS_SELECTOR, "#attention canvas.map")
        kinds = [m.get_attribute("data-kind") for m in maps]
        best = driver.find_element(By.ID, "beam-best").text
        winner = driver.find_elements(By.CSS_SELECTOR, "#tree .node.winner")
        top1 = driver.find_element(By.CSS_SELECTOR, "#distribution .dist tr.top .piece-name")
        top1 = top1.text
        source_pieces = [p.text.split("\n")[0] for p in
                         driver.find_elements(By.CSS_SELECTOR, "#source-pieces .piece")]
        cross = [m for m in maps if m.get_attribute("data-kind") == "cross"]
        cross[0].click()
        wait.until(lambda d: d.find_element(By.ID, "zoom").is_displayed())
        zoom_rows = len(driver.find_elements(By.CSS_SELECTOR, "#zoom tbody tr"))
        zoom_cols = len(driver.find_elements(By.CSS_SELECTOR, "#zoom thead th")) - 1
    per_kind = {"encoder": c.n_encoder_layers, "decoder_self": c.n_decoder_layers,
                "cross": c.n_decoder_layers}
    # each layer: one map per head and the mean over heads
    assert {k: kinds.count(k) for k in per_kind} == {
        k: layers * (c.n_heads + 1) for k, layers in per_kind.items()}
    assert best == translator.translate(text)
    assert len(winner) == len(record["translation"]["ids"])  # a node per step, EOS included
    src, tgt_in = forward_ids(translator, record)
    with torch.inference_mode():
        first = int(translator.loaded.model(src, tgt_in)[0, 0].argmax())
    assert top1 == translator.loaded.tokenizer.sp.id_to_piece(first)
    assert source_pieces == record["source"]["pieces"]
    assert (zoom_rows, zoom_cols) == (tgt_in.size(1), src.size(1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_explain_runs_on_the_models_device(tiny_checkpoint: Path) -> None:
    """Every tensor of an explanation is built on the model's device (`--device cuda`)."""
    gpu = Translator.from_checkpoint(tiny_checkpoint, device="cuda")
    cpu = Translator.from_checkpoint(tiny_checkpoint, device="cpu")
    on_gpu, on_cpu = explained(gpu, SENTENCES[0]), explained(cpu, SENTENCES[0])
    assert on_gpu["translation"] == on_cpu["translation"]
    for kind in ("encoder", "decoder_self", "cross"):
        np.testing.assert_allclose(on_gpu["attention"][kind], on_cpu["attention"][kind],
                                   atol=1e-3)
    assert json.loads(to_json(on_gpu))["distribution"]["positions"][0]["top"][0] == json.loads(
        to_json(on_cpu))["distribution"]["positions"][0]["top"][0]
