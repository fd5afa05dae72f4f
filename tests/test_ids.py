"""Decision ids: 26 characters of Crockford base32, ordered by time then count."""

from __future__ import annotations

import random

from gateway.ids import new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_an_id_spells_its_millisecond_in_the_first_ten_characters() -> None:
    at_ms = 1_795_000_000_123
    ulid = new_id(at_ms)
    assert len(ulid) == 26 and set(ulid) <= set(CROCKFORD)
    assert decode(ulid) >> 80 == at_ms
    assert decode(ulid[:10]) == at_ms


def test_ids_sort_in_the_order_they_were_made() -> None:
    stamps = sorted(random.Random(7).randrange(1, 2**48) for _ in range(200))
    made = [new_id(at) for at in stamps for _ in range(3)]  # three in each millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert [decode(u) >> 80 for u in made] == [at for at in stamps for _ in range(3)]
