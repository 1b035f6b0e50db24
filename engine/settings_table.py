"""Every setting a user controls, as data: one row each, read by the engine and by the add-on.

A row says the setting's name, its flag, its type, default, range or
choices, where it belongs (its *scope*: which commands take it, which settings
object holds it, whether it is set per segment, whether the add-on alone has
it), how it enters the cache keys (render-wide, per segment, through what a
segment uses), whether it can change over time (*animatable*), its help
text, and how the add-on shows it (its property, the add-on's own limits
where they differ, its panel section, when the add-on passes the flag).

From these rows come the engine's flags (:mod:`engine.cli.parser`), their
checks (:mod:`engine.settings_check`), the settings objects that travel from
the parser to the step and the signatures that take them
(:mod:`engine.settings`: ``AnalysisSettings``, ``RenderSettings``,
``JobSettings``), the cache keys (:mod:`engine.render.jobs.keys`), the segment
settings of plans and their files (:mod:`engine.plan.segment_settings`), the
preset descriptions, and the add-on's properties, panel sections and the flags
it passes (``m2v_blender/setting_props.py``, ``panels.py``, ``flags.py``).
Adding a setting is adding a row (plus the code that uses its value).

Standard library only, like :mod:`engine.protocol`: the add-on loads this
very file from the engine sources it ships (``m2v_blender/contract.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- choices (the one place each list is written)

PRESET_CHOICES = ("auto", "paper", "draft", "musicvideo")
DEVICES = ("auto", "cuda", "mps", "cpu")
GRANULARITIES = ("scenes", "beats")
#: How cutouts are taken: the authors' ``latest`` (whole image pooled, kornia augments) or random ``crops``.
CUTOUT_METHODS = ("latest", "crops")
#: How footage pulls each image (``--init-space``): L2 to its encoding in the latent, or to its pixels.
INIT_SPACES = ("latent", "pixel")
MOTION_DRIVES = ("music", "steady")
#: How a segment's loudness becomes its intensity (``--intensity``). ``paper``: the paper's text, the segment's
#: mean level in dB scaled between the song's 2nd and 98th percentile (``levels["db"]``); ``authors``: the
#: authors' code, the segment's maximum of the song's min-max normalised mel power (``levels["power"]``, see
#: ``engine.protocol.AUTHORS_POWER``), with their whole-step count ``int(rate x length)``.
INTENSITIES = ("paper", "authors")
#: Number formats of a step (``--precision``): ``mixed`` (the default: CLIP in fp16 and TF32 on CUDA, as the
#: authors' GPU step had it; CLIP and the decoder in bf16 on a CPU with bf16 units) or ``fp32``.
PRECISIONS = ("mixed", "fp32")
#: Where a matte is read from (``--matte-channel``): its picture's brightness (Rec. 709) or its alpha channel.
MATTE_CHANNELS = ("luma", "alpha")
#: ``--alpha``: ``matte`` writes RGBA frames whose alpha is the matte; ``none`` opaque frames (composited).
ALPHA_FRAMES = ("none", "matte")
#: ``export --alpha``: a QuickTime movie that keeps the frames' alpha (ProRes 4444, or PNG).
ALPHA_MOVIES = ("prores", "png")

#: The music as curves (``engine signals``, :mod:`engine.plan.signals`), each 0-1 over the song: m2v's intensity (the
#: level curve scaled as segments' intensities are), the onset strength, a beat pulse (each beat's strength,
#: decaying), and the loudness of the low, mid and high bands (Bake Music to F-Curve's choices).
SIGNALS = ("intensity", "onset", "beat", "low", "mid", "high")
SIGNAL_LABELS = {"intensity": "Intensity", "onset": "Onset Strength", "beat": "Beat Pulse", "low": "Low Band",
                 "mid": "Mid Band", "high": "High Band"}

#: Each preset's name for people and what it is; its numbers are ``engine.protocol.PRESETS`` (see
#: :func:`describe_preset`). The add-on's preset menu, ``--preset``'s help and the engine's summary line read these.
PRESET_INFO = {
    "auto": ("Auto", "paper on a GPU, draft on a CPU"),
    "paper": ("Paper", "the paper's method as its text reads"),
    "draft": ("Draft", "a fast preview"),
    "musicvideo": ("Music Video", "paper, with a zoom pulse on every beat and a drift that follows the loudness"),
}

# ---------------------------------------------------------------- scopes

#: Which commands take a row's flag, by scope. ``plan``: analyze, plan and run (the rates); ``scenes``: analyze
#: and run (where cuts go); ``render``: render and run, a field of ``RenderSettings`` (recorded in the manifest,
#: in the cache keys); ``job``: render and run, a field of ``JobSettings`` (how the job runs: frames do not depend
#: on it). ``segment``: set per segment (a segment-settings file, the plan's segments, the add-on's segment list;
#: in that segment's key); ``addon``: the add-on's alone (the engine never sees it); ``input``: the files and spans
#: a command reads and writes, and how ``export`` writes them (a row says its ``commands``).
SCOPE_COMMANDS = {
    "plan": ("analyze", "plan", "run"),
    "scenes": ("analyze", "run"),
    "render": ("render", "run"),
    "job": ("render", "run"),
    "segment": (),
    "addon": (),
    "input": (),
}
#: Argument groups of ``--help``: title and description.
GROUPS = {
    "footage": ("footage styling", "each image starts from, and is pulled towards, a footage frame"),
    "motion": ("motion", "move the previous image before each image's steps (off, except in the musicvideo preset)"),
    "matte": (
        "compositing",
        "generate only inside a matte (white: generated; black: the footage frame, or empty), timed like footage",
    ),
    "chains": (
        "chains and Ray",
        "split the song into independent latent chains and render them at once on a Ray cluster",
    ),
    "models": ("model files", "the official files in the models folder, or your own"),
}
#: The render-wide settings every cache key has held at any value since keys were first made (their saved names, in
#: table order). A render setting added since enters the render-wide key only where it is set (not its default), so
#: a new control that is not used changes no key; these keep entering as they always did (the keys are a format).
RENDER_KEY_ALWAYS = (
    "width", "height", "cutouts", "cut_method", "cut_pow", "lr", "seed", "style", "style_weight", "prompt_average",
    "l1_weight", "noise", "layout", "precision",
)
#: What a segment's key holds of each group of per-segment rows, besides the rows' values (``key_via`` rows enter
#: through it): the footage frames a segment's images follow (their pixels' digests), and each image's move.
#: A group is in a segment's key only where the segment uses it (footage covers one of its images; motion is on).
#: A group named here with ``None`` has no values of its own: its key entry is the content alone.
#: The matte's content is its own entry (``ModelSource.key_content``): each image's processed matte by its pixels
#: (under ``"frames"``, one per image) and the version of the step inside a matte; every matte row enters through it.
#: A key entry is thus one value per image (a list) or a dict with one value per image under the group's name (or
#: ``"frames"``): the image keys of a directed render (``engine.render.jobs.keys.image_columns``) read it so.
KEY_GROUPS = {"footage": "frames", "motion": None, "matte": None}


@dataclass(frozen=True)
class UI:
    """How the add-on shows a setting and when it passes the flag.

    ``props``: the property names (default: the setting's name; two for ``--size``). ``lo``/``hi``: the
    add-on's own limits where they differ from the engine's (``None``: the engine's). ``default``: the
    add-on's default where it differs; ``default_preset``: take it from that preset instead. ``items``:
    ``{choice: (label, description)}``; ``extra_items``: choices the add-on adds (``preset``: Custom), and
    ``flag_values`` what such a choice passes as the flag. ``when``: the conditions for passing the flag, all of
    them: ``custom`` (the Custom preset), ``footage`` (a footage strip is set), ``matte`` (a matte strip is set),
    ``motion`` (Custom Motion is on),
    ``given`` (a non-empty value), ``model`` (not a layout preview), ``never`` (the add-on passes it itself).
    ``owner``: ``scene`` (``scene.m2v``), ``preferences`` (the add-on's preferences, e.g. the device) or
    ``segment`` (an item of ``scene.m2v.segments``).
    ``section``: the panel section that draws it (``custom``, ``analysis``, ``look``, ``output``, ``footage``,
    ``motion``, ``matte``; ``None``: drawn by hand or not at all); ``line``: rows of a section with the same line are drawn
    side by side; ``bare``: drawn without its label; ``shown``: drawn only while these hold (``scenes``: the
    preset in use cuts at scene changes, ``footage``, ``matte``, ``motion``). ``on_change``: the add-on's update hook by name.
    """

    label: str
    props: tuple[str, ...] = ()
    description: str | None = None
    lo: float | None = None
    hi: float | None = None
    soft_max: float | None = None
    step: int | None = None
    default: object = None
    default_preset: str | None = None
    subtype: str | None = None
    unit: str | None = None
    items: dict = field(default_factory=dict)
    extra_items: dict = field(default_factory=dict)
    flag_values: dict = field(default_factory=dict)
    when: tuple[str, ...] = ()
    owner: str = "scene"
    section: str | None = None
    line: str | None = None
    bare: bool = False
    shown: tuple[str, ...] = ()
    on_change: str | None = None


@dataclass(frozen=True)
class Setting:
    """One setting.

    ``type``: ``int``, ``float``, ``str``, ``bool``, ``choice``, ``path`` (a file or folder), ``times`` (song
    seconds separated by commas, a tuple of floats) or ``rate`` (a frame rate, ``29.97`` or ``30000/1001``, kept
    as written so that it stays exact). ``nargs`` 2 for a pair (``--size W H``), ``"?"`` for a flag
    whose value may be left out (then ``const``). ``fields``: the settings fields a pair fills when they are not
    one tuple field (``--size``: width, height). ``preset``: where a value left out comes from the preset in use
    (``plan``, ``look``: ``engine.protocol.PRESETS``; ``motion``: ``MOTION_PRESETS``). ``action``:
    ``store_true``/``store_false`` for a switch. ``parts``: how messages name a pair's two values. ``commands``:
    the commands that take the flag (default: the scope's); ``required``: the commands where it must be given.
    ``exclusive``: rows with the same name are alternatives, at most one given (with ``required``: exactly one).

    Checks beyond a value's own range: ``at_least`` (not below that row's value, e.g. ``--max-rate`` and
    ``--min-rate``), ``needs`` (a value other than the default only with that row given, e.g. ``--alpha`` and
    ``--matte``), ``increasing`` (a pair's second value above its first), ``must_exist`` (a path).

    Names in files: ``saved_as``, the name in the manifest and the render-wide key where it differs (they are a
    file format: ``cutout_method`` is saved as ``cut_method``). Per segment (``per_segment``): the row enters each
    segment's key instead of the render-wide one, in its ``key_group`` (see :data:`KEY_GROUPS`) under
    ``key_name`` (default: its saved name), or through the group's content (``key_via``: the footage frames, the
    moves); a row of no group enters a segment's key where its value is not the default. ``animatable``: its value
    may change from image to image (keyframes); each image's own value then enters its segment's key.

    For example ``--ray [ADDRESS]`` is ``Setting("ray", "--ray", "str", None, nargs="?", const="local",
    scopes=("job",))``, an analysis choice ``--intensity paper|authors`` is ``Setting("intensity", "--intensity",
    "choice", "paper", choices=(...), scopes=("plan",))``.
    """

    name: str
    flag: str | None
    type: str
    default: object
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple = ()
    nargs: int | str | None = None
    const: object = None
    metavar: str | tuple | None = None
    scopes: tuple[str, ...] = ("render",)
    commands: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    exclusive: str | None = None
    group: str | None = None
    per_segment: bool = False
    key_group: str | None = None
    key_name: str | None = None
    key_via: bool = False
    animatable: bool = False
    preset: str | None = None
    action: str | None = None
    aliases: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    saved_as: str | None = None
    at_least: str | None = None
    needs: str | None = None
    increasing: bool = False
    must_exist: bool = False
    ui: UI | None = None

    @property
    def integer(self) -> bool:
        return self.type == "int"

    @property
    def label(self) -> str:
        """How messages name it: its flag (or its name for a setting without one)."""
        return self.flag or self.name.replace("_", " ")

    @property
    def saved_name(self) -> str:
        """Its name in the manifest and the render-wide key."""
        return self.saved_as or self.name

    @property
    def segment_key_name(self) -> str:
        """Its name in a segment's key (per-segment rows)."""
        return self.key_name or self.saved_name

    @property
    def field_names(self) -> tuple[str, ...]:
        return self.fields or (self.name,)

    @property
    def prop_names(self) -> tuple[str, ...]:
        return (self.ui.props or self.field_names) if self.ui else ()

    @property
    def takes(self) -> tuple[str, ...]:
        """The commands whose flags include this row's."""
        if not self.flag:
            return ()
        return self.commands or tuple(c for sc in self.scopes for c in SCOPE_COMMANDS[sc])


_F = "footage"
_M = "motion"
_T = "matte"
_C = "chains"

SETTINGS: tuple[Setting, ...] = (
    # ---------------------------------------------------------- what a command reads and writes
    Setting(
        "lyrics", "--lyrics", "path", None, metavar="FILE", scopes=("input",), commands=("analyze", "plan", "run"),
        help="timed lyrics: .lrc, .srt, .vtt or .csv",
    ),
    Setting(
        "start", "--start", "float", None, lo=0, scopes=("input",), commands=("analyze", "signals"),
        help="analyse from this song time (seconds)",
    ),
    Setting(
        "end", "--end", "float", None, lo=0, scopes=("input",), commands=("analyze", "signals"),
        help="analyse up to this song time (seconds)",
    ),
    Setting(
        "boundaries", "--boundaries", "str", None, metavar="T0,T1,...", scopes=("input",), commands=("plan",),
        required=("plan",), exclusive="cuts", help="segment boundaries in seconds, increasing",
    ),
    Setting(
        "boundaries_from", "--boundaries-from", "path", None, metavar="EDIT", scopes=("input",), commands=("plan",),
        required=("plan",), exclusive="cuts",
        help="the cuts of an edit made elsewhere: .otio, .xml (FCP 7), .fcpxml, .edl (read at --fps) or .kdenlive",
    ),
    Setting(
        "segment_settings", "--segment-settings", "path", None, metavar="FILE.json", scopes=("input",),
        commands=("plan",),
        help="per-segment prompt, prompt_weight, take and new_chain, matched by start time (kind m2v-segment-settings)",
    ),
    Setting(
        "prompts", "--prompts", "path", None, metavar="FILE", scopes=("input",), commands=("analyze", "plan", "run"),
        help="timed prompts: each guides the images of its span, across cuts (.srt, .vtt, .lrc with end times, "
        ".csv, or .json of kind m2v-prompts: start, end, text, weight 0-1; where prompts overlap the later-starting "
        "one guides)",
    ),
    Setting(
        "curves", "--curves", "path", None, metavar="FILE.json", scopes=("input",), commands=("render", "run"),
        help="keyframed settings (kind m2v-curves): per setting that can change over time, [song seconds, value, "
        "constant|linear] keys; each image takes the value at its start",
    ),
    Setting(
        "output", "--output", "path", None, aliases=("-o",), metavar="FILE", scopes=("input",),
        commands=("analyze", "plan", "signals", "export"), required=("export",), exclusive="export_to",
        help="analyze, plan: write the plan here (default: print it); signals: the signals document; export: write "
        "the MP4 with the song here",
    ),
    Setting(
        "plot", "--plot", "path", None, metavar="FILE.png", scopes=("input",), commands=("analyze", "plan"),
        help="also draw the analysis to this image",
    ),
    Setting(
        "no_estimate", "--no-estimate", "bool", False, action="store_true", scopes=("input",),
        commands=("analyze", "plan", "run"), help="skip the render-time estimate (no calibration)",
    ),
    Setting(
        "out", "--out", "path", "m2v-out", scopes=("input",), commands=("run", "render"), required=("render",),
        help="output folder (run: m2v-out; render: frames, manifest.json, state)",
    ),
    Setting(
        "no_fetch", "--no-fetch", "bool", False, action="store_true", scopes=("input",), commands=("run",),
        help="never download model files",
    ),
    Setting(
        "export_alpha", "--alpha", "choice", None, choices=ALPHA_MOVIES, scopes=("input",), commands=("export",),
        help="write a QuickTime movie that keeps the frames' alpha: ProRes 4444 (prores) or PNG (png); -o names "
        "a .mov",
    ),
    Setting(
        "models", "--models", "path", None, scopes=("input",), group="models",
        commands=("render", "run", "info", "models fetch", "models check"),
        help="models folder with the official files (default: $M2V_MODELS or per-user data)",
    ),
    Setting(
        "vqgan_config", "--vqgan-config", "path", None, scopes=("input",), commands=("render", "run"), group="models",
        help="your own taming VQGAN config (.yaml)",
    ),
    Setting(
        "vqgan_ckpt", "--vqgan-ckpt", "path", None, scopes=("input",), commands=("render", "run"), group="models",
        help="your own taming VQGAN checkpoint (.ckpt)",
    ),
    Setting(
        "clip_model", "--clip-model", "str", None, scopes=("input",), commands=("render", "run"), group="models",
        help="open_clip model name or config .json (default ViT-B-32-quickgelu)",
    ),
    Setting(
        "clip_weights", "--clip-weights", "path", None, scopes=("input",), commands=("render", "run"), group="models",
        help="weights for --clip-model (.safetensors preferred)",
    ),
    Setting(
        "audio_encoder", "--audio-encoder", "path", None, scopes=("input",), commands=("render", "run"),
        group="models", help="your own Wav2CLIP.pt",
    ),
    Setting(
        "timeline", "--timeline", "path", None, metavar="EDIT.otio", scopes=("input",), commands=("export",),
        required=("export",), exclusive="export_to",
        help="write the render as a timeline for another editor: .otio, .xml, .fcpxml, .edl, .kdenlive",
    ),
    Setting(
        "rate", "--fps", "rate", "24", lo=1, hi=240, scopes=("input",), commands=("export",),
        help="export's frames a second: 24, 25, 29.97 or 30000/1001 (%(default)s)",
    ),
    Setting(
        "song_frame", "--song-frame", "float", 0.0, lo=-1e9, hi=1e9, metavar="F", scopes=("input",),
        commands=("export",),
        help="--timeline: the timeline frame at which the song's time 0 plays (default 0)",
    ),
    Setting(
        "start_frame", "--start-frame", "int", 0, lo=-1e9, hi=1e9, metavar="S", scopes=("input",),
        commands=("export",),
        help="--timeline: the timeline's first frame (default 0)",
    ),
    Setting(
        "plan_file", "--plan", "path", None, metavar="PLAN.json", scopes=("input",), commands=("export",),
        help="--timeline: the render's plan (default: plan.json beside it)",
    ),
    # ---------------------------------------------------------- analysis
    Setting(
        "preset", "--preset", "choice", "auto", choices=PRESET_CHOICES, scopes=("plan", "job"),
        help="; ".join(f"{name}: {text}" for name, (_, text) in PRESET_INFO.items())
        + " (render: the plan's preset first) (%(default)s)",
        ui=UI("Preset", on_change="preset_changed", when=("never",),
              extra_items={"custom": ("Custom", "Your own values below")}, flag_values={"custom": "draft"}),
    ),
    Setting(
        "min_rate", "--min-rate", "float", None, preset="plan", lo=0, hi=1000, lo_open=True, scopes=("plan",),
        help="optimisation steps per second of music in the quietest segment (paper 10, draft 2)",
        ui=UI("Min Rate", lo=0.1, default_preset="draft", when=("custom",), section="custom", line="rates",
              description="Optimisation steps per second of music in the quietest segment"),
    ),
    Setting(
        "max_rate", "--max-rate", "float", None, preset="plan", lo=0, hi=1000, lo_open=True, scopes=("plan",),
        at_least="min_rate", help="steps per second in the loudest segment (paper 120, draft 8)",
        ui=UI("Max Rate", lo=0.1, default_preset="draft", when=("custom",), section="custom", line="rates",
              description="Optimisation steps per second in the loudest segment"),
    ),
    Setting(
        "intensity", "--intensity", "choice", "paper", choices=INTENSITIES, scopes=("plan",),
        help="a segment's intensity, which sets its steps per second: paper, its mean level in dB against the "
        "song's range (the paper's text); authors, its peak of the song's normalised mel power with whole steps, "
        "as the authors' code computes it (%(default)s)",
        ui=UI("Intensity", section="analysis", items={
            "paper": ("Paper", "A segment's mean level in dB against the song's range, as the paper's text reads"),
            "authors": ("Authors' Code", "A segment's peak of the song's normalised mel power, as the authors' code"),
        }),
    ),
    Setting(
        "fps", "--fps", "float", 24.0, lo=1, hi=240, scopes=("plan",),
        help="output frame rate: at most this many distinct images a second (%(default)s)",
    ),
    Setting(
        "device", "--device", "choice", "auto", choices=DEVICES, scopes=("plan", "job"),
        help="where to run; for --preset auto and the cost estimate too (%(default)s)",
        ui=UI("Device", owner="preferences", items={d: (d.upper() if d != "auto" else "Auto", "") for d in DEVICES}),
    ),
    Setting(
        "granularity", "--granularity", "choice", None, preset="plan", choices=GRANULARITIES, scopes=("scenes",),
        help="cut at scene changes or every beat (preset's)",
        ui=UI("Cut At", default_preset="draft", when=("custom",), section="custom", items={
            "scenes": ("Scene Changes", "Cut where the music changes most"),
            "beats": ("Every Beat", "One segment per beat, as in the paper"),
        }),
    ),
    Setting(
        "min_length", "--min-length", "float", 3.0, lo=0, hi=3600, lo_open=True, scopes=("scenes",),
        help="shortest scene in seconds (%(default)s)",
        ui=UI("Min Length", lo=0.5, soft_max=30.0, unit="TIME_ABSOLUTE", description="Shortest scene (seconds)",
              section="analysis", line="lengths", shown=("scenes",)),
    ),
    Setting(
        "target_length", "--target-length", "float", 8.0, lo=0, hi=3600, lo_open=True, scopes=("scenes",),
        at_least="min_length", help="target mean scene length in seconds (%(default)s)",
        ui=UI("Target Length", lo=0.5, soft_max=60.0, unit="TIME_ABSOLUTE", section="analysis", line="lengths",
              shown=("scenes",), description="Target mean scene length (seconds)"),
    ),
    # ---------------------------------------------------------- segment: set per segment, in that segment's key
    Setting(
        "prompt", None, "str", None, scopes=("segment",), per_segment=True,
        help="what this segment should show: replaces (or mixes with) its lyric or audio",
        ui=UI("Prompt", default="", owner="segment"),
    ),
    Setting(
        "prompt_weight", None, "float", 1.0, lo=0, hi=1, scopes=("segment",), per_segment=True, animatable=True,
        help="1: the prompt replaces the lyric or audio guidance; below 1 it mixes with it",
        ui=UI("Weight", subtype="FACTOR", owner="segment"),
    ),
    Setting(
        "take", None, "int", 0, lo=0, hi=1_000_000, scopes=("segment",), per_segment=True,
        help="another take changes only this segment's draws", ui=UI("Take", owner="segment"),
    ),
    Setting(
        "new_chain", None, "bool", False, scopes=("segment",),
        help="start an independent latent chain here: a fresh image at this cut (chains can render at once on a "
        "Ray cluster)",
        ui=UI("New Chain", owner="segment"),
    ),
    # ---------------------------------------------------------- render: RenderSettings, in this order (the keys)
    Setting(
        "size", "--size", "int", (512, 512), lo=16, hi=8192, nargs=2, metavar=("W", "H"), preset="look",
        fields=("width", "height"), parts=("width", "height"), help="image size in pixels (paper 512 512, draft 256 256)",
        ui=UI("Size", props=("width", "height"), hi=4096, step=16, default_preset="draft", when=("custom",),
              section="custom"),
    ),
    Setting(
        "cutouts", "--cutouts", "int", 32, lo=1, hi=1024, preset="look", help="paper and draft: 32",
        ui=UI("Cutouts", hi=256, default_preset="draft", when=("custom",), section="custom", line="cutouts"),
    ),
    Setting(
        "cutout_method", "--cutout-method", "choice", "latest", choices=CUTOUT_METHODS, preset="look",
        aliases=("--cut-method",), saved_as="cut_method", help="latest (the authors', paper) or crops (draft)",
        ui=UI("Cutout Method", default_preset="draft", when=("custom",), section="custom", line="cutouts", bare=True),
    ),
    Setting("cutout_pow", None, "float", 1.0, lo=0, hi=10, lo_open=True, saved_as="cut_pow"),
    Setting("lr", "--lr", "float", 0.1, lo=0, hi=10, lo_open=True, preset="look", help="Adam step size (0.1)"),
    Setting(
        "seed", "--seed", "int", 0, lo=0, hi=(1 << 63) - 1, help="fixes every random draw (%(default)s)",
        ui=UI("Seed", hi=(1 << 31) - 1, section="look"),
    ),
    Setting(
        "style", "--style", "str", None, help="a text style prompt for the whole song, e.g. 'oil painting'",
        ui=UI("Style", default="", when=("given", "model"), section="look",
              description="Optional text style prompt for the whole song, e.g. 'oil painting'"),
    ),
    Setting(
        "style_weight", "--style-weight", "float", 0.5, lo=0, hi=100, animatable=True,
        help="weight of --style (%(default)s)",
        ui=UI("Style Weight", soft_max=2.0, when=("model",), section="look",
              description="How strongly the style prompt pulls every image (keyframe it to change it over time)"),
    ),
    Setting(
        "prompt_average", "--no-prompt-average", "bool", True, action="store_false",
        help="turn off eq. 2 (averaging each part's target with the previous one)",
    ),
    Setting(
        "l1_weight", "--l1-weight", "float", 0.0, lo=0, hi=1e6,
        help="eq. 1: cancel latent changes smaller than lr x this between images (0: off)",
    ),
    Setting("noise", None, "float", 0.1, lo=0, hi=10),
    Setting("layout", "--layout", "bool", False, action="store_true",
            help="preview: a titled card per image, no models needed"),
    Setting(
        "footage", "--footage", "path", None, metavar="MOVIE", group=_F, per_segment=True, key_group=_F,
        key_via=True, must_exist=True, help="a movie, a still image, or a folder of images (a sequence)",
    ),
    Setting(
        "footage_offset", "--footage-offset", "float", 0.0, lo=-1e7, hi=1e7, metavar="S", group=_F, per_segment=True,
        key_group=_F, key_via=True, help="the movie time (seconds) shown at song time 0 (%(default)s)",
    ),
    Setting(
        "footage_speed", "--footage-speed", "float", 1.0, lo=0, hi=1000, lo_open=True, metavar="X", group=_F,
        per_segment=True, key_group=_F, key_via=True, help="movie seconds per song second (%(default)s)",
    ),
    Setting(
        "footage_span", "--footage-span", "float", None, lo=-1e7, hi=1e7, nargs=2, metavar=("A", "B"), group=_F,
        parts=("start", "end"), increasing=True, per_segment=True, key_group=_F, key_via=True,
        help="song seconds where the footage is visible (default: wherever the movie plays)",
    ),
    Setting(
        "footage_fps", "--footage-fps", "float", None, lo=0, hi=1000, lo_open=True, metavar="F", group=_F,
        per_segment=True, key_group=_F, key_via=True, help="frames per second of an image-sequence folder",
    ),
    Setting(
        "init_weight", "--init-weight", "float", 0.0, lo=0, hi=1e6, metavar="W", group=_F, per_segment=True,
        key_group=_F, animatable=True,
        help="L2 pull of each step towards the footage frame, as VQGAN-CLIP's --init_weight (%(default)s: off)",
        ui=UI("Init Weight", soft_max=1000.0, when=("footage", "model"), section="footage", line="pull",
              shown=("footage",),
              description="Pull of every step towards the footage frame (VQGAN-CLIP's init weight; 0: off)"),
    ),
    Setting(
        "init_space", "--init-space", "choice", "latent", choices=INIT_SPACES, group=_F, per_segment=True,
        key_group=_F, help="measure that pull on the frame's encoding (latent, VQGAN-CLIP's) or its pixels (%(default)s)",
        ui=UI("Pull In", when=("footage", "model"), section="footage", line="pull", bare=True, shown=("footage",),
              items={v: (v.title(), f"Measure the pull in {v} space") for v in INIT_SPACES}),
    ),
    Setting(
        "footage_blend", "--footage-blend", "float", 0.5, lo=0, hi=1, metavar="B", group=_F, per_segment=True,
        key_group=_F, key_name="blend", animatable=True,
        help="share of the previous generated image kept when an image starts; 0: restart from the footage "
        "frame, as VQGAN-CLIP's video styling (%(default)s)",
        ui=UI("Carry Over", subtype="FACTOR", when=("footage", "model"), section="footage", shown=("footage",),
              description="Share of the previous generated image kept when an image starts from its footage frame"),
    ),
    Setting(
        "zoom", "--zoom", "float", 0.0, lo=-0.9, hi=10, metavar="F", group=_M, per_segment=True, key_group=_M,
        key_via=True, animatable=True, preset="motion",
        help="zoom per beat at full onset strength (music) or per second (steady): 0.03 magnifies 3%%",
        ui=UI("Zoom", default_preset="musicvideo", when=("motion", "model"), section="motion", shown=("motion",),
              description="Zoom per beat at full onset strength (Music) or per second (Steady)"),
    ),
    Setting(
        "rotate", "--rotate", "float", 0.0, lo=-3600, hi=3600, metavar="DEG", group=_M, per_segment=True,
        key_group=_M, key_via=True, animatable=True, preset="motion",
        help="degrees per second at full intensity, counter-clockwise",
        ui=UI("Rotate", default_preset="musicvideo", when=("motion", "model"), section="motion", shown=("motion",),
              description="Degrees per second at full intensity, counter-clockwise"),
    ),
    Setting(
        "shift", "--shift", "float", (0.0, 0.0), lo=-1e5, hi=1e5, nargs=2, metavar=("DX", "DY"), group=_M,
        parts=("x", "y"), per_segment=True, key_group=_M, key_via=True, animatable=True, preset="motion",
        help="pixels per second at full intensity (x right, y up)",
        ui=UI("Shift", default_preset="musicvideo", when=("motion", "model"), section="motion", shown=("motion",),
              description="Pixels per second at full intensity (x right, y up)"),
    ),
    Setting(
        "motion_drive", "--motion-drive", "choice", "music", choices=MOTION_DRIVES, group=_M, per_segment=True,
        key_group=_M, key_via=True, preset="motion",
        help="music: zoom pulses on beats by onset strength, drift by segment intensity; steady: constant",
        ui=UI("Driven By", when=("motion", "model"), section="motion", shown=("motion",), items={
            "music": ("Music", "Zoom pulses on beats by onset strength, drift by segment intensity"),
            "steady": ("Steady", "The same motion everywhere"),
        }),
    ),
    # A matte: where the picture is generated. Timed as footage is (the same rule, its own offset, speed and span);
    # every row enters the keys through each image's processed matte (key group "matte"), never by value.
    Setting(
        "matte", "--matte", "path", None, metavar="MOVIE", group=_T, per_segment=True, key_group=_T, key_via=True,
        must_exist=True, help="a movie, picture or folder of pictures: white is generated, black keeps the footage "
        "frame (or is left empty)",
    ),
    Setting(
        "matte_offset", "--matte-offset", "float", 0.0, lo=-1e7, hi=1e7, metavar="S", group=_T, per_segment=True,
        key_group=_T, key_via=True, help="the matte's movie time (seconds) shown at song time 0 (%(default)s)",
    ),
    Setting(
        "matte_speed", "--matte-speed", "float", 1.0, lo=0, hi=1000, lo_open=True, metavar="X", group=_T,
        per_segment=True, key_group=_T, key_via=True, help="matte seconds per song second (%(default)s)",
    ),
    Setting(
        "matte_span", "--matte-span", "float", None, lo=-1e7, hi=1e7, nargs=2, metavar=("A", "B"), group=_T,
        parts=("start", "end"), increasing=True, per_segment=True, key_group=_T, key_via=True,
        help="song seconds where the matte applies (default: wherever it plays)",
    ),
    Setting(
        "matte_fps", "--matte-fps", "float", None, lo=0, hi=1000, lo_open=True, metavar="F", group=_T,
        per_segment=True, key_group=_T, key_via=True, help="frames per second of a matte that is a folder of pictures",
    ),
    Setting(
        "matte_channel", "--matte-channel", "choice", "luma", choices=MATTE_CHANNELS, group=_T, per_segment=True,
        key_group=_T, key_via=True, help="read the matte from its brightness or its alpha channel (%(default)s)",
        ui=UI("Matte From", when=("matte", "model"), section="matte", line="read", shown=("matte",), items={
            "luma": ("Brightness", "White is generated, black keeps the footage"),
            "alpha": ("Alpha", "The matte's own alpha channel (a movie or picture with alpha)"),
        }),
    ),
    Setting(
        "matte_invert", "--matte-invert", "bool", False, action="store_true", group=_T, per_segment=True,
        key_group=_T, key_via=True, help="generate where the matte is black instead",
        ui=UI("Invert", when=("matte", "model"), section="matte", line="read", shown=("matte",),
              description="Generate where the matte is black instead"),
    ),
    Setting(
        "matte_feather", "--matte-feather", "float", 0.0, lo=0, hi=1000, metavar="PX", group=_T, per_segment=True,
        key_group=_T, key_via=True, help="soften the matte's edge over about this many pixels (%(default)s)",
        ui=UI("Feather", soft_max=64.0, when=("matte", "model"), section="matte", shown=("matte",),
              description="Soften the matte's edge over about this many pixels of the frame"),
    ),
    Setting(
        "alpha", "--alpha", "choice", "none", choices=ALPHA_FRAMES, group=_T, needs="matte",
        help="matte: write RGBA frames whose alpha is the matte (straight alpha, for Alpha Over above the footage); "
        "none: opaque frames, the footage (or black) outside the matte (%(default)s)",
        ui=UI("Frames", default="matte", when=("matte", "model"), section="matte", shown=("matte",), items={
            "matte": ("With Alpha", "RGBA frames: the footage strip shows through where the matte is black"),
            "none": ("Opaque", "The footage frame (or black) painted in where the matte is black"),
        }),
    ),
    Setting(
        "precision", "--precision", "choice", "mixed", choices=PRECISIONS,
        help="mixed (default: CLIP in fp16 and TF32 on CUDA, CLIP and decoder in bf16 on a CPU with bf16 units) or fp32",
        ui=UI("Precision", when=("model",), section="look", items={
            "mixed": ("Mixed", "CLIP in half precision on a GPU, CLIP and decoder in bf16 on a CPU with bf16 units: faster"),
            "fp32": ("FP32", "Every step in 32-bit floats"),
        }),
    ),
    # ---------------------------------------------------------- job: how a render runs (frames do not change)
    Setting(
        "chains", "--chains", "int", None, lo=1, hi=100_000, metavar="N", scopes=("job",), group=_C,
        help="N chains, split at the N-1 cuts of strongest musical change (default: one, or the plan's marks)",
    ),
    Setting(
        "chain_at", "--chain-at", "times", None, metavar="T1,T2,...", scopes=("job",), group=_C,
        help="start chains at the cuts at these song seconds",
    ),
    Setting(
        "ray", "--ray", "str", None, nargs="?", const="local", metavar="ADDRESS", scopes=("job",), group=_C,
        help="render each chain as a Ray task: no address starts a local Ray instance; 'auto', 'host:port' or "
        "'ray://host:port' joins a running cluster",
    ),
    Setting(
        "ray_workers", "--ray-workers", "int", None, lo=1, hi=100_000, metavar="W", scopes=("job",), group=_C,
        help="Ray workers (default: one per GPU, else one per --ray-cpus CPUs)",
    ),
    Setting(
        "ray_cpus", "--ray-cpus", "int", 1, lo=1, hi=1024, metavar="C", scopes=("job",), group=_C,
        help="CPUs and torch threads per Ray worker without a GPU (%(default)s)",
    ),
    Setting(
        "snapshot_every", "--snapshot-every", "float", 15.0, lo=0, hi=86400, metavar="S", scopes=("job",),
        help="seconds of rendering between resume points (%(default)s)",
    ),
    Setting(
        "cache_cap_mb", "--cache-cap-mb", "float", None, lo=0, hi=1e9, metavar="MB", scopes=("job",),
        help="keep frames of earlier takes and edits up to this size (default: the render's own size, at least 1 GiB)",
    ),
    # ---------------------------------------------------------- the add-on's own (the engine never sees them)
    Setting("song_strip", None, "str", "", scopes=("addon",),
            ui=UI("Song Strip", description="Sound strip to use (empty: the active or only sound strip)")),
    Setting("lyrics_file", None, "path", "", scopes=("addon",),
            ui=UI("Lyrics", subtype="FILE_PATH", description="Timed lyrics: .lrc, .srt, .vtt or .csv")),
    Setting("output_dir", None, "path", "//m2v/", scopes=("addon",),
            ui=UI("Output", subtype="DIR_PATH", section="output",
                  description="Folder for plans, frames and the engine log")),
    Setting("channel", None, "int", 2, lo=1, hi=128, scopes=("addon",),
            ui=UI("Channel", section="output", line="strips",
                  description="Channel for the generated strips (or the next free one above)")),
    Setting("blend_type", None, "choice", "REPLACE", scopes=("addon",),
            choices=("REPLACE", "CROSS", "ALPHA_OVER", "ALPHA_UNDER", "ADD", "SUBTRACT", "MULTIPLY", "SCREEN",
                     "OVERLAY"),
            ui=UI("Blend", section="output", line="strips", bare=True)),
    Setting("opacity", None, "float", 1.0, lo=0, hi=1, scopes=("addon",),
            ui=UI("Opacity", subtype="FACTOR", section="output")),
    Setting("snap_cuts", None, "bool", True, scopes=("addon",),
            ui=UI("Snap Cuts to Beats",
                  description="Cuts move to the nearest beat of the last analysis (at Add Cut and at Render)")),
    Setting("footage_strip", None, "str", "", scopes=("addon",),
            ui=UI("Footage", description="Movie or image strip whose frames the generated images follow (empty: none)")),
    Setting("matte_strip", None, "str", "", scopes=("addon",),
            ui=UI("Matte", description="Movie or image strip that says where the picture is generated: white "
                  "generated, black the footage (empty: everywhere)")),
    Setting("use_motion", None, "bool", False, scopes=("addon",),
            ui=UI("Custom Motion", description="Set the motion here (else the preset's: Music Video moves)")),
    Setting("env_dir", None, "path", "", scopes=("addon",),
            ui=UI("Engine Environment", owner="preferences", subtype="DIR_PATH",
                  description="Folder of the managed Python environment (empty: the extension's user folder)")),
    Setting("models_dir", None, "path", "", scopes=("addon",),
            ui=UI("Models", owner="preferences", subtype="DIR_PATH",
                  description="Folder of the model files (empty: the extension's user folder)")),
    Setting("render_on", None, "choice", "LOCAL", choices=("LOCAL", "RAY"), scopes=("addon",),
            ui=UI("Render On", owner="preferences", items={
                "LOCAL": ("This Computer", "Render here, one latent chain after another"),
                "RAY": ("Ray Cluster", "Render the segments' latent chains at once on a Ray cluster (engine --ray)"),
            })),
    Setting("ray_address", None, "str", "", scopes=("addon",),
            ui=UI("Ray Address", owner="preferences",
                  description="'auto', 'host:port' or 'ray://host:port' of a running cluster; empty: a local Ray "
                  "instance")),
)


def animatable_targets(rows: tuple[Setting, ...]) -> dict[str, tuple[str, str]]:
    """``{identifier: (label, description)}`` of every value an editor can keyframe on the scene and bake music onto:
    the ``animatable`` rows the add-on shows on ``scene.m2v`` (a pair's parts as ``<name>_<part>``)."""
    out = {}
    for r in rows:
        if not r.animatable or r.ui is None or r.ui.owner != "scene":
            continue
        parts = [(f"{r.name}_{p}", f"{r.ui.label} {p.upper()}") for p in r.parts] if r.nargs == 2 else [(r.name, r.ui.label)]
        out.update({ident: (label, f"Keyframe {label} with the music") for ident, label in parts})
    return out


# ---------------------------------------------------------- the add-on's directing from the timeline (issue 27)
_TARGETS = animatable_targets(SETTINGS)
SETTINGS += (
    Setting("use_prompt_strips", None, "bool", False, scopes=("addon",),
            ui=UI("Prompts from Text Strips",
                  description="Text strips on the Prompt Channel guide the images in their span, as lyrics do")),
    Setting("prompt_channel", None, "int", 3, lo=1, hi=128, scopes=("addon",),
            ui=UI("Prompt Channel", description="Channel whose text strips are prompts (and where Lyrics to Text "
                  "Strips puts the lyrics)")),
    Setting("cut_channel", None, "int", 1, lo=1, hi=128, scopes=("addon",),
            ui=UI("Channel", description="Channel of your footage edit: each of its strips' starts and ends becomes "
                  "a cut")),
    Setting("cut_snap", None, "bool", False, scopes=("addon",),
            ui=UI("Snap to Beats", description="Move each new cut to the nearest beat of the last analysis (else "
                  "exactly on the strip cut)")),
    Setting("bake_target", None, "choice", "zoom", choices=tuple(_TARGETS), scopes=("addon",),
            ui=UI("Setting", items=_TARGETS, description="The setting the keyframes go on")),
    Setting("bake_signal", None, "choice", "intensity", choices=SIGNALS, scopes=("addon",),
            ui=UI("Signal", items={s: (SIGNAL_LABELS[s], f"The song's {SIGNAL_LABELS[s].lower()}") for s in SIGNALS},
                  description="What of the music the keys follow (0-1 over the song)")),
    Setting("bake_min", None, "float", 0.0, scopes=("addon",),
            ui=UI("Min", description="The setting's value where the signal is 0")),
    Setting("bake_max", None, "float", 1.0, scopes=("addon",),
            ui=UI("Max", description="The setting's value where the signal is 1")),
)


def by_name() -> dict[str, Setting]:
    return {s.name: s for s in SETTINGS}


def row(name: str) -> Setting:
    """The row called ``name``."""
    for s in SETTINGS:
        if s.name == name:
            return s
    raise KeyError(name)


def in_scope(*scopes: str) -> list[Setting]:
    """The rows of any of ``scopes``, in table order."""
    return [s for s in SETTINGS if any(sc in s.scopes for sc in scopes)]


def for_command(command: str) -> list[Setting]:
    """The rows whose flags ``command`` (analyze, plan, run, render) takes, in table order."""
    return [s for s in SETTINGS if command in s.takes]


def render_fields() -> list[tuple[str, object]]:
    """``RenderSettings``' fields and defaults, in order (a pair with ``fields`` gives one field each)."""
    return scope_fields("render")


def scope_fields(*scopes: str) -> list[tuple[str, object]]:
    """The fields and defaults the rows of ``scopes`` make, in order (a pair with ``fields`` gives one each)."""
    out = []
    for s in in_scope(*scopes):
        if s.fields:
            out += list(zip(s.fields, s.default))
        else:
            out.append((s.name, s.default))
    return out


def per_segment_fields() -> tuple[str, ...]:
    """Render settings that enter the cache keys per segment (as the footage frames and motion each segment uses)."""
    return tuple(f for s in in_scope("render") if s.per_segment for f in s.field_names)


def segment_defaults() -> dict[str, object]:
    """What every plan segment holds of the ``segment`` rows that enter its key, before any is set."""
    return {s.name: s.default for s in in_scope("segment") if s.per_segment}


def saved_names() -> dict[str, str]:
    """Field name -> its name in the manifest and the keys, where they differ."""
    return {s.name: s.saved_as for s in SETTINGS if s.saved_as}


def defaults(*scopes: str) -> dict[str, object]:
    """The default of every row of ``scopes`` (a pair with ``fields``: the pair)."""
    return {s.name: s.default for s in in_scope(*scopes)}


def preset_value(s: Setting, preset: str, presets: dict, motion_presets: dict, motion_off: dict):
    """What row ``s`` takes from ``preset`` where its flag is left out (the preset tables are the contract's).

    ``plan`` and ``look`` rows read ``presets[preset]``; ``motion`` rows ``motion_presets`` (``motion_off`` for a
    preset without motion).
    """
    if s.preset == "motion":
        return motion_presets.get(preset, motion_off)[s.name]
    return presets[preset][s.name]


def describe_preset(name: str, presets: dict, motion_presets: dict) -> str:
    """``paper (the paper's method as its text reads: beats, 10-120 steps/s, 512x512, 32 latest cutouts)``."""
    gist = PRESET_INFO[name][1]
    if name not in presets:
        return f"{name} ({gist})"
    p = presets[name]
    w, h = p["size"]
    text = (
        f"{name} ({p['granularity']}, {p['min_rate']:g}-{p['max_rate']:g} steps/s, {w}x{h}, "
        f"{p['cutouts']} {p['cutout_method']} cutouts"
    )
    m = motion_presets.get(name)
    if m:
        text += f", a {m['zoom']:g} zoom pulse a beat and {m['rotate']:g} deg/s drift"
    return text + ")"


def preset_item(name: str, presets: dict) -> tuple[str, str]:
    """``(label, description)`` of a preset for a menu: its gist and its numbers."""
    label, gist = PRESET_INFO[name]
    if name not in presets:
        return label, gist[:1].upper() + gist[1:]
    p = presets[name]
    w, h = p["size"]
    cut = "every beat" if p["granularity"] == "beats" else "scene changes"
    return label, f"{gist[:1].upper() + gist[1:]}: {cut}, {p['min_rate']:g}-{p['max_rate']:g} steps/s, {w}x{h}"


def format_value(s: Setting, value) -> list[str]:
    """The flag's value as command-line words (floats as ``repr``, so nothing is rounded)."""
    if s.type == "times":
        return [",".join(repr(float(v)) for v in value)]
    values = list(value) if s.nargs == 2 else [value]
    conv = {"int": lambda v: str(int(v)), "float": lambda v: repr(float(v))}.get(s.type, str)
    return [conv(v) for v in values]


def flag_words(s: Setting, value) -> list[str]:
    """``[flag, value...]`` for one setting (a switch: the flag alone when it differs from the default; a flag whose
    value may be left out: the flag alone for its ``const``)."""
    if s.action:
        return [s.flag] if bool(value) != bool(s.default) else []
    if s.nargs == "?" and value == s.const:
        return [s.flag]
    return [s.flag, *format_value(s, value)]


#: Defaults of the analysis settings no preset changes (the plan builder's keyword defaults).
ANALYSIS_DEFAULTS = {s.name: s.default for s in in_scope("plan", "scenes") if s.default is not None and not s.choices}
