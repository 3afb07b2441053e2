"""A whole topic in memory: the latest JSON value per key, read from the beginning and kept current.

Small keyed topics (operator silences, the alerts a console shows) are read by every process in full, so
a decision never depends on which partitions a worker happens to own. Two readers:

* :class:`TopicView` — asyncio (aiokafka), for workers and servers: no consumer group, every partition
  assigned, from the beginning, then following new records. ``wait_ready`` returns once everything
  that was on the topic when the view started has been read, so a worker can wait until every silence
  is known before it decides whether to send a message.
* :func:`read_all` — blocking (kafka-python), for command-line tools: one snapshot, then done.

Both take the contract name of the topic (``gridwatch.config.SILENCES``, ``ALERTS`` …) and deploy it
through ``Settings.topic`` (``GRIDWATCH_TOPIC_PREFIX``). Keys are UTF-8 strings, values UTF-8 JSON; a null
value (a tombstone) deletes the key; a record without a key or with a value that is not JSON is skipped
with a warning (it cannot be kept per key, and one bad record must not stop the view).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import Any, Callable, Iterator

import kafka
import kafka.errors
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gridwatch.config import Settings

__all__ = ["TopicView", "TopicViewError", "read_all", "decode_record"]

log = logging.getLogger(__name__)

_SKIP = object()


class TopicViewError(RuntimeError):
    """The topic does not exist, or the broker cannot be reached; the message says which."""


def _decode_keyless(topic: str, value: bytes | None) -> tuple[None, Any] | None:
    """(None, the JSON value) of a record without a key; None for a tombstone or a value that is not JSON."""
    if value is None:
        return None
    try:
        return None, json.loads(value)
    except ValueError:
        log.warning("%s: a record without a key that is not JSON is skipped", topic)
        return None


def decode_record(topic: str, key: bytes | None, value: bytes | None) -> tuple[str, Any] | None:
    """``(key, value)`` of a record (value None for a tombstone), or None when it cannot be kept."""
    if key is None:
        log.warning("%s: a record without a key is skipped", topic)
        return None
    try:
        text_key = key.decode("utf-8")
        return text_key, (None if value is None else json.loads(value))
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning("%s: record %r is not UTF-8 JSON and is skipped (%s)", topic, key[:80], exc)
        return None


class TopicView:
    """The latest value per key of one topic, in memory, following new records.

    ``on_change(key, value)`` (optional, a function or a coroutine function) is called for every record
    applied, in offset order per partition, with ``value`` None when the key was deleted. An exception it
    raises is logged and does not stop the view.

    Usage::

        view = TopicView(Settings(), SILENCES)
        await view.start()
        await view.wait_ready(30)
        view.get("sil-…"), list(view.values())
        await view.stop()

    or ``async with TopicView(...) as view:`` (start and stop; waiting for ready is still explicit).

    A reader that keeps the records itself (the console's model) passes
    ``on_record(key, value, kafka_ts, position=(partition, offset))`` instead (a coroutine function is
    awaited): every decoded record goes there with its Kafka timestamp (epoch seconds, or None), and the view
    keeps nothing. With it, ``keyless`` also hands over the JSON records without a key (key None), which a
    view per key cannot keep; ``tail`` reads at most the last ``tail`` records of each partition and
    ``start_at`` (partition -> offset, e.g. where a store's projection ended; partitions not named from their
    beginning) from those offsets; with both, the later of the two (``skipped`` counts the records before
    where reading began), so a long history does not lengthen the start.
    """

    def __init__(self, settings: Settings | None, topic: str, *,
                 on_change: Callable[[str, Any], Any] | None = None, poll_timeout_ms: int = 500,
                 client_id: str = "gridwatch-topicview",
                 on_record: Callable[[str | None, Any, float | None], Any] | None = None,
                 keyless: bool = False, tail: int | None = None, start_at: dict[int, int] | None = None):
        if (keyless or tail is not None or start_at) and on_record is None:
            raise ValueError("keyless, tail and start_at need on_record: a view per key keeps the whole topic")
        self.settings = settings or Settings()
        self.topic = self.settings.topic(topic)
        self.on_change = on_change
        self.on_record, self.keyless, self.tail, self.start_at = on_record, keyless, tail, start_at or {}
        self.skipped = 0  # records before where reading began, not read
        self._poll_timeout_ms = poll_timeout_ms
        self._client_id = client_id
        self._data: dict[str, Any] = {}
        self._consumer = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._targets: dict = {}  # TopicPartition -> end offset when the view started

    # ----------------------------------------------------------------------------------- reading

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def values(self) -> list[Any]:
        return list(self._data.values())

    def items(self) -> list[tuple[str, Any]]:
        return list(self._data.items())

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole view (key -> latest value)."""
        return dict(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    @property
    def ready(self) -> bool:
        """Everything that was on the topic when the view started has been read."""
        return self._ready.is_set()

    # --------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect, assign every partition of the topic from the beginning and start following it.

        TopicViewError when the broker cannot be reached or the topic does not exist.
        """
        if self._consumer is not None:
            raise RuntimeError("TopicView already started")
        try:
            partitions = await self._partitions()
        except KafkaError as exc:
            raise TopicViewError(f"cannot reach Kafka at {self.settings.bootstrap_servers} "
                                 f"({type(exc).__name__}: {exc})") from None
        if not partitions:
            raise TopicViewError(f"topic '{self.topic}' does not exist on {self.settings.bootstrap_servers}: "
                                 "run `gridwatch topics create`")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_list, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id=self._client_id)
        try:
            await consumer.start()
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._targets = await consumer.end_offsets(tps)
            if self.tail is not None or self.start_at:
                begins = await consumer.beginning_offsets(tps)
                for tp in tps:
                    begin, end = begins.get(tp, 0), self._targets[tp]
                    start = begin
                    if self.tail is not None:
                        start = max(start, end - self.tail)
                    if tp.partition in self.start_at:
                        start = max(start, min(end, self.start_at[tp.partition]))
                    if start > begin:
                        consumer.seek(tp, start)
                        self.skipped += start - begin
        except KafkaError as exc:
            await consumer.stop()
            raise TopicViewError(f"cannot read '{self.topic}' from Kafka at {self.settings.bootstrap_servers} "
                                 f"({type(exc).__name__}: {exc})") from None
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        await self._check_ready()
        self._task = asyncio.create_task(self._run(), name=f"topicview:{self.topic}")

    async def _partitions(self) -> list[int]:
        """The topic's partition ids from a metadata request ([] when the topic does not exist).

        Asked through the admin client: the consumer's ``partitions_for_topic`` only reads its own metadata
        cache, which holds a topic only once the consumer is assigned or subscribed to it, and its
        ``topics()`` returns names only.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap_list,
                                    client_id=f"{self._client_id}-meta")
        try:
            await admin.start()
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        for topic in described:
            if (topic.get("topic") or topic.get("name")) == self.topic and topic.get("error_code", 0) == 0:
                return sorted(p["partition"] for p in topic.get("partitions") or [])
        return []

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once every record that existed at ``start`` has been applied.

        TimeoutError after ``timeout`` seconds; the reader's own error if it stopped on one.
        """
        if self._task is None:
            raise RuntimeError("TopicView.wait_ready before start()")
        if self._ready.is_set():
            return
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            done, _ = await asyncio.wait({waiter, self._task}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._ready.is_set():
            return
        if self._task.done():
            exc = None if self._task.cancelled() else self._task.exception()
            raise TopicViewError(f"reading '{self.topic}' stopped before it was complete") from exc
        behind = {tp.partition: off for tp, off in self._targets.items()}
        raise TimeoutError(f"'{self.topic}' not read to its end offsets {behind} within {timeout} s")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # already logged by _run
                pass
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> "TopicView":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    # ---------------------------------------------------------------------------------- internals

    async def _run(self) -> None:
        consumer = self._consumer
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=self._poll_timeout_ms)
                for records in batches.values():
                    for record in records:
                        await self._record(record)
                if not self._ready.is_set():
                    await self._check_ready()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading '%s' stopped", self.topic)
            raise

    async def _record(self, record) -> None:
        """One consumer record: kept per key, or handed to ``on_record`` with its Kafka timestamp."""
        if self.on_record is None:
            await self._apply(record.key, record.value)
            return
        if record.key is None and self.keyless:
            decoded = _decode_keyless(self.topic, record.value)
        else:
            decoded = decode_record(self.topic, record.key, record.value)
        if decoded is None:
            return
        ts = record.timestamp
        try:
            result = self.on_record(*decoded, ts / 1000.0 if isinstance(ts, (int, float)) and ts >= 0 else None,
                                    position=(record.partition, record.offset))
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s: applying a record failed", self.topic)

    async def _check_ready(self) -> None:
        """Ready when each partition's position (the next offset to read) reached its end offset at start.

        The position, not the last record's offset + 1: on a compacted topic the last offsets may be gone.
        """
        for tp, end in self._targets.items():
            if end > 0 and await self._consumer.position(tp) < end:
                return
        self._ready.set()

    async def _apply(self, key: bytes | None, value: bytes | None) -> None:
        decoded = decode_record(self.topic, key, value)
        if decoded is None:
            return
        k, v = decoded
        if v is None:
            if self._data.pop(k, _SKIP) is _SKIP:
                return  # deleting what was never there changes nothing
        else:
            self._data[k] = v
        if self.on_change is not None:
            try:
                result = self.on_change(k, v)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s: on_change(%r) failed", self.topic, k)


def read_all(settings: Settings | None, topic: str, timeout: float = 30.0) -> dict[str, Any]:
    """Blocking: key -> latest value of every record on ``topic`` now (kafka-python, no consumer group).

    Assigns every partition, seeks to the beginning and reads up to the end offsets taken at the start.
    TopicViewError when the broker cannot be reached or the topic does not exist; TimeoutError when the
    end is not reached within ``timeout`` seconds.
    """
    settings = settings or Settings()
    name = settings.topic(topic)
    deadline = time.monotonic() + timeout
    try:
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=settings.bootstrap_list, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id="gridwatch-read-all",
            bootstrap_timeout_ms=int(max(1.0, min(timeout, 10.0)) * 1000))
    except kafka.errors.KafkaError as exc:
        raise TopicViewError(f"cannot reach Kafka at {settings.bootstrap_servers} ({type(exc).__name__}): "
                             "start one with `gridwatch kafka start`") from None
    data: dict[str, Any] = {}
    try:
        # kafka-python 3.x: fetches metadata when the topic is not cached; an empty set when it does not exist
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            raise TopicViewError(f"topic '{name}' does not exist on {settings.bootstrap_servers}: "
                                 "run `gridwatch topics create`")
        tps = [kafka.TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        def remaining_ms() -> int:
            return max(1, int((deadline - time.monotonic()) * 1000))

        ends = consumer.end_offsets(tps, timeout_ms=remaining_ms())
        pending = {tp for tp in tps if ends.get(tp, 0) > 0}
        while pending:
            pending = {tp for tp in pending if (consumer.position(tp, timeout_ms=remaining_ms()) or 0) < ends[tp]}
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"'{name}' not read to its end within {timeout} s "
                                   f"(partitions {sorted(tp.partition for tp in pending)} behind)")
            for records in consumer.poll(timeout_ms=min(500, remaining_ms())).values():
                for record in records:
                    decoded = decode_record(name, record.key, record.value)
                    if decoded is None:
                        continue
                    key, value = decoded
                    if value is None:
                        data.pop(key, None)
                    else:
                        data[key] = value
    except kafka.errors.KafkaError as exc:
        raise TopicViewError(f"cannot read '{name}' from Kafka at {settings.bootstrap_servers} "
                             f"({type(exc).__name__}: {exc})") from None
    finally:
        consumer.close()
    return data
