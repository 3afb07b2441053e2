"""A readings partition's watermark: never past what may still come, and not stuck behind dark meters."""

from streams.watermarks import PartitionClock

H = 3600


def test_waits_for_every_live_meter_then_follows_the_burst_at_once():
    c = PartitionClock(lateness_s=900)
    c.batch("A", 0 * H + 900, 1 * H)
    c.batch("B", 0 * H + 900, 1 * H)
    c.batch("A", 1 * H + 900, 2 * H)            # A is a batch ahead of B
    assert c.watermark() == 1 * H               # B has only got to 1 h
    c.batch("B", 1 * H + 900, 2 * H)
    assert c.watermark() == 2 * H               # both done with the burst: decide up to 2 h now


def test_a_lagging_meter_cannot_hold_back_more_than_the_lateness():
    c = PartitionClock(lateness_s=900, stale_s=10 * H)
    c.batch("slow", 900, 1 * H)
    for h in range(1, 6):
        c.batch("fast", h * H + 900, (h + 1) * H)
    assert c.watermark() == 5 * H + 900 - 900   # newest batch start minus the lateness


def test_a_dark_meter_stops_counting_after_stale_s():
    c = PartitionClock(lateness_s=900, stale_s=2 * H)
    c.batch("dark", 900, 1 * H)
    c.batch("live", 900, 1 * H)
    c.batch("live", 1 * H + 900, 2 * H)
    assert c.watermark() == 1 * H
    c.batch("live", 2 * H + 900, 3 * H + 900)   # dark 2 h 45 min behind: under three batch spans (3 x 45 min),
    assert c.watermark() == 2 * H                # so only the lateness bound (newest batch start - 15 min) moves
    c.batch("live", 3 * H + 1800, 4 * H + 900)  # now more than stale_s and three batch spans behind
    assert c.watermark() == 4 * H + 900


def test_a_meter_waiting_for_its_next_long_batch_is_not_taken_for_dark():
    """4-hour batches: a meter whose newest reading is 4 h behind is between batches, not silent. Taking it
    for dark would move the watermark past readings still to come, and its meters would look like an
    outage."""
    c = PartitionClock(lateness_s=900, stale_s=2 * H)
    c.batch("a", 900, 4 * H)
    c.batch("b", 900, 4 * H)
    c.batch("a", 4 * H + 900, 8 * H)          # a's next batch; b's is still on its way
    assert c.watermark() == 4 * H
    c.batch("b", 4 * H + 900, 8 * H)
    assert c.watermark() == 8 * H


def test_parked_readings_hold_the_watermark_until_decided():
    c = PartitionClock()
    c.batch("A", 900, 4 * H)
    c.park("B", 1800)
    assert c.watermark() == 1799
    c.unpark("B")
    assert c.watermark() == 4 * H


def test_a_quiet_partition_moves_up_to_the_worker_newest():
    c = PartitionClock()
    assert c.watermark() is None
    c.quiet(worker_newest=5 * H)
    assert c.watermark() == 5 * H
    c.batch("A", 5 * H + 900, 6 * H)             # data again: back to the normal rules
    assert c.watermark() == 6 * H


def test_quiet_gives_up_on_parked_meters():
    c = PartitionClock()
    c.batch("A", 900, 2 * H)
    c.park("B", 900)
    c.quiet(worker_newest=2 * H, drop_parked=True)
    assert c.watermark() == 2 * H
