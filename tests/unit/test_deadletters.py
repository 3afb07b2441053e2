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


def test_with_retries_retries_internal_errors_and_raises_invalid_ones_at_once():
    faults, calls, retries = dl.Faults("notify.table-write=2"), [], []

    async def work():
        calls.append(1)
        faults.hit("notify.table-write")
        return "done"

    out = asyncio.run(dl.with_retries(work, on_retry=lambda *a: retries.append(a), first_delay_s=0.01))
    assert out == "done" and len(calls) == 3 and [a[0] for a in retries] == [1, 2]

    async def bad():
        calls.append(1)
        raise ContractError("wrong")

    calls.clear()
    with pytest.raises(ContractError):
        asyncio.run(dl.with_retries(bad, on_retry=lambda *a: None, first_delay_s=0.01))
    assert len(calls) == 1


def test_with_retries_gives_up_at_the_deadline():
    async def down():
        raise ConnectionError("broker gone")

    with pytest.raises(dl.RetriesExhausted) as info:
        asyncio.run(dl.with_retries(down, on_retry=lambda *a: None, deadline_s=0.3, first_delay_s=0.05))
    assert info.value.attempts >= 2 and isinstance(info.value.last, ConnectionError)
    assert dl.classify(info.value) == dl.INTERNAL


def test_faults_refuse_unknown_points():
    with pytest.raises(ValueError, match="unknown fault point"):
        dl.Faults("notify.tabel-write=1")
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
