"""Data pipeline at WMT14's size: cold prepare, warm start to the first step, 2 DDP ranks.

There is no WMT14 training corpus on the development machine, so this builds a stand-in of
the same shape: real sentence pairs from $TRANSFORMER_MT_DATA (Multi30k train and the
train_extra corpora, ~127k pairs) joined into `--pairs` lines of WMT-like length (consecutive
pairs appended until a line holds at least `--words` source words; ~24 on average, as in
WMT14). Then, each in a fresh process, with the peak resident memory of the process tree
sampled from /proc every 0.2 s:

  cold    `transformer-mt prepare` on an empty cache: vocabulary (sample + sentencepiece) and
          the token arrays of train and valid
  warm    `transformer-mt fit --trainer.max_steps 1` on the prepared cache: start, map, batch,
          one training step of a tiny model (the time to the first step)
  ddp     the same with 2 gloo DDP processes on the CPU (`--trainer.devices 2`): peak RSS per
          rank, and how many processes trained a vocabulary or tokenized (must be none)

  python scripts/bench_data.py --pairs 4500000 --workdir /tmp/bench-data   # WMT14's size
  python scripts/bench_data.py --pairs 20000 --workdir /tmp/bench-small    # a quick rehearsal

The vocabulary options are those of configs/wmt14_en_de_base.yaml (BPE, 37k pieces). Results
(with the load average at the start and end of each stage, since the machine may be shared) go
to WORKDIR/results.json and are printed; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from transformer_mt.data.corpus import default_data_dir, read_corpus  # noqa: E402

SOURCES = ["multi30k/train.{lang}.xz", "train_extra/opus100_sample.{lang}.xz",
           "train_extra/tatoeba_deu.{lang}.xz", "train_extra/opennmt_wmt_sample.{lang}.xz",
           "train_extra/globalvoices2017.{lang}.xz"]

CONFIG = """\
seed_everything: 1234
model:
  preset: tiny
  d_model: 64
  n_heads: 2
  d_ff: 128
  n_encoder_layers: 1
  n_decoder_layers: 1
  val_bleu_sentences: 0
data:
  data_dir: {data_dir}
  train: ["{corpus}/train.{{lang}}"]
  valid: ["multi30k/val.{{lang}}.xz"]
  vocab_size: {vocab_size}
  spm_model_type: {model_type}
  cache_dir: {cache}
  max_tokens: 4096
  max_len: 256
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 1
  limit_val_batches: 0
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
  default_root_dir: {run}
checkpoint:
  dirpath: {run}/checkpoints
"""


def build_corpus(folder: Path, pairs: int, words: int, seed: int) -> None:
    """`pairs` lines per side of at least `words` source words, from real sentence pairs."""
    data_dir = default_data_dir()
    src: list[str] = []
    tgt: list[str] = []
    for spec in SOURCES:
        text = read_corpus(spec, "en", "de", data_dir)
        src.extend(text.src)
        tgt.extend(text.tgt)
    lengths = np.fromiter((len(s.split()) for s in src), dtype=np.int64, count=len(src))
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.en.tmp", "w", encoding="utf-8") as out_src, \
            open(folder / "train.de.tmp", "w", encoding="utf-8") as out_tgt:
        starts = rng.integers(0, len(src), size=pairs)
        for start in starts.tolist():
            i, n = start, 0
            parts_src, parts_tgt = [], []
            while n < words:
                parts_src.append(src[i])
                parts_tgt.append(tgt[i])
                n += int(lengths[i])
                i = (i + 1) % len(src)
            out_src.write(" ".join(parts_src) + "\n")
            out_tgt.write(" ".join(parts_tgt) + "\n")
    for lang in ("en", "de"):
        os.replace(folder / f"train.{lang}.tmp", folder / f"train.{lang}")


class TreeMemory(threading.Thread):
    """Samples the resident memory (VmRSS) of a process and its descendants every 0.2 s:
    the peak of the sum and the peak of each process (by pid)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_total, self.peak = pid, 0, {}
        self.done = threading.Event()

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as handle:
                        todo.extend(int(c) for c in handle.read().split())
            except OSError:
                pass
        return pids

    def run(self) -> None:
        while not self.done.wait(0.2):
            total = 0
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/status") as handle:
                        rss = next(int(line.split()[1]) for line in handle
                                   if line.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    continue
                total += rss
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
            self.peak_total = max(self.peak_total, total)


def run(name: str, command: list[str], log: Path) -> dict:
    """Run a command, timing it and sampling its memory; stderr goes to `log`."""
    print(f"[{name}] {' '.join(command)}", flush=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        memory = TreeMemory(process.pid)
        memory.start()
        status = process.wait()
        memory.done.set()
        memory.join()
    seconds = time.perf_counter() - start
    text = log.read_text()
    if status != 0:
        raise SystemExit(f"[{name}] failed with status {status}; see {log}:\n{text[-2000:]}")
    per_process = sorted(memory.peak.values(), reverse=True)
    result = {"seconds": round(seconds, 1),
              "load_average_start_end": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "peak_rss_total_mib": round(memory.peak_total / 1024),
              "peak_rss_largest_process_mib": round(per_process[0] / 1024),
              "peak_rss_per_process_mib": [round(kib / 1024) for kib in per_process[:4]],
              "vocabularies_trained": text.count("training sentencepiece"),
              "splits_tokenized": text.count(" pairs tokenized ")}
    print(f"[{name}] {json.dumps(result)}", flush=True)
    return result


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    return names[0] if names else platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4_500_000)
    parser.add_argument("--words", type=int, default=20,
                        help="minimum source words per line (the mean lands near 24)")
    parser.add_argument("--vocab-size", type=int, default=37000)
    parser.add_argument("--model-type", default="bpe", choices=("unigram", "bpe"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-data"))
    parser.add_argument("--stages", default="cold,warm,ddp")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    corpus = args.workdir / f"corpus-{args.pairs}"
    if not (corpus / "train.de").exists():
        start = time.perf_counter()
        build_corpus(corpus, args.pairs, args.words, args.seed)
        print(f"[corpus] {args.pairs:,} pairs in {time.perf_counter() - start:.0f} s", flush=True)
    cache, run_dir = args.workdir / "cache", args.workdir / "run"
    config = args.workdir / "bench.yaml"
    config.write_text(CONFIG.format(data_dir=default_data_dir().resolve(), corpus=corpus,
                                    vocab_size=args.vocab_size, model_type=args.model_type,
                                    cache=cache, run=run_dir))
    cli = [sys.executable, "-m", "transformer_mt.commands.main"]
    with open(corpus / "train.en", "rb") as handle:
        words = sum(len(line.split()) for _, line in zip(range(100_000), handle, strict=False))
    results: dict = {"pairs": args.pairs, "mean_source_words": round(words / 100_000, 1),
                     "corpus_bytes": sum(f.stat().st_size for f in corpus.glob("train.*")),
                     "vocab_size": args.vocab_size, "model_type": args.model_type,
                     "cpus": os.cpu_count(), "machine": _cpu_model(),
                     "date": time.strftime("%Y-%m-%d")}
    stages = args.stages.split(",")
    if "cold" in stages:
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        results["cold_prepare"] = run("cold", [*cli, "prepare", "--config", str(config)],
                                      args.workdir / "cold.log")
    if "warm" in stages:
        results["warm_fit_first_step"] = run("warm", [*cli, "fit", "--config", str(config)],
                                             args.workdir / "warm.log")
    if "ddp" in stages:
        results["ddp2_fit_first_step"] = run(
            "ddp", [*cli, "fit", "--config", str(config), "--trainer.devices", "2",
                    "--trainer.strategy", "ddp"], args.workdir / "ddp.log")
    (args.workdir / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
