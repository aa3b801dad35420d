"""Benchmark: learned-zh against its teacher on the gold dev set, and its throughput.

What it prints:

* F1 table -- boundary precision / recall / F1 and SIGHAN word F1 on the UD Chinese
  GSDSimp dev set (../shared/corpora/zh/ud_gsdsimp/, 500 gold-segmented sentences,
  evaluation only, never trained on) for learned-zh with both placements, its teacher
  jieba (if installed; it sees the whole sentence, so it is an upper bound rather
  than a competitor), and regex-words (the paper's splitter, blind to Chinese);
* batch MB/s -- `splitter.points(TextBatch.from_docs(paragraphs))` over all of
  ../shared/corpora/zh/*.txt (5.3 MB, blank-line paragraphs), decoding included,
  best of --repeat runs;
* streaming KB/s -- the byte-at-a-time path used while generating, on 20 KB;
* prep MB/s -- input bytes / wall seconds of the whole `aunet prep FILE -s SPEC
  --out DIR --quiet --workers 1` process (start-up, reading, splitting, writing Arrow
  shards), on the concatenated corpora (--prep-mb MB).

    .venv/bin/python bench/splitter_zh.py            # everything (~2 minutes)
    .venv/bin/python bench/splitter_zh.py --no-prep  # skip the end-to-end prep runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from splitters import Pipeline, TextBatch, parse_spec, segeval  # noqa: E402

SHARED = REPO.parent / "shared" / "corpora" / "zh"
GOLD = SHARED / "ud_gsdsimp" / "zh_gsdsimp-ud-dev.seg.txt"
SPECS = ["learned-zh:placement=end", "learned-zh:placement=next-start", "jieba", "regex-words"]


def f1_table(specs: list[str]) -> list[dict]:
    sentences, gold = segeval.read_gold(GOLD)
    rows = []
    for spec in specs:
        try:
            splitter = parse_spec(spec)
            pred = segeval.predicted_boundaries(splitter, sentences)
        except Exception as exc:  # jieba not installed
            print(f"  {spec}: skipped ({exc})")
            continue
        rows.append({"splitter": spec, **segeval.score(pred, gold)})
    return rows


def batch_mb_s(spec: str, docs: list[bytes], repeat: int) -> float:
    splitter = parse_spec(spec)
    splitter.points(TextBatch.from_docs(docs[:10]), None)  # load tables once
    n = sum(map(len, docs))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        splitter.points(TextBatch.from_docs(docs), None)
        best = min(best, time.perf_counter() - t0)
    return n / best / 1e6


def stream_kb_s(spec: str, data: bytes) -> float:
    streamer = Pipeline.from_specs([spec]).streamer()
    t0 = time.perf_counter()
    streamer.feed(data)
    return len(data) / (time.perf_counter() - t0) / 1e3


def prep_mb_s(spec: str, path: Path) -> float:
    aunet = Path(sys.executable).with_name("aunet")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(
            [str(aunet), "prep", str(path), "-s", spec, "--out", f"{tmp}/out", "--quiet",
             "--workers", "1"],
            check=True,
        )  # fmt: skip
        return path.stat().st_size / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prep-mb", type=float, default=10.0)
    ap.add_argument("--no-prep", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    if not GOLD.exists():
        sys.exit(f"{GOLD} not found: this benchmark needs ../shared/corpora/zh")

    results: dict = {"f1": f1_table(SPECS)}
    print(f"\nBoundary scores on {GOLD.name} (gold, evaluation only)\n")
    print(f"| {'splitter':34} | {'P':>6} | {'R':>6} | {'F1':>6} | {'word F1':>7} |")
    print(f"|{'-' * 36}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for r in results["f1"]:
        print(
            f"| {r['splitter']:34} | {r['precision']:.4f} | {r['recall']:.4f} | "
            f"{r['f1']:.4f} | {r['word_f1']:.4f}  |"
        )

    texts = sorted(SHARED.glob("*.txt"))
    raw = b"".join(p.read_bytes() for p in texts)
    docs = [d for d in raw.split(b"\n\n") if d]
    print(f"\nThroughput ({len(raw) / 1e6:.1f} MB of zh corpora, {len(docs)} paragraphs)\n")
    print(f"| {'splitter':34} | batch MB/s | stream KB/s | prep 1 worker MB/s |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 13}|{'-' * 20}|")
    results["throughput"] = []
    prep_file = None
    if not args.no_prep:
        reps = max(1, round(args.prep_mb * 1e6 / len(raw)))
        prep_file = Path(tempfile.mkdtemp()) / "zh.txt"
        prep_file.write_bytes(raw * reps)
    for spec in ["regex-words", "learned-zh:placement=end", "learned-zh:placement=next-start"]:
        row = {
            "splitter": spec,
            "batch_mb_s": batch_mb_s(spec, docs, args.repeat),
            "stream_kb_s": stream_kb_s(spec, raw[:20_000]),
            "prep_mb_s": prep_mb_s(spec, prep_file) if prep_file else None,
        }
        results["throughput"].append(row)
        prep = f"{row['prep_mb_s']:.2f}" if row["prep_mb_s"] else "-"
        print(
            f"| {spec:34} | {row['batch_mb_s']:10.2f} | {row['stream_kb_s']:11.1f} | {prep:>18} |"
        )
    if prep_file:
        prep_file.unlink()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
