"""Dead letters: which failure is which, what a dead letter carries, how repeats collapse, the retry loop."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json

import pytest

from gridwatch.config import TABLES, Settings
from gridwatch.contract import ContractError
from streams import deadletters as dl


@pytest.mark.parametrize("exc, reason", [
    (ContractError("no ts"), dl.INVALID), (json.JSONDecodeError("x", "{", 0), dl.INVALID),
    (KeyError("status"), dl.INVALID), (TypeError("NoneType"), dl.INVALID),
    (dl.InjectedFault("table"), dl.INTERNAL), (ConnectionError("refused"), dl.INTERNAL),
    (asyncio.TimeoutError(), dl.INTERNAL), (RuntimeError("?"), dl.INTERNAL)])
def test_classify(exc, reason):
    assert dl.classify(exc) == reason


def test_partitions_mismatch_and_kafka_errors_are_internal():
    from aiokafka.errors import KafkaConnectionError
    from faust.exceptions import PartitionsMismatch

    assert dl.classify(PartitionsMismatch("changelog has 0 partitions")) == dl.INTERNAL
    assert dl.classify(KafkaConnectionError()) == dl.INTERNAL


def test_a_dead_letter_carries_what_a_replay_needs_and_repeats_share_its_id():
    raw = b"\xff{not utf-8"
    key, rec = dl.letter(topic="p.gridwatch.notify-requests", partition=3, offset=17, key=b"C1", value=raw,
                         error="boom", reason=dl.INTERNAL, stage="notify")
    assert key.decode() == rec["dlq_id"]
    from gridwatch.contract import check

    check("gridwatch.dlq", json.loads(json.dumps(rec)))  # the contract's schema
    with pytest.raises(ContractError):
        check("gridwatch.dlq", {**rec, "reason": "bad luck"})
    assert base64.b64decode(rec["value_b64"]) == raw and base64.b64decode(rec["key_b64"]) == b"C1"
    assert (rec["topic"], rec["partition"], rec["offset"], rec["stage"], rec["reason"]) == (
        "p.gridwatch.notify-requests", 3, 17, "notify", "internal")
    again, _ = dl.letter(topic="p.gridwatch.notify-requests", partition=3, offset=99, key=b"C1", value=raw,
                         error="other", reason=dl.INTERNAL, stage="notify")
    assert again == key  # the same input re-read later: recognisably the same
    assert dl.letter_id("t", None, b"") != dl.letter_id("t", b"", b"")
    assert dl.letter_id("t", b"a", b"bc") != dl.letter_id("t", b"ab", b"c")


def _copy(lid, partition, offset, **kw):
    return partition, offset, {"dlq_id": lid, "topic": "x.alerts", "reason": dl.INVALID, **kw}


def test_copies_collapse_and_a_replay_note_settles_only_the_copies_before_it():
    letters = dl.collect([_copy("a", 0, 1), _copy("b", 1, 2), _copy("a", 0, 5, error="newest")],
                         [(0, 0, {"dlq_id": "b", "dlq_offset": 2})])
    assert (letters["a"].copies, letters["a"].offset, letters["a"].record["error"]) == (2, 5, "newest")
    assert letters["a"].pending and not letters["b"].pending
    # dead-lettered again after the replay: pending again
    letters = dl.collect([_copy("b", 1, 2), _copy("b", 1, 9)], [(0, 0, {"dlq_id": "b", "dlq_offset": 2})])
    assert letters["b"].pending and letters["b"].copies == 2


def test_select_by_contract_or_deployed_topic_reason_and_id_prefix():
    s = dataclasses.replace(Settings(), topic_prefix="x.")
    letters = dl.collect([_copy("abc1", 0, 1), _copy("def2", 0, 2, topic="x.customers", reason=dl.INTERNAL)], [])
    assert [lt.id for lt in dl.select(letters, s, topic="alerts")] == ["abc1"]
    assert [lt.id for lt in dl.select(letters, s, topic="x.customers")] == ["def2"]
    assert [lt.id for lt in dl.select(letters, s, reason=dl.INTERNAL)] == ["def2"]
    assert [lt.id for lt in dl.select(letters, s, ids=["abc"])] == ["abc1"]


@dataclasses.dataclass(eq=False)
class _Event:
    message: str


def _run_stage(events: list[str], handle, *, deadline_s: float = 5.0):
    """Drive ``StageRetries`` the way a worker agent does: ``async for event in events(...)`` and
    ``async with guard(msg)`` around the processing. Returns (messages as processed, dead letters, retries)."""
    processed, letters, retries = [], [], []

    async def dead_letter(msg, exc, reason):
        letters.append((msg, reason, exc))

    async def source():
        for e in events:
            yield _Event(e)

    async def main():
        stage = dl.StageRetries("test", dead_letter=dead_letter, on_retry=lambda *a: retries.append(a),
                                backoff=lambda: dl.Backoff(deadline_s=deadline_s, first_delay_s=0.01))
        async for event in stage.events(source()):
            msg = event.message
            async with stage.guard(msg):
                processed.append(msg)
                if msg == "skip":
                    continue  # as an agent's body does: the message is done, the next one comes
                handle(msg)

    asyncio.run(main())
    return processed, letters, retries


def test_an_internal_error_is_retried_in_place_and_blocks_what_comes_after():
    faults = dl.Faults("lifecycle.table-write=2")
    processed, letters, retries = _run_stage(
        ["a", "skip", "b", "c"], lambda m: m == "b" and faults.hit("lifecycle.table-write"))
    assert processed == ["a", "skip", "b", "b", "b", "c"]  # b twice more, and c only after it
    assert letters == [] and [(r[0], r[1]) for r in retries] == [("b", 1), ("b", 2)]
    assert 0.005 <= retries[0][3] <= 0.015 and 0.01 <= retries[1][3] <= 0.03  # jittered, doubling


def test_an_invalid_input_is_dead_lettered_at_once_and_the_stage_goes_on():
    def handle(m):
        if m == "bad":
            raise ContractError("no ts")

    processed, letters, retries = _run_stage(["bad", "ok"], handle)
    assert processed == ["bad", "ok"] and retries == []
    assert [(m, reason) for m, reason, _exc in letters] == [("bad", dl.INVALID)]


def test_an_internal_error_past_the_deadline_is_a_dead_letter_internal():
    def handle(m):
        if m == "down":
            raise ConnectionError("broker gone")

    processed, letters, retries = _run_stage(["down", "ok"], handle, deadline_s=0.1)
    ((msg, reason, exc),) = letters
    assert (msg, reason) == ("down", dl.INTERNAL) and processed[-1] == "ok" and processed.count("down") >= 2
    assert isinstance(exc, dl.RetriesExhausted) and isinstance(exc.last, ConnectionError)
    assert exc.attempts == processed.count("down") == len(retries) + 1 and "broker gone" in str(exc)
    # no retry time at all (GRIDWATCH_RETRY_DEADLINE_S=0): the first internal error is the dead letter
    processed, letters, retries = _run_stage(["down"], handle, deadline_s=0)
    assert processed == ["down"] and retries == [] and letters[0][1] == dl.INTERNAL


def test_backoff_doubles_up_to_its_cap_and_stops_at_the_deadline():
    now = [0.0]
    b = dl.Backoff(deadline_s=60, first_delay_s=0.5, max_delay_s=15, clock=lambda: now[0])
    waits = []
    while (w := b.next_wait()) is not None:
        waits.append(w)
        now[0] += w
    caps = [0.5, 1, 2, 4, 8, 15, 15, 15, 15, 15, 15]
    assert all(0.5 * c <= w <= 1.5 * c for w, c in zip(waits, caps)) and now[0] <= 60
    assert b.attempts == len(waits) + 1 and "attempts over" in str(b.exhausted(OSError("x")))


def test_faults_refuse_unknown_points():
    with pytest.raises(ValueError, match="unknown fault point"):
        dl.Faults("notify.tabel-write=1")
    assert dl.Faults("lifecycle.table-write=2,notify.table-write").left == {"lifecycle.table-write": 2,
                                                                             "notify.table-write": 1}
    assert dl.Faults(None).left == {}


def test_every_table_of_the_worker_is_listed_so_its_changelog_is_created_up_front(tmp_path):
    from streams.topics import faust_topics
    from streams.worker import build_app

    s = dataclasses.replace(Settings(), run_dir=tmp_path, topic_prefix="u.")
    app = build_app(s)
    assert set(app.tables) == set(TABLES)
    specs = faust_topics(s)
    for name, table in app.tables.items():
        assert table.changelog_topic.get_topic_name() in specs
        assert specs[table.changelog_topic.get_topic_name()]["num_partitions"] == s.partitions
    assert specs["u.gridwatch-__assignor-__leader"]["num_partitions"] == 1


def test_the_worker_serves_its_retries_and_dead_letters_as_prometheus_counters(tmp_path):
    from collections import Counter

    from prometheus_client.parser import text_string_to_metric_families

    from streams.worker import build_app, worker_exposition

    stats = Counter({"retries_lifecycle": 2, "retries_notify": 1, "errors_notify": 1, "dlq": 3, "dlq_internal_error": 1,
                     "dlq_ts_in_future": 2, "readings": 40})
    samples = {(s.name, tuple(s.labels.values())): s.value
               for fam in text_string_to_metric_families(worker_exposition(stats)) for s in fam.samples}
    assert samples == {("gridwatch_worker_retries_total", ("lifecycle",)): 2,
                       ("gridwatch_worker_retries_total", ("notify",)): 1,
                       ("gridwatch_worker_internal_errors_total", ("notify",)): 1,
                       ("gridwatch_worker_dead_letters_total", ("internal_error",)): 1,
                       ("gridwatch_worker_dead_letters_total", ("ts_in_future",)): 2}
    s = dataclasses.replace(Settings(), run_dir=tmp_path, topic_prefix="u.")
    assert "/metrics" in {v.view_path for v in build_app(s, web_port=6066).web.views.values()}
    assert "/metrics" not in {v.view_path for v in build_app(s).web.views.values()}


def test_the_workers_producer_is_idempotent_so_a_retried_request_is_not_appended_twice(tmp_path):
    """A produce request retried after a broker restart must not append a `sent` record (or an alert) twice:
    the aiokafka producer the worker's app makes has Kafka's idempotence on, with acks from all replicas."""
    import asyncio

    from streams.worker import build_app

    s = dataclasses.replace(Settings(), run_dir=tmp_path, topic_prefix="u.")
    app = build_app(s)

    async def made():  # aiokafka makes its producer inside a running loop; nothing connects before start()
        return app.producer._new_producer()

    producer = asyncio.run(made())
    assert producer._txn_manager is not None  # aiokafka keeps the producer id and sequences there
    assert producer._txn_manager.transactional_id is None  # idempotent, not transactional
    assert producer._sender._acks == -1  # every in-sync replica (aiokafka's -1 is "all")
