"""Event ids sort by creation time (appends to the audit table's index) and keep SPEC §1's
format: a prefix, an underscore, 32 lower-case hex characters."""

from __future__ import annotations

import re
import time

from personal_connectors.models import new_id, new_time_ordered_ids

ID_FORMAT = re.compile(r"^evt_[0-9a-f]{32}$")


def test_time_ordered_ids_have_the_format_of_every_other_id() -> None:
    assert re.fullmatch(r"conn_[0-9a-f]{32}", new_id("conn"))
    batch = new_time_ordered_ids("evt", 50)
    assert len(batch) == 50 and all(ID_FORMAT.match(each) for each in batch)


def test_a_batch_is_distinct_and_in_order() -> None:
    batch = new_time_ordered_ids("evt", 1000)
    assert len(set(batch)) == 1000
    assert batch == sorted(batch)


def test_later_ids_sort_after_earlier_ones() -> None:
    earlier = new_time_ordered_ids("evt", 20)
    stamp = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == stamp:  # until the clock is in the next millisecond
        pass
    later = new_time_ordered_ids("evt", 20)
    assert max(earlier) < min(later)
    # The first twelve hex digits are the creation time in Unix milliseconds.
    stamp = int(later[0][4:16], 16)
    assert abs(stamp - time.time() * 1000) < 5_000
