"""Fuzzing the running worker on the real broker: 10,000 generated inputs on every contract topic.

A utility's first six hours go in; then 10,000 inputs drawn by hypothesis (``tests/fuzz_inputs.py``: bad
JSON, wrong types, nesting, giant numbers, NaN and Infinity, timestamps decades ahead and before 2000, meters
that are not in the directory, broken customer records of real customers, unicode), published in bulk;
then the rest of the day, with a transformer undervoltage. Each input is processed or dead-lettered with a
contract reason (never ``internal_error``), the worker stays up, and the alerts are exactly those the same
day gives without the inputs (the detection stages run in-process, ``detectors.pipeline.Pipeline``) — so
no rejected customer record replaced a good one, and no reading moved a watermark it should not have.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from gridwatch import contract
from tests.fuzz_inputs import generate, inputs
from tests.integration.test_pipeline import PrefixedSink

pytestmark = pytest.mark.integration

N_INPUTS = 10_000
CONTRACT_REASONS = {"not_json", "not_finite", "invalid", "key_mismatch", "ts_out_of_range", "ts_in_future",
                    "unknown_meter"}


def read_all(pipeline, topic: str, quiet_s: float = 3.0) -> list[dict]:
    """Every record of ``topic`` up to its end offsets, once the end offsets stop moving for ``quiet_s``."""
    from kafka import KafkaConsumer, TopicPartition

    name = pipeline.topic(topic)
    consumer = KafkaConsumer(bootstrap_servers=pipeline.settings.bootstrap_list, group_id=None,
                             enable_auto_commit=False, max_poll_records=5000)
    try:
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[dict] = []
        end: dict = {}
        while True:
            new_end = consumer.end_offsets(tps)
            if new_end == end and all(consumer.position(tp) >= end[tp] for tp in tps):
                return out
            end = new_end
            while any(consumer.position(tp) < end[tp] for tp in tps):
                for batch in consumer.poll(timeout_ms=500).values():
                    out.extend(json.loads(m.value) for m in batch)
            pipeline.assert_alive()
            time.sleep(quiet_s)
    finally:
        consumer.close()


def _summary(alerts: list[dict]) -> dict:
    """alert id -> (scope, kind, started_at, customers, meters, statuses in order, without repeats)."""
    out: dict = {}
    for a in alerts:
        scope, kind = (a["scope"]["level"], a["scope"]["id"]), a["kind"]
        prev = out.get(a["alert_id"])
        statuses = (prev[-1] if prev else ()) + ((a["status"],) if not prev or prev[-1][-1] != a["status"] else ())
        out[a["alert_id"]] = (scope, kind, a["started_at"], tuple(sorted(a["customer_ids"])),
                              tuple(sorted(a["meter_ids"])), statuses)
    return out


def test_ten_thousand_generated_inputs_are_refused_or_processed_and_detection_is_unchanged(pipeline):
    from detectors.pipeline import Pipeline
    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=9, feeders=1, transformers_per_feeder=2, meters_per_transformer=6, regions="CN",
                              hours=12, faults=("transformer_undervoltage:T0001@+8h/2h",)))
    start = sim.start
    expected = _summary(Pipeline().run(sim.timed_records()).alerts)
    assert any(k[1] == "undervoltage" and k[0] == ("transformer", "T0001") for k in expected.values())

    # the inputs: known meters and customers of the simulated utility, broken readings dated in its day
    customers = sim.customers()
    meters = sorted(c["meter_id"] for c in customers)
    now = int(time.time())
    windows = [(contract.EARLIEST_TS, start - 86400), (start + 10 * 86400, now - 86400)]
    t_gen = time.monotonic()
    fuzz = generate(inputs(meters, customers, start + 2 * 3600, now, windows), N_INPUTS)
    t_gen = time.monotonic() - t_gen
    assert len(fuzz) == N_INPUTS
    print(f"\n{N_INPUTS} inputs generated in {t_gen:.1f} s: "
          + ", ".join(f"{k}={v}" for k, v in sorted(Counter(f"{i.topic}/{i.expect}" for i in fuzz).items())))

    records = list(sim.timed_records())
    cut = start + 6 * 3600
    publish([r for r in records if r[0] < cut], PrefixedSink(pipeline), progress=False)

    t_pub = time.monotonic()
    producer = pipeline.producer
    futures = [(producer.send(pipeline.topic(i.topic), key=i.key, value=i.value), i) for i in fuzz]
    producer.flush(60)
    sent = {(pipeline.topic(i.topic), f.value.partition, f.value.offset): i for f, i in futures}
    print(f"published in {time.monotonic() - t_pub:.1f} s")

    publish([r for r in records if r[0] >= cut], PrefixedSink(pipeline), progress=False, flush_after=None)

    must = {k for k, i in sent.items() if i.expect != "any"}

    def fuzz_dead_letters(rs):
        return {(d["topic"], d["partition"], d["offset"]): d for d in rs if d["offset"] is not None}

    t_dlq = time.monotonic()
    pipeline.read("gridwatch.dlq", lambda rs: must <= set(fuzz_dead_letters(rs)), timeout=600)
    print(f"every input that must be refused was dead-lettered {time.monotonic() - t_dlq:.1f} s after publishing")

    alerts = pipeline.read("alerts", lambda rs: _summary(rs) == expected, timeout=300)
    dlq = read_all(pipeline, "gridwatch.dlq")
    assert _summary(read_all(pipeline, "alerts")) == expected

    # every dead letter has a contract reason; none is an internal error
    reasons = Counter(d.get("code") for d in dlq)
    print("dead letters by reason:", dict(reasons))
    assert set(reasons) <= CONTRACT_REASONS, reasons
    by_offset = fuzz_dead_letters(dlq)
    assert len(by_offset) == sum(d["offset"] is not None for d in dlq), "one dead letter per input at most"
    for key, d in by_offset.items():
        assert key in sent, f"a dead letter for a message that was not a generated input: {d}"
        inp = sent[key]
        assert inp.expect != "ts_in_future" or d["code"] == "ts_in_future", (inp.why, d["error"])
        assert d["payload"] == (None if inp.value is None else inp.value.decode("utf-8", errors="replace"))
    # readings held for unknown meters and given up are dead-lettered as one replayable message each
    for d in dlq:
        if d["offset"] is None:
            assert d["code"] == "unknown_meter"
            contract.decode_readings(d["key"].encode(), d["payload"]) if d["topic"].endswith("meter.readings") \
                else contract.decode_event(d["key"].encode(), d["payload"])
    accepted = [i for k, i in sent.items() if k not in by_offset]
    assert all(i.expect == "any" for i in accepted)
    print(f"{len(by_offset)} of {N_INPUTS} inputs dead-lettered, {len(accepted)} processed "
          f"({Counter(i.why for i in accepted)})")
    pipeline.assert_alive()
    assert "internal error" not in (pipeline.settings.run_dir / "worker.log").read_text(errors="replace")
    assert json.dumps(alerts, allow_nan=False)
