"""A picture of an analysis an editor can read: waveform, onsets, beats, cuts, rates, lyrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.analysis.audio import load_song
from engine.analysis.features import compute_features
from engine.errors import InputError
from engine.files import write_bytes_atomic


def plot_format(out_path: str | Path, flag: str = "--plot") -> str:
    """The image format a plot path asks for: its extension, PNG when it has none.

    The file is written under exactly the name given (``plot`` stays ``plot``, a PNG).

    Raises
    ------
    InputError
        When matplotlib cannot write that extension (checked before anything is written).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    ext = Path(out_path).suffix.lower().lstrip(".")
    if not ext:
        return "png"
    kinds = FigureCanvasBase.get_supported_filetypes()
    if ext not in kinds:
        raise InputError(f"{flag}: cannot write .{ext} pictures; use one of .{', .'.join(sorted(kinds))}", out_path)
    return ext


def plot_plan(plan: dict, out_path: str | Path) -> Path:
    """Draw a plan over its song and save it as an image.

    Parameters
    ----------
    plan : dict
        A plan from :func:`engine.plan.build.analyze` or :func:`engine.plan.build.plan_from_boundaries`.
    out_path : str or Path
        PNG (or any format matplotlib writes, by extension) to create; written atomically.

    Returns
    -------
    Path
        The written file.
    """
    out_path = Path(out_path)
    write_bytes_atomic(out_path, plot_bytes(plan, plot_format(out_path)))
    return out_path


def plot_bytes(plan: dict, fmt: str = "png") -> bytes:
    """The plot of a plan as the bytes of an image file in ``fmt``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    span = plan["song"]["span"]
    song = load_song(plan["song"]["path"], start=span[0], end=span[1], min_duration=0.0)
    feats = compute_features(song.y, song.sr)
    fig, axes = plt.subplots(3, 1, figsize=(14, 7.5), sharex=True, gridspec_kw={"height_ratios": [2, 1.4, 1.4]})
    ax_w, ax_o, ax_r = axes
    _draw_song(ax_w, plan, song)
    for s in plan["segments"][1:]:
        for ax in axes:
            ax.axvline(s["start"], color="crimson", lw=1.0, alpha=0.8)
    ax_o.plot(song.offset + feats.frames_to_time(np.arange(feats.n_frames)), feats.onset, lw=0.6, color="tab:orange")
    for b in plan.get("beats", []):
        ax_o.axvline(b, color="0.6", lw=0.4, alpha=0.6)
    ax_o.set_ylabel("onset strength\n(grey: beats)")
    _draw_rates(ax_r, plan["segments"])
    ax_r.set_xlim(span[0], span[1])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format=fmt)
    plt.close(fig)
    return buf.getvalue()


def _draw_song(ax_w, plan: dict, song) -> None:
    """The waveform shaded by intensity, with the lyric lines and a title."""
    from matplotlib import cm

    segs = plan["segments"]
    step = max(1, len(song.y) // 20000)
    ax_w.plot(song.offset + np.arange(0, len(song.y), step) / song.sr, song.y[::step], lw=0.4, color="0.35")
    for s in segs:
        ax_w.axvspan(s["start"], s["end"], color=cm.viridis(s["intensity"]), alpha=0.25, lw=0)
    for ly in plan.get("lyrics", []):
        if ly.get("past_end"):
            continue
        ax_w.axvline(ly["time"], color="tab:blue", lw=0.8, ls="--")
        ax_w.text(
            ly["time"],
            0.97,
            " " + ly["text"][:28],
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color="tab:blue",
            transform=ax_w.get_xaxis_transform(),
        )
    tempo = plan["analysis"].get("tempo_bpm")
    ax_w.set_title(
        f"{Path(plan['song']['path']).name}: {len(segs)} segments "
        f"({plan['analysis'].get('granularity', 'from boundaries')})"
        + (f", {tempo:.1f} bpm" if tempo else "")
        + "  | red: cuts, blue: lyrics, shade: intensity"
    )
    ax_w.set_ylabel("waveform")


def _draw_rates(ax_r, segs: list[dict]) -> None:
    """Steps per second and intensity per segment, lyric-guided spans underneath."""
    x = [v for s in segs for v in (s["start"], s["end"])]
    ax_r.plot(x, [s["rate"] for s in segs for _ in (0, 1)], color="tab:green", label="steps / s")
    ax_r.set_ylabel("generation rate\n(steps / s)")
    ax_i = ax_r.twinx()
    ax_i.plot(x, [s["intensity"] for s in segs for _ in (0, 1)], color="tab:purple", lw=0.8, ls=":")
    ax_i.set_ylabel("intensity (0-1)", color="tab:purple")
    for s in segs:
        for p in s["parts"]:
            if p["kind"] == "lyric":
                ax_r.axvspan(p["start"], p["end"], ymin=0, ymax=0.06, color="tab:blue", lw=0)
    ax_r.set_xlabel("song time (s)   | blue bar: lyric-guided span")
