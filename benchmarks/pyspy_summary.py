"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) of the worker into the parts of its path.

    py-spy record --pid PID --format raw --output worker.txt --rate 100
    python -m benchmarks.pyspy_summary worker.txt

py-spy samples from outside the process, so unlike cProfile/pyinstrument it does not inflate code that
makes many small calls (``copy.deepcopy``, JSON, asyncio); it is what ``benchmarks.worker_throughput
--py-spy FILE`` uses. py-spy is not a dependency: ``pip install py-spy`` into the venv to use it.

Two views, both in % of all samples (idle threads are not sampled, so 100 % = the time the worker's
threads were on CPU, or waiting on the GIL):
  inclusive  samples whose stack contains the frame (a stage and what it calls)
  self       samples by the leaf frame's package (where the CPU actually went)
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# (label, regex on one frame "function (file:line)"); indented labels are parts of the one above
INCLUSIVE = [
    ("agent on_readings (detect stage)", r"\bon_readings \(streams/detect\.py"),
    ("  decode_readings", r"\bdecode_readings \(gridwatch/contract\.py"),
    ("    fastjsonschema validation", r"\(<string>:|fastjsonschema"),
    ("  detect()", r"\.detect \(streams/detect\.py"),
    ("    VoltageDetector.process", r"VoltageDetector\.process"),
    ("  broadcast_watermark()", r"broadcast_watermark \(streams/detect\.py"),
    ("agent on_status (topology stage)", r"\bon_status \(streams/topology\.py"),
    ("  TransformerCorrelator.status", r"TransformerCorrelator\.status "),
    ("  decide() / TransformerCorrelator.advance", r"\.decide \(streams/topology\.py"),
    ("copy.deepcopy (anywhere)", r"^deepcopy \(copy\.py"),
    ("table reads (Faust Table get: RocksDB get + JSON decode)",
     r"ManagedUserDict\.__getitem__|SerializedStore\.__getitem__|SerializedStore\.__contains__|Mapping\.get \("),
    ("table writes (JSON encode, RocksDB put, changelog send)",
     r"ManagedUserDict\.__setitem__|SerializedStore\.__setitem__"),
    ("topic sends (Topic.send / send_soon)", r"Topic\.send |Channel\.send |Topic\.send_soon|Channel\.send_soon"),
    ("JSON encode/decode (anywhere)", r"\(json/"),
    ("stream machinery (faust/streams.py)", r"\(faust/streams\.py"),
    ("aiokafka (anywhere)", r"\(aiokafka/"),
    ("Faust consumer (its thread, fetcher, getmany -> events)", r"AIOKafkaConsumerThread|WorkerThread\.run|"
                                                                r"_fetcher \(faust|_drain_messages|getmany"),
    ("Faust producer (buffer, flush, send)", r"\(faust/transport/producer\.py|ProducerBuffer"),
    ("offset commit", r"\bcommit\b.*\(faust/transport/consumer\.py|_commit"),
    ("asyncio event loop select/poll", r"select \(selectors\.py"),
]

SELF_BUCKETS = [
    ("gridwatch code (contract, detectors, worker)", r"\((gridwatch|detectors|streams)/"),
    ("copy.deepcopy", r"\(copy\.py"),
    ("json (stdlib)", r"\(json/"),
    ("fastjsonschema generated validator", r"\(<string>:"),
    ("faust", r"\(faust/"),
    ("mode (Faust's service library)", r"\(mode/"),
    ("aiokafka", r"\(aiokafka/"),
    ("kafka-python", r"\(kafka/"),
    ("asyncio", r"\(asyncio/|\(selectors\.py"),
    ("rocksdict", r"rocksdict|Rdict"),
    ("datetime / other stdlib", r"\((datetime|contextlib|weakref|_weakrefset|typing|enum|abc|functools|logging/)"),
]


def parse(path: str) -> list[tuple[list[str], int]]:
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            out.append((stack.split(";"), n))
    return out


def summarise(path: str) -> str:
    stacks = parse(path)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path}: no samples"
    inc: Counter = Counter()
    pats = [(label, re.compile(rx)) for label, rx in INCLUSIVE]
    for frames, n in stacks:
        for label, rx in pats:
            if any(rx.search(f) for f in frames):
                inc[label] += n
    own: Counter = Counter()
    bpats = [(label, re.compile(rx)) for label, rx in SELF_BUCKETS]
    for frames, n in stacks:
        leaf = frames[-1] if frames else ""
        for label, rx in bpats:
            if rx.search(leaf):
                own[label] += n
                break
        else:
            own["other: " + (re.sub(r"^.*\(([^/:]+)[/:].*$", r"\1", leaf) or "?")] += n
    lines = [f"py-spy profile {path}: {total} samples", "", "inclusive (% of samples whose stack contains it):"]
    for label, _ in INCLUSIVE:
        lines.append(f"  {label:<58} {100 * inc[label] / total:5.1f} %")
    lines += ["", "self (% of samples by the package of the leaf frame):"]
    for label, n in own.most_common(14):
        lines.append(f"  {label:<58} {100 * n / total:5.1f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    for path in args:
        print(summarise(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
