"""Every setting a user controls, as data: one row each, read by the engine and by the add-on.

A row says the setting's name, its flag, its type, default, range or
choices, where it belongs (which commands take it, whether it enters
:class:`engine.render.jobs.loop.RenderSettings` and the cache keys, whether per
segment), its help text, and how the add-on shows it (its property, the
add-on's own limits where they differ, and when the add-on passes the flag).
From these rows come the engine's flags (``engine.cli.parser``), their
checks (``engine.settings_check``), ``RenderSettings`` and
``settings_from_args`` (``engine.render.jobs.loop``, ``engine.cli.commands``), and the add-on's
properties and the flags it passes (``m2v_blender.properties``,
``m2v_blender.commands``). Adding a setting is adding a row.

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

# ---------------------------------------------------------------- scopes

#: Which commands take a row's flag. ``plan``: analyze, plan and run (the rates); ``scenes``: analyze and run
#: (where cuts go); ``render``: render and run, a field of ``RenderSettings`` (recorded in the manifest, in
#: the cache keys); ``job``: render and run, how the job runs (not recorded, frames do not depend on it).
SCOPE_COMMANDS = {
    "plan": ("analyze", "plan", "run"),
    "scenes": ("analyze", "run"),
    "render": ("render", "run"),
    "job": ("render", "run"),
}
#: Argument groups of ``--help``: title and description.
GROUPS = {
    "footage": ("footage styling", "each image starts from, and is pulled towards, a footage frame"),
    "motion": ("motion", "move the previous image before each image's steps (off, except in the musicvideo preset)"),
    "chains": (
        "chains and Ray", "split the song into independent latent chains and render them at once on a Ray cluster"
    ),
}


@dataclass(frozen=True)
class UI:
    """How the add-on shows a setting and when it passes the flag.

    ``props``: the property names (default: the setting's name; two for ``--size``). ``lo``/``hi``: the
    add-on's own limits where they differ from the engine's (``None``: the engine's). ``default``: the
    add-on's default where it differs; ``default_preset``: take it from that preset instead. ``items``:
    ``{choice: (label, description)}``. ``when``: the conditions for passing the flag, all of them:
    ``custom`` (the Custom preset), ``footage`` (a footage strip is set), ``motion`` (Custom Motion is on),
    ``given`` (a non-empty value), ``model`` (not a layout preview). ``owner``: ``scene`` (``scene.m2v``)
    or ``preferences`` (the add-on's preferences, e.g. the device).
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
    when: tuple[str, ...] = ()
    owner: str = "scene"


@dataclass(frozen=True)
class Setting:
    """One setting. ``type``: ``int``, ``float``, ``str``, ``bool`` or ``choice``; ``nargs`` 2 for a pair
    (``--size W H``), ``"?"`` for a flag whose value may be left out (then ``const``). ``fields``: the
    ``RenderSettings`` fields a pair fills when they are not one tuple field (``--size``: width, height).
    ``record``: the name in the manifest and the cache keys where it differs (they are a file format).
    ``preset``: where a flag left out takes the preset's value: ``plan`` (the plan builder), ``look``
    (``PRESETS``) or ``motion`` (``MOTION_PRESETS``), see ``engine.plan.presets``.
    ``action``: ``store_true``/``store_false`` for a bool switch (the flag is then the switch). ``parts``: how
    messages name a pair's two values (``--size width``). For example ``--ray [ADDRESS]`` is ``Setting("ray", "--ray",
    "str", None, nargs="?", const="local", scopes=("job",))``, an analysis choice ``--intensity paper|authors``
    is ``Setting("intensity", "--intensity", "choice", "paper", choices=(...), scopes=("plan",))``.
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
    group: str | None = None
    per_segment: bool = False
    preset: str | None = None
    action: str | None = None
    aliases: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    record: str | None = None
    ui: UI | None = None

    @property
    def integer(self) -> bool:
        return self.type == "int"

    @property
    def label(self) -> str:
        """How messages name it: its flag (or its name for a setting without one)."""
        return self.flag or self.name.replace("_", " ")

    @property
    def record_name(self) -> str:
        return self.record or self.name

    @property
    def field_names(self) -> tuple[str, ...]:
        return self.fields or (self.name,)

    @property
    def prop_names(self) -> tuple[str, ...]:
        return (self.ui.props or self.field_names) if self.ui else ()


_F = "footage"
_M = "motion"

SETTINGS: tuple[Setting, ...] = (
    # ---------------------------------------------------------- analysis
    Setting(
        "preset", "--preset", "choice", "auto", choices=PRESET_CHOICES, scopes=("plan", "job"),
        help="paper: the paper's method as its text reads; draft: a fast preview; musicvideo: paper with motion "
        "that follows the music; auto: paper on a GPU, draft on a CPU (render: the plan's preset first) (%(default)s)",
    ),
    Setting(
        "min_rate", "--min-rate", "float", None, preset="plan", lo=0, hi=1000, lo_open=True, scopes=("plan",),
        help="optimisation steps per second of music in the quietest segment (paper 10, draft 2)",
        ui=UI("Min Rate", lo=0.1, default_preset="draft", when=("custom",),
              description="Optimisation steps per second of music in the quietest segment"),
    ),
    Setting(
        "max_rate", "--max-rate", "float", None, preset="plan", lo=0, hi=1000, lo_open=True, scopes=("plan",),
        help="steps per second in the loudest segment (paper 120, draft 8)",
        ui=UI("Max Rate", lo=0.1, default_preset="draft", when=("custom",),
              description="Optimisation steps per second in the loudest segment"),
    ),
    Setting(
        "intensity", "--intensity", "choice", "paper", choices=INTENSITIES, scopes=("plan",),
        help="a segment's intensity, which sets its steps per second: paper, its mean level in dB against the "
        "song's range (the paper's text); authors, its peak of the song's normalised mel power with whole steps, "
        "as the authors' code computes it (%(default)s)",
        ui=UI("Intensity", items={
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
        ui=UI("Cut At", default_preset="draft", when=("custom",), items={
            "scenes": ("Scene Changes", "Cut where the music changes most"),
            "beats": ("Every Beat", "One segment per beat, as in the paper"),
        }),
    ),
    Setting(
        "min_length", "--min-length", "float", 3.0, lo=0, hi=3600, lo_open=True, scopes=("scenes",),
        help="shortest scene in seconds (%(default)s)",
        ui=UI("Min Length", lo=0.5, soft_max=30.0, unit="TIME_ABSOLUTE", description="Shortest scene (seconds)"),
    ),
    Setting(
        "target_length", "--target-length", "float", 8.0, lo=0, hi=3600, lo_open=True, scopes=("scenes",),
        help="target mean scene length in seconds (%(default)s)",
        ui=UI("Target Length", lo=0.5, soft_max=60.0, unit="TIME_ABSOLUTE",
              description="Target mean scene length (seconds)"),
    ),
    # ---------------------------------------------------------- render: RenderSettings, in this order (the keys)
    Setting(
        "size", "--size", "int", (512, 512), lo=16, hi=8192, nargs=2, metavar=("W", "H"), preset="look",
        fields=("width", "height"), parts=("width", "height"), help="image size in pixels (paper 512 512, draft 256 256)",
        ui=UI("Size", props=("width", "height"), hi=4096, step=16, default_preset="draft", when=("custom",)),
    ),
    Setting(
        "cutouts", "--cutouts", "int", 32, lo=1, hi=1024, preset="look", help="paper and draft: 32",
        ui=UI("Cutouts", hi=256, default_preset="draft", when=("custom",)),
    ),
    Setting(
        "cutout_method", "--cutout-method", "choice", "latest", choices=CUTOUT_METHODS, preset="look",
        aliases=("--cut-method",), record="cut_method", help="latest (the authors', paper) or crops (draft)",
        ui=UI("Cutout Method", props=("cut_method",), default_preset="draft", when=("custom",)),
    ),
    Setting("cutout_pow", None, "float", 1.0, lo=0, hi=10, lo_open=True, record="cut_pow"),
    Setting("lr", "--lr", "float", 0.1, lo=0, hi=10, lo_open=True, preset="look", help="Adam step size (0.1)"),
    Setting(
        "seed", "--seed", "int", 0, lo=0, hi=(1 << 63) - 1, help="fixes every random draw (%(default)s)",
        ui=UI("Seed", hi=(1 << 31) - 1),
    ),
    Setting(
        "style", "--style", "str", None, help="a text style prompt for the whole song, e.g. 'oil painting'",
        ui=UI("Style", default="", when=("given", "model"),
              description="Optional text style prompt for the whole song, e.g. 'oil painting'"),
    ),
    Setting("style_weight", "--style-weight", "float", 0.5, lo=0, hi=100, help="weight of --style (%(default)s)"),
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
        "footage", "--footage", "str", None, metavar="MOVIE", group=_F, per_segment=True,
        help="a movie, a still image, or a folder of images (a sequence)",
    ),
    Setting(
        "footage_offset", "--footage-offset", "float", 0.0, lo=-1e7, hi=1e7, metavar="S", group=_F, per_segment=True,
        help="the movie time (seconds) shown at song time 0 (%(default)s)",
    ),
    Setting(
        "footage_speed", "--footage-speed", "float", 1.0, lo=0, hi=1000, lo_open=True, metavar="X", group=_F,
        per_segment=True, help="movie seconds per song second (%(default)s)",
    ),
    Setting(
        "footage_span", "--footage-span", "float", None, lo=-1e7, hi=1e7, nargs=2, metavar=("A", "B"), group=_F, parts=("start", "end"),
        per_segment=True, help="song seconds where the footage is visible (default: wherever the movie plays)",
    ),
    Setting(
        "footage_fps", "--footage-fps", "float", None, lo=0, hi=1000, lo_open=True, metavar="F", group=_F,
        per_segment=True, help="frames per second of an image-sequence folder",
    ),
    Setting(
        "init_weight", "--init-weight", "float", 0.0, lo=0, hi=1e6, metavar="W", group=_F, per_segment=True,
        help="L2 pull of each step towards the footage frame, as VQGAN-CLIP's --init_weight (%(default)s: off)",
        ui=UI("Init Weight", soft_max=1000.0, when=("footage", "model"),
              description="Pull of every step towards the footage frame (VQGAN-CLIP's init weight; 0: off)"),
    ),
    Setting(
        "init_space", "--init-space", "choice", "latent", choices=INIT_SPACES, group=_F, per_segment=True,
        help="measure that pull on the frame's encoding (latent, VQGAN-CLIP's) or its pixels (%(default)s)",
        ui=UI("Pull In", when=("footage", "model"),
              items={v: (v.title(), f"Measure the pull in {v} space") for v in INIT_SPACES}),
    ),
    Setting(
        "footage_blend", "--footage-blend", "float", 0.5, lo=0, hi=1, metavar="B", group=_F, per_segment=True,
        help="share of the previous generated image kept when an image starts; 0: restart from the footage "
        "frame, as VQGAN-CLIP's video styling (%(default)s)",
        ui=UI("Carry Over", subtype="FACTOR", when=("footage", "model"),
              description="Share of the previous generated image kept when an image starts from its footage frame"),
    ),
    Setting(
        "zoom", "--zoom", "float", 0.0, lo=-0.9, hi=10, metavar="F", group=_M, per_segment=True, preset="motion",
        help="zoom per beat at full onset strength (music) or per second (steady): 0.03 magnifies 3%%",
        ui=UI("Zoom", default_preset="musicvideo", when=("motion", "model"),
              description="Zoom per beat at full onset strength (Music) or per second (Steady)"),
    ),
    Setting(
        "rotate", "--rotate", "float", 0.0, lo=-3600, hi=3600, metavar="DEG", group=_M, per_segment=True,
        preset="motion", help="degrees per second at full intensity, counter-clockwise",
        ui=UI("Rotate", default_preset="musicvideo", when=("motion", "model"),
              description="Degrees per second at full intensity, counter-clockwise"),
    ),
    Setting(
        "shift", "--shift", "float", (0.0, 0.0), lo=-1e5, hi=1e5, nargs=2, metavar=("DX", "DY"), group=_M, parts=("x", "y"),
        per_segment=True, preset="motion", help="pixels per second at full intensity (x right, y up)",
        ui=UI("Shift", default_preset="musicvideo", when=("motion", "model"), description="Pixels per second at full intensity (x right, y up)"),
    ),
    Setting(
        "motion_drive", "--motion-drive", "choice", "music", choices=MOTION_DRIVES, group=_M, per_segment=True,
        preset="motion",
        help="music: zoom pulses on beats by onset strength, drift by segment intensity; steady: constant",
        ui=UI("Driven By", when=("motion", "model"), items={
            "music": ("Music", "Zoom pulses on beats by onset strength, drift by segment intensity"),
            "steady": ("Steady", "The same motion everywhere"),
        }),
    ),
    Setting(
        "precision", "--precision", "choice", "mixed", choices=PRECISIONS,
        help="mixed (default: CLIP in fp16 and TF32 on CUDA, CLIP and decoder in bf16 on a CPU with bf16 units) or fp32",
        ui=UI("Precision", when=("model",), items={
            "mixed": ("Mixed", "CLIP in half precision on a GPU, CLIP and decoder in bf16 on a CPU with bf16 units: faster"),
            "fp32": ("FP32", "Every step in 32-bit floats"),
        }),
    ),
    # ---------------------------------------------------------- job: how a render runs (frames do not change)
    Setting(
        "chains", "--chains", "int", None, lo=1, hi=100_000, metavar="N", scopes=("job",), group="chains",
        help="N chains, split at the N-1 cuts of strongest musical change (default: one, or the plan's marks)",
    ),
    Setting(
        "chain_at", "--chain-at", "str", None, metavar="T1,T2,...", scopes=("job",), group="chains",
        help="start chains at the cuts at these song seconds",
    ),
    Setting(
        "ray", "--ray", "str", None, nargs="?", const="local", metavar="ADDRESS", scopes=("job",), group="chains",
        help="render each chain as a Ray task: no address starts a local Ray instance; 'auto', 'host:port' or "
        "'ray://host:port' joins a running cluster",
    ),
    Setting(
        "ray_workers", "--ray-workers", "int", None, lo=1, hi=100_000, metavar="W", scopes=("job",), group="chains",
        help="Ray workers (default: one per GPU, else one per --ray-cpus CPUs)",
    ),
    Setting(
        "ray_cpus", "--ray-cpus", "int", 1, lo=1, hi=1024, metavar="C", scopes=("job",), group="chains",
        help="CPUs and torch threads per Ray worker without a GPU (%(default)s)",
    ),
    Setting(
        "snapshot_every", "--snapshot-every", "float", None, lo=0, hi=86400, metavar="S", scopes=("job",),
        help="seconds of rendering between resume points (default 15)",
    ),
    Setting(
        "cache_cap_mb", "--cache-cap-mb", "float", None, lo=0, hi=1e9, metavar="MB", scopes=("job",),
        help="keep frames of earlier takes and edits up to this size (default: the render's own size, at least 1 GiB)",
    ),
)


def by_name() -> dict[str, Setting]:
    return {s.name: s for s in SETTINGS}


def in_scope(*scopes: str) -> list[Setting]:
    """The rows of any of ``scopes``, in table order."""
    return [s for s in SETTINGS if any(sc in s.scopes for sc in scopes)]


def for_command(command: str) -> list[Setting]:
    """The rows whose flags ``command`` (analyze, plan, run, render) takes, in table order."""
    return [s for s in SETTINGS if s.flag and any(command in SCOPE_COMMANDS[sc] for sc in s.scopes)]


def render_fields() -> list[tuple[str, object]]:
    """``RenderSettings``' fields and defaults, in order (a pair with ``fields`` gives one field each)."""
    out = []
    for s in in_scope("render"):
        if s.fields:
            out += list(zip(s.fields, s.default))
        else:
            out.append((s.name, s.default))
    return out


def per_segment_fields() -> tuple[str, ...]:
    """Settings that enter the cache keys per segment (as the footage frames and motion each segment uses)."""
    return tuple(f for s in in_scope("render") if s.per_segment for f in s.field_names)


def record_names() -> dict[str, str]:
    """Field name -> its name in the manifest and the keys, where they differ."""
    return {s.name: s.record for s in SETTINGS if s.record}


def defaults(*scopes: str) -> dict[str, object]:
    """The default of every row of ``scopes`` (a pair with ``fields``: the pair)."""
    return {s.name: s.default for s in in_scope(*scopes)}


def format_value(s: Setting, value) -> list[str]:
    """The flag's value as command-line words (floats as ``repr``, so nothing is rounded)."""
    values = list(value) if s.nargs == 2 else [value]
    conv = {"int": lambda v: str(int(v)), "float": lambda v: repr(float(v))}.get(s.type, str)
    return [conv(v) for v in values]


def flag_words(s: Setting, value) -> list[str]:
    """``[flag, value...]`` for one setting (a switch: the flag alone when it differs from the default)."""
    if s.action:
        return [s.flag] if bool(value) != bool(s.default) else []
    return [s.flag, *format_value(s, value)]


#: Defaults of the analysis settings no preset changes (the plan builder's keyword defaults).
ANALYSIS_DEFAULTS = {s.name: s.default for s in in_scope("plan", "scenes") if s.default is not None and not s.choices}
