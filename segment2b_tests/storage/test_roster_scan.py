"""The compiled roster-line scanner: exact values for canonical lines, None for anything else."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from segment2b.storage import roster_scan

TAIL = '"utc_day": "2026-01-02", "utc_timestamp": "2026-01-02T03:04:05.123456Z"'


def _line(merchant: str, prefix: str = "{") -> str:
    return f'{prefix}"merchant_id": {merchant}, {TAIL}}}\n'


def _values(found: roster_scan.RosterScan, data: bytes) -> list[tuple[bytes, int, str, str]]:
    spans = found.prefix_spans.tolist()
    days = bytes(found.days).decode()
    stamps = bytes(found.timestamps).decode()
    return [
        (
            data[spans[k][0] : spans[k][0] + spans[k][1]],
            int(m),
            days[10 * i : 10 * i + 10],
            stamps[27 * i : 27 * i + 27],
        )
        for i, (m, k) in enumerate(zip(found.merchant_ids, found.prefix_ids, strict=True))
    ]


def test_canonical_rows_are_read_exactly() -> None:
    rows = [
        {"merchant_id": 1, "utc_day": "2026-01-02", "utc_timestamp": "2026-01-02T03:04:05.1Z"},
        {
            "channel": "card_present",
            "is_virtual": False,
            "mcc": 5411,
            "merchant_id": 2**64 - 1,
            "utc_day": "9999-12-31",
            "utc_timestamp": "9999-12-31T23:59:59.999999Z",
        },
        {"is_virtual": True, "merchant_id": 10**19, "utc_day": "0001-01-01"},
    ]
    rows[0]["utc_timestamp"] = "2026-01-02T03:04:05.100000Z"
    rows[2]["utc_timestamp"] = "0001-01-01T00:00:00.000000Z"
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    found = roster_scan.scan(data)
    assert found is not None and found.rows == 3
    assert found.merchant_ids.dtype == np.uint64
    assert _values(found, data) == [
        (b"{", 1, "2026-01-02", "2026-01-02T03:04:05.100000Z"),
        (
            b'{"channel": "card_present", "is_virtual": false, "mcc": 5411, ',
            2**64 - 1,
            "9999-12-31",
            "9999-12-31T23:59:59.999999Z",
        ),
        (b'{"is_virtual": true, ', 10**19, "0001-01-01", "0001-01-01T00:00:00.000000Z"),
    ]


def test_prefixes_are_numbered_in_order_of_first_appearance_and_shared() -> None:
    # 300 distinct prefixes (several table growths), each used more than once, some of equal
    # length and differing in one byte.
    rng = random.Random(7)
    prefixes = [f'{{"mcc": {1000 + k}, ' for k in range(300)]
    picks = [rng.randrange(300) for _ in range(3_000)]
    data = "".join(_line(str(i + 1), prefixes[k]) for i, k in enumerate(picks)).encode()
    found = roster_scan.scan(data)
    assert found is not None
    first_seen = list(dict.fromkeys(picks))
    spans = found.prefix_spans.tolist()
    assert [data[s : s + n].decode() for s, n in spans] == [prefixes[k] for k in first_seen]
    ids = found.prefix_ids.tolist()
    assert [first_seen[k] for k in ids] == picks
    assert found.merchant_ids.tolist() == list(range(1, 3_001))


def test_random_canonical_rosters_round_trip() -> None:
    rng = random.Random(11)
    rows = []
    for _ in range(2_000):
        row: dict[str, object] = {
            "merchant_id": rng.choice([1, 2**64 - 1, rng.randrange(1, 2**64)]),
            "utc_day": "2026-03-04",
            "utc_timestamp": f"2026-03-04T00:00:00.{rng.randrange(10**6):06d}Z",
        }
        for key, value in (
            ("channel", rng.choice(["card_present", "card_not_present"])),
            ("is_virtual", rng.choice([True, False])),
            ("mcc", rng.randrange(1000, 10_000)),
        ):
            if rng.random() < 0.5:
                row[key] = value
        rows.append(row)
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    found = roster_scan.scan(data)
    assert found is not None
    for (prefix, mid, day, ts), row in zip(_values(found, data), rows, strict=True):
        head = json.loads(prefix.decode() + '"merchant_id": 1}')
        assert {**head, "merchant_id": mid, "utc_day": day, "utc_timestamp": ts} == row


@pytest.mark.parametrize(
    "line",
    [
        _line("0"),
        _line("07"),
        _line("+7"),
        _line("-7"),
        _line(""),
        _line(str(2**64)),
        _line("99999999999999999999"),
        _line("1" * 21),
        _line("7.0"),
        _line("7 "),
        _line(" 7"),
        _line("7").replace("2026-01-02T", "2026-01-0\u0662T"),  # an Arabic-Indic digit
        _line("7").replace("2026-01-02", "2026/01/02", 1),
        _line("7").replace("}\n", "}\r\n"),
        _line("7").replace("}\n", "} \n"),
        _line("7").replace('"merchant_id"', '"merchant"'),
        _line("7").replace('"utc_day"', '"utc_dax"'),
        _line("7")[:-1],  # no newline at the end
        "\n" + _line("7"),
        _line("7") + "\n",
        _line("7") + _line("8").replace('"merchant_id": 8', '"x": 8'),
    ],
)
def test_anything_not_canonical_is_declined(line: str) -> None:
    good = _line("5", '{"mcc": 5411, ')
    assert roster_scan.scan((good + line + good).encode()) is None
    assert roster_scan.scan((good + line).encode()) is None


def test_a_line_without_the_key_does_not_borrow_the_next_lines() -> None:
    data = ('{"x": 1, ' + TAIL + "}\n" + _line("8")).encode()
    assert roster_scan.scan(data) is None


def test_a_wrong_line_count_is_declined_not_read_past() -> None:
    data = (_line("5") + _line("6")).encode()
    assert roster_scan.scan(data, lines=2) is not None
    assert roster_scan.scan(data, lines=1) is None
    assert roster_scan.scan(data, lines=3) is None


def test_empty_and_warm_up() -> None:
    assert roster_scan.scan(b"") is None
    assert roster_scan.warm_up() == 1


@pytest.mark.parametrize(
    ("data", "want"),
    [(b"", 0), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"\n\n", 2), (b"\n", 1), (b"x\n\ny\n", 3)],
)
def test_line_count_known_answers(data: bytes, want: int) -> None:
    assert roster_scan.line_count(data) == want


def test_line_count_equals_bytes_count_on_random_bytes() -> None:
    rng = np.random.default_rng(3)
    for size in (1, 31, 32, 33, 1000, 70_001):
        data = rng.choice(np.frombuffer(b"ab\n{}", dtype=np.uint8), size).tobytes()
        want = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        assert roster_scan.line_count(data) == want
