"""Where the server's memory goes (issue 28), in-process, no HTTP: the service and the batcher
of `transformer-mt serve` (the model loop in a thread) run waves of concurrent requests of the
soak's good kinds (sentences, paragraphs, HTML-sized texts) and of refused ones (beam 64, NaN),
and after the warm-up wave and at the end it reports:

- Python objects: `tracemalloc` totals and the top lines of the snapshot diff;
- the C allocator: glibc's `mallinfo2` (bytes in use, free bytes it holds, arena count),
  resident memory, and resident memory after `malloc_trim(0)`.

  python scripts/memory_serve.py --checkpoint /work/models/demo.ckpt --waves 30
  python scripts/memory_serve.py --checkpoint /work/models/demo.ckpt --waves 30 --max-beam 64 \
      --batch-tokens 262144
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import lzma
import os
import random
import threading
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def report(label: str) -> tracemalloc.Snapshot:
    info = LIBC.mallinfo2()
    snapshot = tracemalloc.take_snapshot()
    traced = sum(s.size for s in snapshot.statistics("filename")) / 2**20
    print(f"{label}: RSS {rss_mb():.0f} MB; Python objects (tracemalloc) {traced:.1f} MB; "
          f"malloc: in use {info.uordblks / 2**20:.0f} MB, free but held "
          f"{info.fordblks / 2**20:.0f} MB, mmapped {info.hblkhd / 2**20:.0f} MB", flush=True)
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--waves", type=int, default=40, help="waves of 64 requests")
    parser.add_argument("--max-beam", type=int, default=16, help="the server's --max-beam")
    parser.add_argument("--batch-tokens", type=int, default=16384,
                        help="the server's --batch-tokens (rows × tokens); 4096 × the beam "
                        "reproduces the budget of source tokens alone of the earlier server")
    args = parser.parse_args()

    from transformer_mt.inference.search import SearchOptions
    from transformer_mt.inference.translator import Translator
    from transformer_mt.serving.batcher import ApiError, Batcher
    from transformer_mt.serving.service import TranslationService
    from transformer_mt.serving.settings import ServerSettings

    data = Path(os.environ.get("TRANSFORMER_MT_DATA", REPO.parent / "shared" / "data"))
    with lzma.open(data / "multi30k" / "test2016.en.xz", "rt", encoding="utf-8") as handle:
        pool = [line.strip() for line in handle if line.strip()]
    translator = Translator.from_checkpoint(args.checkpoint, device="cpu")
    batcher = Batcher(translator, ServerSettings(checkpoint=args.checkpoint,
                                                 max_beam=args.max_beam,
                                                 batch_tokens=args.batch_tokens))
    service = TranslationService(batcher)
    loop_thread = threading.Thread(target=batcher.run, daemon=True)
    loop_thread.start()
    rng = random.Random(0)

    async def one() -> None:
        s = [rng.choice(pool) for _ in range(3)]
        kind = rng.random()
        options = SearchOptions()
        texts = [s[0]] if kind < 0.6 else [f"{s[0]} {s[1]}\n\n{s[2]}"]
        if kind > 0.9:
            options = SearchOptions(beam_size=64, nbest=1)
        try:
            await service.translate(texts, options)
        except ApiError:
            pass

    async def wave() -> None:
        await asyncio.gather(*(one() for _ in range(64)))

    tracemalloc.start(10)
    for i in range(args.waves):
        asyncio.run(wave())
        if i == 4:
            warm = report("after 5 waves (warm-up)")
    end = report(f"after {args.waves} waves")
    print("top growth of Python objects since the warm-up:")
    for stat in end.compare_to(warm, "lineno")[:8]:
        print(f"  {stat}")
    LIBC.malloc_trim(0)
    report("after malloc_trim(0)")
    batcher.stop()
    loop_thread.join()


if __name__ == "__main__":
    main()
