"""Timed lyrics: LRC (with ``[offset:]``, several tags a line, enhanced word tags),
SRT, WebVTT and CSV (``MM:SS,text`` or ``start_time,end_time,lyrics_line``).

Every parse error names the file and the line number.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.files import MAX_TEXT_BYTES, read_regular


@dataclass(frozen=True)
class LyricLine:
    """One timed lyric line.

    Attributes
    ----------
    time : float
        Start in seconds (file time of the song).
    text : str
        The words, with any word-timing tags removed.
    line : int
        1-based line number in the lyrics file.
    end : float or None
        End in seconds when the format gives one.
    """

    time: float
    text: str
    line: int
    end: float | None = None

    def to_json(self) -> dict:
        out: dict = {"time": round(self.time, 3), "text": self.text, "line": self.line}
        if self.end is not None:
            out["end"] = round(self.end, 3)
        return out


_LRC_TAG = re.compile(r"\[(\d{1,3}):(\d{1,2})(?:[.:](\d{1,3}))?\]")
_LRC_META = re.compile(r"^\[([A-Za-z#]+):(.*)\]\s*$")
_WORD_TAG = re.compile(r"<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>")
_CUE_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})")
_CUE_LINE = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)")
_MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")
_CSV_TIME = re.compile(r"^\s*(?:(\d+):)?(\d{1,3}):(\d{1,2}(?:[.,]\d+)?)\s*$")


#: Lyric lines closer than this (seconds) are refused: the plan keeps times to 0.1 ms.
MIN_LINE_GAP = 1e-3


def _frac(digits: str | None) -> float:
    return int(digits) / (10 ** len(digits)) if digits else 0.0


def read_text(path: str | Path, what: str = "lyrics file") -> str:
    """Read a text file as UTF-8 (BOM allowed), falling back to Latin-1 for old LRC files.

    ``what`` names the file in errors (the prompts reader, ``engine.plan.prompts``, reads these formats too).
    """

    path = Path(path).expanduser()
    raw = read_regular(path, what, MAX_TEXT_BYTES)
    if not raw.strip():
        raise InputError(f"the {what} is empty", path)
    text = _decode(raw)
    if "\x00" in text:
        raise InputError(f"this is not a text file (it holds NUL bytes); save the {what} as UTF-8 text", path)
    return text


def _decode(raw: bytes) -> str:
    """UTF-8 (BOM allowed), UTF-16 with a BOM or in its ASCII-heavy no-BOM shape, else Latin-1."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    elif len(raw) >= 4 and raw.count(b"\x00") * 3 >= len(raw):
        # UTF-16 without a BOM: every other byte of ASCII text is NUL; the side of the NULs gives the order.
        order = "utf-16-le" if raw[1::2].count(0) > raw[0::2].count(0) else "utf-16-be"
        try:
            return raw.decode(order)
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_lrc(text: str, path: str | Path = "<lrc>") -> list[LyricLine]:
    """Parse LRC lyrics.

    An ``[offset:+N]`` tag (milliseconds) makes every line show N ms earlier,
    as LRC players do. A time tag with no words ends the previous line.
    """
    offset = 0.0
    entries: list[tuple[float, str, int]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        meta = _LRC_META.match(line)
        if meta and not _LRC_TAG.match(line):
            if meta.group(1).lower() == "offset":
                try:
                    offset = float(meta.group(2).strip()) / 1000.0
                except ValueError:
                    offset = math.nan
                if not math.isfinite(offset) or abs(offset) > 3600:
                    raise InputError(f"bad offset tag {line!r} (milliseconds expected)", path, n)
            continue
        times = []
        pos = 0
        while m := _LRC_TAG.match(line, pos):
            mm, ss = int(m.group(1)), int(m.group(2))
            if ss >= 60:
                raise InputError(f"bad time tag {m.group(0)!r}: seconds must be below 60", path, n)
            times.append(mm * 60 + ss + _frac(m.group(3)))
            pos = m.end()
        if not times:
            if line.startswith("["):
                raise InputError(f"bad time tag in {line[:40]!r} (expected [mm:ss.xx])", path, n)
            raise InputError(f"line has no time tag: {line[:40]!r}", path, n)
        words = " ".join(_WORD_TAG.sub("", line[pos:]).split())
        for t in times:
            entries.append((t - offset, words, n))
    entries.sort(key=lambda e: (e[0], e[2]))
    out: list[LyricLine] = []
    for i, (t, words, n) in enumerate(entries):
        if not words:
            continue
        nxt = entries[i + 1][0] if i + 1 < len(entries) and not entries[i + 1][1] else None
        out.append(LyricLine(time=max(0.0, t), text=words, line=n, end=nxt))
    return out


def _cue_time(s: str, path: str | Path, n: int) -> float:
    m = _CUE_TIME.fullmatch(s.strip())
    if not m:
        raise InputError(f"bad cue time {s!r} (expected HH:MM:SS,mmm)", path, n)
    h = int(m.group(1) or 0)
    mm, ss = int(m.group(2)), int(m.group(3))
    if mm >= 60 or ss >= 60:
        raise InputError(f"bad cue time {s!r}: minutes and seconds must be below 60", path, n)
    return h * 3600 + mm * 60 + ss + _frac(m.group(4))


def _starts_cue(lines: list[str], i: int) -> bool:
    """Line ``i`` begins the next cue (its timing, or its number right above it), blank line or not."""
    if _CUE_LINE.match(lines[i].strip()):
        return True
    return lines[i].strip().isdigit() and i + 1 < len(lines) and bool(_CUE_LINE.match(lines[i + 1].strip()))


def parse_cues(text: str, path: str | Path = "<srt>") -> list[LyricLine]:
    """Parse SRT or WebVTT cues (numbering, identifiers, settings, NOTE and STYLE blocks allowed)."""
    lines = text.splitlines()
    out: list[LyricLine] = []
    i = 0
    if lines and lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        i = 1
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        if line.startswith(("NOTE", "STYLE", "REGION")):
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        cue = _CUE_LINE.match(line)
        if not cue:
            # A cue number or identifier: the timing must follow.
            if i + 1 < len(lines) and _CUE_LINE.match(lines[i + 1].strip()):
                i += 1
                continue
            raise InputError(
                f"expected a cue timing line like '00:00:01,000 --> 00:00:02,000', got {line[:40]!r}", path, i + 1
            )
        n = i + 1
        start, end = _cue_time(cue.group(1), path, n), _cue_time(cue.group(2), path, n)
        if end < start:
            raise InputError(f"cue ends ({cue.group(2)}) before it starts ({cue.group(1)})", path, n)
        i += 1
        words = []
        while i < len(lines) and lines[i].strip() and not _starts_cue(lines, i):
            words.append(_MARKUP.sub("", lines[i]).strip())
            i += 1
        text_ = " ".join(" ".join(words).split())
        if text_:
            out.append(LyricLine(time=start, text=text_, line=n, end=end))
    out.sort(key=lambda x: (x.time, x.line))
    return out


def _csv_seconds(s: str, path: str | Path, n: int) -> float:
    s = s.strip()
    m = _CSV_TIME.match(s)
    if m:
        if m.group(1) is not None and int(m.group(2)) >= 60:
            raise InputError(f"bad time {s!r}: minutes must be below 60", path, n)
        if float(m.group(3).replace(",", ".")) >= 60:
            raise InputError(f"bad time {s!r}: seconds must be below 60", path, n)
        return int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3).replace(",", "."))
    try:
        v = float(s)
    except ValueError:
        raise InputError(f"bad time {s!r} (expected MM:SS or seconds)", path, n) from None
    if not math.isfinite(v):
        raise InputError(f"bad time {s!r} (a finite number of seconds expected)", path, n)
    if v < 0:
        raise InputError(f"negative time {s!r}", path, n)
    return v


#: Header names of the CSV columns (lower case, spaces and hyphens as ``_``); unnamed columns go by position.
_CSV_TIME_NAMES = ("timestamp", "time", "start", "start_time", "starttime", "begin", "from")
_CSV_END_NAMES = ("end", "end_time", "endtime", "stop", "to", "until")
_CSV_TEXT_NAMES = ("text", "lyrics", "lyric", "line", "lyrics_line", "lyric_line", "words", "content")


def _csv_is_time(s: str) -> bool:
    """Whether a cell reads as a time stamp (``MM:SS``, ``H:MM:SS`` or seconds)."""
    if _CSV_TIME.match(s):
        return True
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _csv_columns(header: list[str] | None, path: str | Path) -> tuple[int, int | None, int | None]:
    """``(time, end, text)`` column indices from a header row: by name, else by position.

    ``text`` is None when the words are every column after the time (a file without a header, whose
    unquoted commas split the words into several cells).
    """
    if header is None:
        return 0, None, None
    names = [re.sub(r"[\s-]+", "_", c.strip().lower()) for c in header]

    def find(choices: tuple[str, ...]) -> int | None:
        return next((names.index(c) for c in choices if c in names), None)

    time_col, end_col, text_col = find(_CSV_TIME_NAMES), find(_CSV_END_NAMES), find(_CSV_TEXT_NAMES)
    if time_col is None:
        time_col = 0
    if text_col is None:
        used = {time_col, end_col}
        rest = [i for i in range(len(names)) if i not in used]
        if not rest:
            raise InputError(f"the header {','.join(header)!r} names no column for the words", path, 1)
        text_col = rest[0] if end_col is not None or len(rest) == 1 else None
    if text_col == time_col or (end_col is not None and text_col == end_col):
        raise InputError(f"the header {','.join(header)!r} names one column twice", path, 1)
    return time_col, end_col, text_col


def _csv_words(row: list[str], time_col: int, end_col: int | None, text_col: int | None, width: int) -> str:
    if text_col is None:
        cells = [c for i, c in enumerate(row) if i not in (time_col, end_col)]
    elif text_col == width - 1:
        cells = row[text_col:]  # unquoted commas in the last column split it into extra cells
    else:
        cells = row[text_col : text_col + 1]
    return " ".join(",".join(cells).split())


def _csv_rows(text: str, path: str | Path) -> list[tuple[int, list[str]]]:
    """The CSV's non-empty rows with the line each starts on, read strictly: every row is one line.

    An unbalanced quote would make the csv module swallow every line after it into one cell (a silently
    wrong lyrics file), so a quote that is never closed, text after a closing quote, or a quoted cell running
    over several lines is refused, naming the line the row starts on.
    """
    reader, rows = csv.reader(io.StringIO(text), strict=True), []
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                raise InputError(f"not a readable CSV ({e})", path, start) from None
            raise InputError(
                f"an unbalanced quote: the row starting here does not read as CSV ({e}); close the quote, or "
                'double a quote inside quoted words ("")',
                path,
                start,
            ) from None
        if reader.line_num > start and "".join(row).strip():
            raise InputError(
                f"a quoted cell runs from line {start} to line {reader.line_num}: an unbalanced quote? "
                "Each lyric row is one line",
                path,
                start,
            )
        if "".join(row).strip():
            rows.append((start, row))
        start = reader.line_num + 1
    return rows


def parse_csv(text: str, path: str | Path = "<csv>") -> list[LyricLine]:
    """Parse CSV lyrics: a time column (``MM:SS``, ``H:MM:SS`` or seconds), an optional end, the words.

    A first row whose cells are not times is a header (the authors' ``timestamp,text``,
    ``start_time,end_time,lyrics_line``, ...): its names choose the columns (time: timestamp, time,
    start, ...; end: end, end_time, ...; words: text, lyrics, line, ...); columns it does not name go
    by position (time first, the words after it). Quoted words may hold commas.
    """
    rows = _csv_rows(text, path)
    header = None
    if rows and not any(_csv_is_time(c.strip()) for c in rows[0][1]):
        header = rows.pop(0)[1]
    time_col, end_col, text_col = _csv_columns(header, path)
    width = len(header) if header else 0
    need = 1 + max(c for c in (time_col, end_col, time_col + 1 if text_col is None else text_col) if c is not None)
    out: list[LyricLine] = []
    for n, row in rows:
        if len(row) < need:
            raise InputError(
                "expected a time and the words, like 01:23,some words"
                if header is None
                else f"expected {need} columns as the header {','.join(header)!r} names, got {len(row)}",
                path,
                n,
            )
        start = _csv_seconds(row[time_col], path, n)
        end = _csv_seconds(row[end_col], path, n) if end_col is not None else None
        words = _csv_words(row, time_col, end_col, text_col, width or len(row))
        if words:
            out.append(LyricLine(time=start, text=words, line=n, end=end))
    out.sort(key=lambda x: (x.time, x.line))
    return out


def text_format(text: str, ext: str) -> str | None:
    """Which reader a timed-text file needs: ``"lrc"``, ``"cues"`` (SRT, WebVTT) or ``"csv"`` (:data:`PARSERS`), from
    its extension (``ext``, lower case with the dot) or else its first characters; None when neither says."""
    # The extension decides; the content only when the extension names no format (words in a CSV may hold "-->"
    # or "[00:01]").
    by_ext = {".lrc": "lrc", ".srt": "cues", ".vtt": "cues", ".csv": "csv"}
    if ext in by_ext:
        return by_ext[ext]
    head = text.lstrip()[:200]
    if _LRC_TAG.search(head):
        return "lrc"
    if "-->" in head:
        return "cues"
    return None


PARSERS = {"lrc": parse_lrc, "cues": parse_cues, "csv": parse_csv}


def load_lyrics(path: str | Path) -> list[LyricLine]:
    """Read timed lyrics from a file, choosing the parser from its extension (or content).

    Parameters
    ----------
    path : str or Path
        ``.lrc``, ``.srt``, ``.vtt`` or ``.csv`` file.

    Returns
    -------
    list of LyricLine
        Sorted by time.

    Raises
    ------
    InputError
        Naming the file and line of the first problem, or saying no timed line was found.
    """
    path = Path(path)
    text = read_text(path)
    fmt = text_format(text, path.suffix.lower())
    if fmt is None:
        raise InputError("unknown lyrics format: use .lrc, .srt, .vtt or .csv", path)
    out = PARSERS[fmt](text, path)
    if not out:
        raise InputError("no timed lyric lines found", path)
    for ly in out:
        if ly.end is not None and ly.end < ly.time:
            raise InputError(f"the line ends ({ly.end:g} s) before it starts ({ly.time:g} s)", path, ly.line)
    for a, b in zip(out, out[1:]):
        # Plans keep times to 0.1 ms: closer lines would get guidance spans of no length (equal times join).
        if 0 < b.time - a.time < MIN_LINE_GAP - 1e-9:  # (1 ms written as 1.000 and 1.001 s is a whole 1 ms)
            raise InputError(
                f"the line starts {(b.time - a.time) * 1e6:.0f} µs after line {a.line} ({a.time:g} s): lyric lines "
                f"must be at least {MIN_LINE_GAP * 1e3:g} ms apart, or share one time",
                path,
                b.line,
            )
    return out
