"""A readings partition's watermark: never past what may still come, and not stuck behind dark meters."""

from detectors.watermarks import PartitionClock

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


def test_parked_readings_hold_the_watermark_back_by_at_most_the_lateness():
    c = PartitionClock(lateness_s=900)
    c.batch("A", 900, 1 * H)
    c.park("B", 3000)
    assert c.watermark() == 2999                 # held below B's reading while it is within the lateness
    c.batch("A", 1 * H + 900, 4 * H)
    assert c.watermark() == 4 * H - 900          # no further: a meter not in the directory never freezes it
    c.unpark("B")
    assert c.watermark() == 4 * H


def test_a_meter_new_to_the_directory_holds_it_fully_for_a_grace_of_wall_time():
    """A burst of history published right behind the customer records: the readings may come before the
    directory. For ``hold_grace_s`` of wall time the held meter holds the watermark below its readings."""
    now = [100.0]
    c = PartitionClock(lateness_s=900, hold_grace_s=30, wall=lambda: now[0])
    c.park("B", 900)
    c.batch("A", 900, 8 * H)
    assert c.watermark() == 899
    now[0] += 31
    assert c.watermark() == 8 * H - 900


def test_held_readings_are_counted_and_expire_by_event_time():
    c = PartitionClock(lateness_s=900)
    c.batch("A", 900, 1 * H)
    c.park("B", 1800, count=4)
    c.park("B", 2700)
    c.park("C", 2 * H)
    assert c.held == 6 and c.expired(max_age_s=2 * H) == []
    c.batch("A", 1 * H + 900, 4 * H)
    assert c.expired(max_age_s=2 * H) == ["B"]   # B's oldest is more than 2 h behind the watermark (3 h 45)
    c.unpark("B")
    assert c.held == 1


def test_a_reading_far_ahead_of_the_rest_of_the_partition_is_ahead():
    c = PartitionClock(lateness_s=900)
    for m in ("A", "B", "C"):
        c.batch(m, 1 * H, 1 * H)
    assert c.ahead("W", 5 * 365 * 24 * H, 5 * 365 * 24 * H, 1, 900) == 1 * H   # a wrong clock, years ahead
    assert c.ahead("A", 1 * H + 900, 1 * H + 900, 1, 900) is None              # the next reading
    assert c.ahead("A", 1 * H + 1800, 1 * H + 1800, 1, 900) is None            # one reading missed: still fine
    assert c.ahead("A", 1 * H + 2700, 1 * H + 2700, 1, 900) == 1 * H           # its start leaves the others behind
    # an array of 24 hourly readings, published in time order with the others: not ahead
    assert c.ahead("A", 2 * H, 25 * H, 24, 3600) is None
    # an array whose last reading is years ahead of where its readings could reach
    assert c.ahead("A", 1 * H + 900, 9 * 365 * 24 * H, 2, 900) == 1 * H
    c.batch("A", 1 * H + 900, 1 * H + 900)
    assert c.ahead("B", 1 * H + 2700, 1 * H + 2700, 1, 900) is None            # measured from the newest one


def test_a_refused_batch_does_not_move_the_watermark_and_a_jump_two_meters_agree_on_is_real():
    c = PartitionClock(lateness_s=900)
    for m in ("A", "B", "C"):
        c.batch(m, 1 * H, 1 * H)
    wm = c.watermark()
    assert c.ahead("W", 40000 * H, 40000 * H, 1, 900) is not None
    c.claim("W", 40000 * H)
    assert c.watermark() == wm                                 # refused: nothing moved
    assert c.ahead("W", 40000 * H + 900, 40000 * H + 900, 1, 900) is not None   # a lone wrong clock stays refused
    # a replay resuming after a two-day gap: the first meter is refused, the second confirms the jump
    jump = 1 * H + 48 * H
    assert c.ahead("A", jump, jump, 1, 900) is not None
    c.claim("A", jump)
    assert c.ahead("B", jump, jump, 1, 900) is None
    c.batch("B", jump, jump)
    assert c.ahead("A", jump + 900, jump + 900, 1, 900) is None
    assert c.ahead("W", 40000 * H + 1800, 40000 * H + 1800, 1, 900) is not None


def test_a_partition_that_accepted_nothing_has_no_reference_then_its_own_series_bounds_it():
    c = PartitionClock()
    assert c.ahead("A", 10 * H, 10 * H, 1, 900) is None        # only the wall clock bounds the first batch
    c.batch("A", 10 * H, 10 * H)
    assert c.ahead("A", 10 * H + 900, 10 * H + 900, 1, 900) is None
    assert c.ahead("A", 99 * H, 99 * H, 1, 900) == 10 * H      # a meter's own clock jumping ahead


def test_meters_back_from_an_outage_that_darkened_the_partition_are_confirmed_by_restore_events():
    c = PartitionClock()
    for m in ("A", "B"):
        c.batch(m, 3 * H, 3 * H)
    back = 3 * H + 2 * H
    c.claim("B", back - 300)                                    # B's power_restore event
    assert c.ahead("A", back, back + 2700, 4, 900) is None


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


def test_a_quiet_partition_moves_only_to_what_was_newest_a_while_ago():
    """A burst published partition after partition: a partition whose readings are not there yet looks
    quiet (no batch, nothing unread). Moved to the newest reading of the others it would overtake its own
    readings, and its meters would look silent (a spurious outage, seen after a worker restart)."""
    from detectors.watermarks import SettledNewest

    now = [100.0]
    s = SettledNewest(20, wall=lambda: now[0])
    assert s.settled() is None                  # a worker just started knows nothing settled
    s.observe(None)
    s.observe(9 * H)                            # the other partitions got to 09:00 in one burst
    now[0] += 5
    assert s.settled() is None                  # not 20 s ago: the late partition is not overtaken
    s.observe(10 * H)
    now[0] += 15
    assert s.settled() == 9 * H                 # 20 s after 09:00 was seen
    now[0] += 5
    assert s.settled() == 10 * H
    s.observe(8 * H)                            # never backwards
    now[0] += 60
    assert s.settled() == 10 * H
    s.clear()
    assert s.settled() is None


def test_a_restarted_clock_judges_batches_as_ahead_as_the_one_before_the_crash():
    """Readings after an outage the restore events claimed: accepted by the worker that read the events; a
    worker restarted after those events were committed re-reads only the readings from before the gap, and
    without what the old clock saved it refused the readings after it (a spurious outage)."""
    old = PartitionClock(lateness_s=900)
    for m in ("A", "B"):
        old.batch(m, 4 * H + 900, 5 * H)
    old.claim("A", 5 * H + 2700)                # restore events at 05:45 (the power was off 05:00-05:45)
    old.claim("B", 5 * H + 2700)
    saved = old.saved()
    assert old.saved() == saved                 # not written yet (a failed write): still to write
    old.mark_saved(saved)
    assert old.saved() is None                  # written, unchanged since: nothing to write
    assert old.ahead("A", 6 * H, 6 * H, 1, 900) is None

    fresh = PartitionClock(lateness_s=900)
    fresh.batch("B", 4 * H + 900, 5 * H)        # re-read from the committed offset
    assert fresh.ahead("A", 6 * H, 6 * H, 1, 900) == 5 * H    # the claims are gone: refused

    restarted = PartitionClock(lateness_s=900)
    restarted.restore(saved)
    restarted.batch("B", 4 * H + 900, 5 * H)
    assert restarted.ahead("A", 6 * H, 6 * H, 1, 900) is None
    assert restarted.ahead("A", 9 * H, 9 * H, 1, 900) == 5 * H          # a lone jump is still refused
    assert restarted.saved() is None            # nothing new to write after a restore
