"""The readings agent's micro-batches (streams/detect.py), retries inside a batch (StageRetries.run), and the
readings' fast decoding path (gridwatch/contract.py), which must give what the JSON Schema path gives."""

from __future__ import annotations

import asyncio
import json

import pytest

from gridwatch import contract
from gridwatch.contract import ContractError, decode_readings
from streams import deadletters as dl
from streams.detect import STATUSES_PER_MESSAGE, Directory, MeterStates, StatusBatch


class _Table(dict):
    """A table's dict side: what MeterStates uses (get, item set), counting reads and writes."""

    def __init__(self):
        super().__init__()
        self.reads = self.writes = 0

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)

    def __setitem__(self, key, value):
        self.writes += 1
        super().__setitem__(key, value)


def test_a_meter_state_is_read_once_and_written_once_per_batch_under_its_event():
    table = _Table()
    table["M1"] = {"n": 0}
    table.writes = 0
    states, used = MeterStates(table), []
    for n in range(1, 4):  # three messages of M1 in one batch, one of M2
        states.put("M1", {"n": (states.get("M1") or {"n": 0})["n"] + 1}, event=f"ev{n}")
    states.put("M2", {"n": 1}, event="ev-m2")
    assert table["M1"] == {"n": 0} and table.reads == 1  # nothing written before the batch ends
    assert states.flush(used.append) == 2
    assert table == {"M1": {"n": 3}, "M2": {"n": 1}} and table.writes == 2
    assert used == ["ev3", "ev-m2"]  # each written under the event of its last message (its partition)
    assert states.flush(used.append) == 0  # nothing left to write
    states.get("M1")
    assert table.reads == 1  # kept in memory between batches ...
    states.forget()
    states.get("M1")
    assert table.reads == 2  # ... until a rebalance


def test_a_failed_write_is_written_again_and_the_cache_is_bounded():
    class Failing(_Table):
        fail = 1

        def __setitem__(self, key, value):
            if self.fail:
                self.fail -= 1
                raise ConnectionError("changelog send failed")
            super().__setitem__(key, value)

    table = Failing()
    states = MeterStates(table, limit=1)
    states.put("M1", {"a": 1}, None)
    states.put("M2", {"a": 2}, None)
    with pytest.raises(ConnectionError):
        states.flush(lambda ev: None)
    assert states.flush(lambda ev: None) == 2 and table == {"M1": {"a": 1}, "M2": {"a": 2}}
    assert states.cache == {}  # beyond the limit: dropped once written


def test_a_directory_entry_is_read_once_and_every_change_is_seen_at_once():
    table = _Table()
    table["M1"] = {"feeder_id": "F1"}
    directory = Directory(table, limit=3)
    assert directory.get("M1") == {"feeder_id": "F1"} and directory.get("M2") is None
    assert directory.get("M1") and directory.get("M2") is None and table.reads == 2  # kept, unknown too
    directory.set("M2", {"feeder_id": "F2"})  # the meter-directory agent's writes go through it
    assert directory.get("M2") == {"feeder_id": "F2"} and table["M2"] == {"feeder_id": "F2"}
    directory.set("M1", {"feeder_id": "F9"})
    assert directory.get("M1") == {"feeder_id": "F9"}
    directory.pop("M1")
    assert directory.get("M1") is None and "M1" not in table and table.reads == 3
    table["M3"] = {"feeder_id": "F3"}  # written by recovery, straight into the store
    directory.forget()  # (a rebalance)
    assert directory.get("M1") is None and directory.get("M2") and directory.get("M3") == {"feeder_id": "F3"}
    assert table.reads == 6
    directory.get("M4")  # a fourth entry: past the limit the dict starts again
    assert list(directory.cache) == ["M4"]


def test_a_failed_directory_write_leaves_the_entry_as_it_was():
    class Failing(_Table):
        def __setitem__(self, key, value):
            raise ConnectionError("changelog send failed")

    table = Failing()
    dict.__setitem__(table, "M1", {"feeder_id": "F1"})
    directory = Directory(table)
    assert directory.get("M1") == {"feeder_id": "F1"}
    with pytest.raises(ConnectionError):
        directory.set("M1", {"feeder_id": "F2"})
    assert directory.get("M1") == {"feeder_id": "F1"}


def test_statuses_go_out_per_feeder_in_order_and_in_bounded_messages():
    batch = StatusBatch()
    batch.add("F1", {"meter_id": "A", "ts": 1})
    batch.add("F2", {"meter_id": "B", "ts": 1})
    batch.add("F1", {"meter_id": "A", "ts": 2})
    assert batch.messages() == [
        ("F1", {"type": "statuses", "items": [{"meter_id": "A", "ts": 1}, {"meter_id": "A", "ts": 2}]}),
        ("F2", {"meter_id": "B", "ts": 1})]  # a lone status goes as it is
    for i in range(STATUSES_PER_MESSAGE + 1):
        batch.add("F3", {"i": i})
    f3 = [v for fid, v in batch.messages() if fid == "F3"]
    assert [len(v["items"]) if "items" in v else 1 for v in f3] == [STATUSES_PER_MESSAGE, 1]
    assert [x["i"] for v in f3 for x in v.get("items", [v])] == list(range(STATUSES_PER_MESSAGE + 1))


def _stage(letters, retries):
    async def dead_letter(msg, exc, reason):
        letters.append((msg, reason))

    return dl.StageRetries("test", dead_letter=dead_letter, on_retry=lambda *a: retries.append(a[:2]),
                           backoff=lambda: dl.Backoff(deadline_s=0.2, first_delay_s=0.01))


def test_run_retries_an_internal_error_in_place_and_dead_letters_bad_input():
    letters, retries, done = [], [], []
    left = {"b": 2}

    async def work(m):
        if m == "bad":
            raise ContractError("no ts")
        if left.get(m):
            left[m] -= 1
            raise ConnectionError("send failed")
        done.append(m)

    async def main():
        stage = _stage(letters, retries)
        for m in ("a", "bad", "b", "c"):
            await stage.run(m, lambda m=m: work(m))

    asyncio.run(main())
    assert done == ["a", "b", "c"] and letters == [("bad", dl.INVALID)] and retries == [("b", 1), ("b", 2)]


def test_run_until_done_never_gives_up_the_batch_outputs():
    letters, retries, calls = [], [], []

    async def flush():
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("broker gone")

    asyncio.run(_stage(letters, retries).run_until_done("last", flush))
    assert len(calls) == 4 and letters == [] and [r[0] for r in retries] == ["last"] * 3


VALID = [
    {"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "interval_s": 900, "kwh": 0.07, "v_avg": 230, "v_min": 229.5,
     "v_max": 231.0, "quality": "actual"},
    {"meter_id": "M1", "ts": "2026-07-01T00:30:00.5+02:00", "v_avg": None},
    {"meter_id": "M1", "ts": "2026-07-01T00:45:00Z", "kwh": 0, "quality": "estimated"},
]


@pytest.mark.parametrize("value", [VALID, VALID[0], VALID[1:], [VALID[2]]])
def test_the_fast_path_gives_what_the_schema_path_gives(value, monkeypatch):
    text = json.dumps(value).encode()
    assert contract._fast_items(text) is not None
    fast = decode_readings(b"M1", text)
    monkeypatch.setattr(contract, "_fast_items", lambda payload: None)
    slow = decode_readings(b"M1", text)
    assert fast == slow
    assert [type(r.v_avg) for r in fast] == [type(r.v_avg) for r in slow]  # 230 stays an int


@pytest.mark.parametrize("text, code", [
    (b"[]", "invalid"), (b'{"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "v_avg": 1e400}', "not_finite"),
    (b'{"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "v_avg": NaN}', "not_finite"),
    (b'{"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "extra": [Infinity]}', "not_finite"),
    (b'{"meter_id": "M\\ud800", "ts": "2026-07-01T00:15:00Z"}', "not_json"),
    (b'{"meter_id": "M2", "ts": "2026-07-01T00:15:00Z"}', "key_mismatch"),
    (b'{"meter_id": "M1", "ts": "1999-07-01T00:15:00Z"}', "ts_out_of_range"),
    (b'{"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "v_min": 231, "v_max": 229}', "invalid"),
    (b'{"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "v_avg": 1501}', "invalid"),
])
def test_what_the_fast_path_cannot_prove_valid_is_refused_as_before(text, code):
    with pytest.raises(ContractError) as err:
        decode_readings(b"M1", text)
    assert err.value.code == code


def test_an_unknown_field_takes_the_schema_path_and_is_kept_out_of_the_reading():
    text = b'{"meter_id": "M1", "ts": "2026-07-01T00:15:00Z", "phase": "L1"}'
    assert contract._fast_items(text) is None
    (r,) = decode_readings(b"M1", text)
    assert (r.meter_id, r.ts, r.interval_s, r.quality) == ("M1", 1782864900, 900, "actual")
