"""Compiled JSONL line renderer: rows of integer, text and time-law columns into file bytes.

One line is a fixed sequence of *pieces*: literal bytes (keys, separators, constant values),
an integer column printed in exact decimal, a text column copied verbatim (already JSON text,
or quote-free text between literal quotes), or the time law's ``ts_utc`` printed from its
microsecond. :func:`render` writes ``rows`` lines of such a program into one ``uint8`` buffer
and returns where each line ends.

The kernel is compiled by numba (``nogil``: S5 renders several files on two threads; ``cache``:
compiled once per machine, not per process). It replaces a polars ``concat_str``: 32k site-event
lines take 7 ms here against 15-17 ms on one core, and S5 writes ~1 GB of evidence per seed
that S7 renders again to prove it.

Compatibility guarantee
-----------------------
The bytes are those of the pieces in order: integers without sign or leading zeros (a ``-``
for negative signed values), text unchanged, timestamps ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC,
proleptic Gregorian, years 0001-9999). The plan compiler (``rng_logs.jsonl_plan``) owns the
JSON law; this module owns only the byte assembly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = [
    "OP_INT",
    "OP_LIT",
    "OP_TEXT",
    "OP_TS",
    "TS_MAX_MICROS",
    "TS_MIN_MICROS",
    "Program",
    "Rendered",
    "render",
    "warm_up",
]

OP_LIT = 0
"""Piece: literal ``k`` of the program."""
OP_INT = 1
"""Piece: integer column ``k`` (decimal; signed or unsigned per chunk)."""
OP_TEXT = 2
"""Piece: text column ``k`` (bytes copied verbatim)."""
OP_TS = 3
"""Piece: the time law's timestamp (27 bytes, no quotes)."""

_TS_BYTES = 27
_INT_BYTES = 20  # 2**64 - 1 has 20 digits; -2**63 has 19 digits and a sign
_POW10 = np.array([10**k for k in range(_INT_BYTES)], dtype=np.uint64)
_PAIRS = np.frombuffer("".join(f"{k:02d}" for k in range(100)).encode(), dtype=np.uint8).copy()
TS_MIN_MICROS = -62_135_596_800_000_000
"""0001-01-01T00:00:00Z in microseconds since the Unix epoch."""
TS_MAX_MICROS = 253_402_300_799_999_999
"""9999-12-31T23:59:59.999999Z in microseconds since the Unix epoch."""


@dataclass(frozen=True)
class Program:
    """A line layout: ``ops[j]`` / ``args[j]`` is piece ``j``; literal ``k`` is
    ``literals[lit_ends[k - 1] : lit_ends[k]]``."""

    ops: np.ndarray
    args: np.ndarray
    literals: np.ndarray
    lit_ends: np.ndarray
    n_int: int
    n_text: int

    @classmethod
    def build(cls, pieces: Sequence[tuple[int, int] | bytes]) -> Program:
        """From pieces: ``bytes`` literals (adjacent ones are merged) and ``(op, column)``."""
        ops: list[int] = []
        args: list[int] = []
        lits: list[bytes] = []
        for p in pieces:
            if isinstance(p, bytes):
                if ops and ops[-1] == OP_LIT:
                    lits[-1] += p
                    continue
                ops.append(OP_LIT)
                args.append(len(lits))
                lits.append(p)
            else:
                ops.append(p[0])
                args.append(p[1])
        ints = [a for o, a in zip(ops, args, strict=True) if o == OP_INT]
        texts = [a for o, a in zip(ops, args, strict=True) if o == OP_TEXT]
        return cls(
            ops=np.asarray(ops, dtype=np.int8),
            args=np.asarray(args, dtype=np.int64),
            literals=np.frombuffer(b"".join(lits), dtype=np.uint8).copy(),
            lit_ends=np.cumsum([len(x) for x in lits], dtype=np.int64),
            n_int=max(ints, default=-1) + 1,
            n_text=max(texts, default=-1) + 1,
        )

    def line_bound(self, text_max: np.ndarray) -> int:
        """Most bytes one line can take, given each text column's longest value."""
        n_ts = int(np.count_nonzero(self.ops == OP_TS))
        n_int = int(np.count_nonzero(self.ops == OP_INT))
        text = int(text_max[self.args[self.ops == OP_TEXT]].sum()) if text_max.size else 0
        lit = int(self.lit_ends[-1]) if self.lit_ends.size else 0
        return lit + _INT_BYTES * n_int + _TS_BYTES * n_ts + text


@dataclass(frozen=True)
class Rendered:
    """Lines rendered back to back: ``data[ends[i-1]:ends[i]]`` is line ``i``; ``buffer``
    is the whole array ``data`` was written into (hand it back to :func:`render` as ``out``
    to reuse it)."""

    data: np.ndarray
    ends: np.ndarray
    buffer: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.ends.size)

    def span(self, a: int, b: int) -> memoryview:
        """The bytes of lines ``[a, b)``."""
        lo = int(self.ends[a - 1]) if a > 0 else 0
        hi = int(self.ends[b - 1]) if b > 0 else 0
        return memoryview(self.data[lo:hi])

    def line(self, i: int) -> str:
        """Line ``i`` as text (with its newline)."""
        return bytes(self.span(i, i + 1)).decode("ascii", errors="surrogateescape")

    def lengths(self) -> np.ndarray:
        """Bytes per line."""
        return np.diff(self.ends, prepend=np.int64(0))


@intrinsic
def _copy(typingctx, dst, dst_pos, src, src_pos, count):  # type: ignore[no-untyped-def]  # noqa: PLR0917
    """``dst[dst_pos : dst_pos + count] = src[src_pos : src_pos + count]`` as one memcpy.

    numba lowers a slice assignment to an element loop; one ``memcpy`` per piece halved the
    kernel's time (numba's extension API: ``intrinsic`` with ``cgutils``, as in its docs).
    """
    sig = types.void(dst, dst_pos, src, src_pos, count)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        d, dp, s, sp, n = args
        dary = context.make_array(signature.args[0])(context, builder, d)
        sary = context.make_array(signature.args[2])(context, builder, s)
        cgutils.raw_memcpy(
            builder, builder.gep(dary.data, [dp]), builder.gep(sary.data, [sp]), n, 1
        )
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _render(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    ops: np.ndarray,
    args: np.ndarray,
    literals: np.ndarray,
    lit_ends: np.ndarray,
    ints: np.ndarray,
    signed: np.ndarray,
    text_data: np.ndarray,
    text_ends: np.ndarray,
    ts_first: np.int64,
    ts_step: np.int64,
    out: np.ndarray,
    ends: np.ndarray,
) -> int:
    ten = np.uint64(10)
    hundred = np.uint64(100)
    pos = 0
    for i in range(ends.size):
        for j in range(ops.size):
            op = ops[j]
            a = args[j]
            if op == OP_LIT:
                s = lit_ends[a - 1] if a > 0 else 0
                e = lit_ends[a]
                _copy(out, pos, literals, s, e - s)
                pos += e - s
            elif op == OP_INT:
                v = ints[a, i]
                if signed[a] and np.int64(v) < 0:
                    out[pos] = 45  # "-"
                    pos += 1
                    v = np.uint64(0) - v  # two's complement magnitude (exact for -2**63)
                k = 1
                while k < _INT_BYTES and v >= _POW10[k]:
                    k += 1
                t = pos + k
                while v >= hundred:
                    r = v % hundred
                    v //= hundred
                    t -= 2
                    out[t] = _PAIRS[2 * r]
                    out[t + 1] = _PAIRS[2 * r + 1]
                if v >= ten:
                    out[t - 2] = _PAIRS[2 * v]
                    out[t - 1] = _PAIRS[2 * v + 1]
                else:
                    out[t - 1] = np.uint8(np.uint64(48) + v)
                pos += k
            elif op == OP_TEXT:
                row = a * (ends.size + 1) + i
                s = text_ends[row]
                e = text_ends[row + 1]
                _copy(out, pos, text_data, s, e - s)
                pos += e - s
            else:
                pos = _write_ts(out, pos, ts_first + ts_step * i)
        ends[i] = pos
    return pos


@numba.njit(nogil=True, cache=True, inline="always")
def _put(out: np.ndarray, pos: int, value: int, width: int) -> None:
    for t in range(width - 1, -1, -1):
        out[pos + t] = 48 + value % 10
        value //= 10


@numba.njit(nogil=True, cache=True, inline="always")
def _write_ts(out: np.ndarray, pos: int, micros: np.int64) -> int:
    # Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil inverse).
    sec = micros // 1_000_000
    frac = micros - sec * 1_000_000
    days = sec // 86_400
    sod = sec - days * 86_400
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    _put(out, pos, year, 4)
    out[pos + 4] = 45
    _put(out, pos + 5, month, 2)
    out[pos + 7] = 45
    _put(out, pos + 8, day, 2)
    out[pos + 10] = 84  # "T"
    _put(out, pos + 11, sod // 3_600, 2)
    out[pos + 13] = 58
    _put(out, pos + 14, (sod // 60) % 60, 2)
    out[pos + 16] = 58
    _put(out, pos + 17, sod % 60, 2)
    out[pos + 19] = 46
    _put(out, pos + 20, frac, 6)
    out[pos + 26] = 90  # "Z"
    return pos + _TS_BYTES


def render(
    program: Program,
    rows: int,
    *,
    ints: Sequence[np.ndarray] = (),
    texts: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    ts: tuple[int, int] = (0, 0),
    out: np.ndarray | None = None,
) -> Rendered:
    """Render ``rows`` lines.

    Parameters
    ----------
    ints
        Integer column ``k`` (any numpy integer dtype, ``rows`` values).
    texts
        Text column ``k`` as ``(data, offsets)``: value ``i`` is
        ``data[offsets[i] : offsets[i + 1]]`` (Arrow's string layout, ``rows + 1`` offsets).
    ts
        ``(first, step)``: row ``i``'s timestamp is ``first + step * i`` microseconds since the
        Unix epoch; every value must lie in years 0001-9999.
    out
        A ``uint8`` buffer to render into when it is large enough (else a new one is made).
    """
    if len(ints) < program.n_int or len(texts) < program.n_text:
        msg = "render: fewer columns than the program uses"
        raise ValueError(msg)
    int_block = np.empty((max(len(ints), 1), rows), dtype=np.uint64)
    signed = np.zeros(max(len(ints), 1), dtype=np.bool_)
    for k, col in enumerate(ints):
        arr = np.asarray(col)
        if arr.shape != (rows,) or arr.dtype.kind not in "iu":
            msg = f"render: integer column {k} is {arr.dtype} {arr.shape}, not {rows} integers"
            raise ValueError(msg)
        signed[k] = arr.dtype.kind == "i"
        int_block[k] = arr.astype(np.int64, copy=False).view(np.uint64) if signed[k] else arr
    text_ends = np.empty((max(len(texts), 1), rows + 1), dtype=np.int64)
    text_max = np.zeros(max(len(texts), 1), dtype=np.int64)
    datas: list[np.ndarray] = []
    base = 0
    for k, (data, offsets) in enumerate(texts):
        off = np.asarray(offsets, dtype=np.int64)
        if off.shape != (rows + 1,):
            msg = f"render: text column {k} has {off.size} offsets, not {rows + 1}"
            raise ValueError(msg)
        lo, hi = int(off[0]), int(off[-1])
        datas.append(np.asarray(data, dtype=np.uint8)[lo:hi])
        text_ends[k] = off - (lo - base)
        text_max[k] = int(np.diff(off).max()) if rows else 0
        base += hi - lo
    first, step = ts
    if rows and np.any(program.ops == OP_TS):
        last = first + step * (rows - 1)
        if not TS_MIN_MICROS <= min(first, last) <= max(first, last) <= TS_MAX_MICROS:
            msg = "render: timestamp outside years 0001-9999"
            raise ValueError(msg)
    need = rows * program.line_bound(text_max)
    if out is None or out.size < need:
        out = np.empty(need, dtype=np.uint8)
    ends = np.empty(rows, dtype=np.int64)
    text_data = np.concatenate(datas) if datas else np.zeros(0, dtype=np.uint8)
    size = _render(
        program.ops,
        program.args,
        program.literals,
        program.lit_ends,
        int_block,
        signed,
        text_data,
        text_ends.ravel(),
        np.int64(first),
        np.int64(step),
        out,
        ends,
    )
    return Rendered(out[:size], ends, out)


def warm_up() -> int:
    """Compile the kernel now (or load it from numba's cache): ``make`` calls this once after
    installing, so the first run's two seed workers do not both compile it (≈3 s each)."""
    program = Program.build([b"{", (OP_INT, 0), b'"', (OP_TEXT, 0), (OP_TS, 0), b"}\n"])
    data = np.frombuffer(b"x", dtype=np.uint8)
    done = render(program, 1, ints=[np.zeros(1, dtype=np.uint64)], texts=[(data, np.array([0, 1]))])
    return done.rows
