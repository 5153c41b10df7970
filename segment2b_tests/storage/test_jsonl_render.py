"""The compiled line renderer: exact integers, verbatim text, the time law's timestamps."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from segment2b.storage import jsonl_render as jr

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _text(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(np.int64)
    return data, offsets


def _iso(micros: int) -> str:
    t = EPOCH + dt.timedelta(microseconds=micros)
    return f"{t.year:04d}-{t:%m-%dT%H:%M:%S.%f}Z"  # (%Y does not pad years below 1000)


def test_integers_print_exactly_at_every_width() -> None:
    unsigned = np.array(
        [0, 9, 10, 99, 100, 12345, 10**19 - 1, 10**19, 2**63, 2**64 - 1], dtype=np.uint64
    )
    signed = np.array(
        [-(2**63), -(10**18), -1, 0, 1, 7, 10**18, 2**62, 2**63 - 1, -42], dtype=np.int64
    )
    program = jr.Program.build([(jr.OP_INT, 0), b" ", (jr.OP_INT, 1), b"\n"])
    done = jr.render(program, unsigned.size, ints=[unsigned, signed])
    expected = "".join(
        f"{u} {s}\n" for u, s in zip(unsigned.tolist(), signed.tolist(), strict=True)
    )
    assert bytes(done.data).decode() == expected
    # Powers of ten and their neighbours across the whole uint64 range.
    edges = sorted({v for k in range(20) for v in (10**k - 1, 10**k, 10**k + 1) if v < 2**64})
    col = np.array(edges, dtype=np.uint64)
    done = jr.render(jr.Program.build([(jr.OP_INT, 0), b"\n"]), col.size, ints=[col])
    assert bytes(done.data).decode().split() == [str(v) for v in edges]


def test_timestamps_match_datetime_including_calendar_edges() -> None:
    program = jr.Program.build([b'"', (jr.OP_TS, 0), b'"\n'])
    edges = [
        jr.TS_MIN_MICROS,
        -1,  # 1969-12-31T23:59:59.999999Z
        0,
        951_782_400_000_000,  # 2000-02-29
        951_868_800_000_000 - 1,  # last µs of 2000-02-29
        4_107_542_400_000_000,  # 2100-03-01 (2100 is not a leap year)
        jr.TS_MAX_MICROS,
    ]
    rng = np.random.default_rng(7)
    sample = rng.integers(jr.TS_MIN_MICROS, jr.TS_MAX_MICROS, size=2_000).tolist()
    lines = []
    for micros in edges + sample:
        done = jr.render(program, 1, ts=(micros, 0))
        lines.append(bytes(done.data).decode())
    assert lines == [f'"{_iso(m)}"\n' for m in edges + sample]
    # A step walks the law row by row (the time law: created + (a * row + b) µs).
    done = jr.render(program, 4, ts=(86_399_999_998, 3))
    assert bytes(done.data).decode().split() == [
        f'"{_iso(86_399_999_998 + 3 * r)}"' for r in range(4)
    ]


def test_text_is_copied_verbatim_and_lines_are_located() -> None:
    program = jr.Program.build([b"{", b'"a": ', (jr.OP_TEXT, 0), b', "b": "', (jr.OP_TEXT, 1)])
    program = jr.Program.build([*_pieces(program), b'"}\n'])
    a = _text([b"1.5", b"", b'"x\\u00e9"'])
    b = _text([b"p", b"qq", b"rrr"])
    done = jr.render(program, 3, texts=[a, b])
    lines = ['{"a": 1.5, "b": "p"}\n', '{"a": , "b": "qq"}\n', '{"a": "x\\u00e9", "b": "rrr"}\n']
    assert bytes(done.data).decode() == "".join(lines)
    assert [done.line(i) for i in range(3)] == lines
    assert done.lengths().tolist() == [len(x) for x in lines]
    assert bytes(done.span(1, 3)).decode() == lines[1] + lines[2]
    assert bytes(done.span(0, 0)) == b""
    # Offsets of a slice need not start at zero (Arrow slices keep the parent's offsets).
    data, offsets = _text([b"zz", b"p", b"qq", b"rrr"])
    done2 = jr.render(program, 3, texts=[a, (data, offsets[1:])])
    assert bytes(done2.data) == bytes(done.data)


def _pieces(program: jr.Program) -> list[tuple[int, int] | bytes]:
    out: list[tuple[int, int] | bytes] = []
    lits = program.literals.tobytes()
    ends = [0, *program.lit_ends.tolist()]
    for op, arg in zip(program.ops.tolist(), program.args.tolist(), strict=True):
        out.append(lits[ends[arg] : ends[arg + 1]] if op == jr.OP_LIT else (op, arg))
    return out


def test_adjacent_literals_merge_into_one_piece() -> None:
    program = jr.Program.build([b"{", b'"k": ', (jr.OP_INT, 0), b"}", b"\n"])
    assert program.ops.tolist() == [jr.OP_LIT, jr.OP_INT, jr.OP_LIT]
    assert program.literals.tobytes() == b'{"k": }\n'


def test_a_large_enough_buffer_is_reused() -> None:
    program = jr.Program.build([(jr.OP_INT, 0), b"\n"])
    first = jr.render(program, 3, ints=[np.arange(3)])
    again = jr.render(program, 2, ints=[np.array([5, 6])], out=first.buffer)
    assert again.buffer is first.buffer
    assert bytes(again.data) == b"5\n6\n"
    small = np.empty(1, dtype=np.uint8)
    grown = jr.render(program, 2, ints=[np.array([5, 6])], out=small)
    assert grown.buffer is not small
    assert bytes(grown.data) == b"5\n6\n"


def test_empty_render() -> None:
    program = jr.Program.build([b"{", (jr.OP_INT, 0), (jr.OP_TEXT, 0), (jr.OP_TS, 0), b"}\n"])
    done = jr.render(program, 0, ints=[np.zeros(0, dtype=np.uint64)], texts=[_text([])], ts=(0, 1))
    assert done.rows == 0
    assert done.data.size == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ints": [np.array([1.5, 2.0])]}, "integer column 0"),
        ({"ints": [np.array([1, 2, 3])]}, "integer column 0"),
        ({"ints": []}, "fewer columns"),
        ({"ints": [np.array([1, 2])], "ts": (jr.TS_MAX_MICROS, 1)}, "years 0001-9999"),
        ({"ints": [np.array([1, 2])], "ts": (jr.TS_MIN_MICROS, -1)}, "years 0001-9999"),
    ],
)
def test_bad_columns_are_refused(kwargs: dict[str, object], message: str) -> None:
    program = jr.Program.build([(jr.OP_INT, 0), (jr.OP_TS, 0), b"\n"])
    with pytest.raises(ValueError, match=message):
        jr.render(program, 2, **kwargs)  # type: ignore[arg-type]


def test_text_offsets_must_cover_every_row() -> None:
    program = jr.Program.build([(jr.OP_TEXT, 0), b"\n"])
    data, offsets = _text([b"a", b"b"])
    with pytest.raises(ValueError, match="text column 0"):
        jr.render(program, 3, texts=[(data, offsets)])


def test_warm_up_renders_one_line() -> None:
    assert jr.warm_up() == 1
