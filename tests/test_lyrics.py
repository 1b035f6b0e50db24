import pytest

from engine.analysis.lyrics import load_lyrics
from engine.errors import InputError


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_lrc_offset_multiple_tags_word_tags_and_end_marks(tmp_path):
    p = _write(
        tmp_path,
        "song.lrc",
        "\ufeff[ti:Song]\n[ar:Someone]\n[offset:+500]\n"
        "[00:10.50][01:10.25]chorus <00:10.80>line <00:11.20>here\n"
        "[00:05.123]first line\n"
        "[00:07.00]\n"
        "[00:20:50]colon centiseconds\n",
    )
    lines = load_lyrics(p)
    # +500 ms offset: everything 0.5 s earlier; sorted by time; the empty tag ends the first line.
    assert [(round(x.time, 3), x.text) for x in lines] == [
        (4.623, "first line"),
        (10.0, "chorus line here"),
        (20.0, "colon centiseconds"),
        (69.75, "chorus line here"),
    ]
    assert lines[0].end == pytest.approx(6.5)
    assert lines[1].line == 4 and lines[3].line == 4


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("[00:01.00]ok\n[0a:12.00]bad\n", 2, "bad time tag"),
        ("[00:01.00]ok\njust words\n", 2, "no time tag"),
        ("[00:01.00]ok\n[00:75.00]bad seconds\n", 2, "below 60"),
        ("[offset:soon]\n[00:01.00]ok\n", 1, "offset"),
    ],
)
def test_lrc_errors_name_file_and_line(tmp_path, text, line, words):
    p = _write(tmp_path, "bad.lrc", text)
    with pytest.raises(InputError) as e:
        load_lyrics(p)
    assert f"{p}, line {line}:" in str(e.value) and words in str(e.value)


def test_srt(tmp_path):
    p = _write(
        tmp_path,
        "a.srt",
        "1\n00:00:01,250 --> 00:00:03,000\n<i>hello</i>\nworld\n\n2\n00:01:02,5 --> 00:01:04,000\nsecond\n",
    )
    lines = load_lyrics(p)
    assert [(x.time, x.end, x.text) for x in lines] == [(1.25, 3.0, "hello world"), (62.5, 64.0, "second")]


def test_webvtt(tmp_path):
    p = _write(
        tmp_path,
        "a.vtt",
        "WEBVTT - lyrics\n\nNOTE written by hand\nspanning lines\n\nintro\n00:02.500 --> 00:04.000 align:start\n"
        "first\n\n01:00:00.000 --> 01:00:01.000\nlate\n",
    )
    lines = load_lyrics(p)
    assert [(x.time, x.text) for x in lines] == [(2.5, "first"), (3600.0, "late")]
    assert lines[0].line == 7


def test_srt_error_names_line(tmp_path):
    p = _write(tmp_path, "b.srt", "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:xx,000 --> 00:00:04,000\nbad\n")
    with pytest.raises(InputError, match=r"b\.srt, line 6: bad cue time"):
        load_lyrics(p)


def test_csv_seed_format_and_timed_lines(tmp_path):
    a = load_lyrics(_write(tmp_path, "a.csv", '00:12,hello, world\n01:02.5,"quoted, text"\n'))
    assert [(x.time, x.text) for x in a] == [(12.0, "hello, world"), (62.5, "quoted, text")]
    b = load_lyrics(_write(tmp_path, "b.csv", "start_time,end_time,lyrics_line\n1.5,2.5,one\n3.25,4,two\n"))
    assert [(x.time, x.end, x.text, x.line) for x in b] == [(1.5, 2.5, "one", 2), (3.25, 4.0, "two", 3)]
    with pytest.raises(InputError, match=r"c\.csv, line 2: bad time"):
        load_lyrics(_write(tmp_path, "c.csv", "00:01,ok\nlater,words\n"))


AUTHORS_CSV = (
    "timestamp,text\n"
    "00:05,A person looking at the sky\n"
    '00:12,"some text, with comma"\n'
    "01:03,all dressed up in my shower cap\n"
)


def test_csv_of_the_authors_shape(tmp_path):
    """joeljang/music2video's lyrics CSVs: a ``timestamp,text`` header and ``MM:SS`` stamps."""
    lines = load_lyrics(_write(tmp_path, "song_lyrics.csv", AUTHORS_CSV))
    assert [(x.time, x.text, x.line) for x in lines] == [
        (5.0, "A person looking at the sky", 2),
        (12.0, "some text, with comma", 3),
        (63.0, "all dressed up in my shower cap", 4),
    ]


def test_csv_columns_by_name_else_by_position(tmp_path):
    swapped = load_lyrics(_write(tmp_path, "a.csv", 'Lyrics,End,Start\n"b, c",4,00:03\na,2.5,1\n'))
    assert [(x.time, x.end, x.text) for x in swapped] == [(1.0, 2.5, "a"), (3.0, 4.0, "b, c")]
    # A header naming nothing m2v knows: time first, the words after it.
    unnamed = load_lyrics(_write(tmp_path, "b.csv", "when,what\n00:07,seven, eight\n"))
    assert [(x.time, x.text, x.line) for x in unnamed] == [(7.0, "seven, eight", 2)]
    # Unquoted commas in the named last column stay in the words.
    loose = load_lyrics(_write(tmp_path, "c.csv", "timestamp,text\n00:01,one, two\n"))
    assert [x.text for x in loose] == ["one, two"]
    with pytest.raises(InputError, match=r"d\.csv, line 3: expected 3 columns"):
        load_lyrics(_write(tmp_path, "d.csv", "start,end,text\n1,2,ok\n3,4\n"))
    with pytest.raises(InputError, match=r"e\.csv, line 2: bad time 'soon'"):
        load_lyrics(_write(tmp_path, "e.csv", "timestamp,text\nsoon,words\n"))


def test_empty_unknown_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="empty"):
        load_lyrics(_write(tmp_path, "e.lrc", "  \n"))
    with pytest.raises(InputError, match="unknown lyrics format"):
        load_lyrics(_write(tmp_path, "e.txt", "just some words\n"))
    with pytest.raises(InputError, match="not found"):
        load_lyrics(tmp_path / "nope.lrc")
    with pytest.raises(InputError, match="no timed lyric lines"):
        load_lyrics(_write(tmp_path, "meta.lrc", "[ti:only metadata]\n"))


def test_real_lrc_matches_its_human_csv(fantasma):
    lrc = load_lyrics(fantasma / "lyrics.lrc")
    csv = load_lyrics(fantasma / "lines.csv")
    assert [x.text for x in lrc] == [x.text for x in csv]
    # The LRC is the CSV rounded to centiseconds: sub-second times are kept.
    assert all(abs(a.time - b.time) <= 0.006 for a, b in zip(lrc, csv))
    assert any(a.time % 1 for a in lrc)
