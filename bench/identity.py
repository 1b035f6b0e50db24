"""Byte-identity check of a restructuring: every frame, key, journal and resume point, before and after.

Renders a fixed set of small jobs through the engine's own command line (fresh processes, the small
random-weight models of ``tests/small_models.py``, one torch thread as each Ray worker has) and writes a
digest of what each one left: every frame's SHA-256, the manifest's keys and the manifest itself, the
journal and the resume points a kill left behind, the plans ``analyze`` and ``plan`` wrote, and the
events a render printed (times and paths taken out). Run it on two commits and compare:

    .venv/bin/python bench/identity.py --out before.json
    .venv/bin/python bench/identity.py --out after.json --compare before.json

The jobs: two analyses and a plan (scopes: analysis, plan), a plain render with non-default render flags,
a layout preview, the song in three chains here (``--chain-at``), the same chains on a local Ray instance
(``ray.init(num_cpus=2)``, two workers), a footage + motion render (the round-trip VQGAN), and two renders
SIGKILLed at a write point (``M2V_FAULT``) and resumed, with and without resume points. The script uses
only the command line and the tests' model and media writers, so it runs unchanged on older commits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Event fields that depend on the clock, the process or the machine, not on what was rendered.
VOLATILE = {"t", "eta_s", "load_s", "pid", "node", "startup_s", "device", "address"}
BOUNDS = "0,1.5,3,4.5,6,8"
MTIME_NS = 1_700_000_000_000_000_000
SETTINGS_DOC = {
    "kind": "m2v-segment-settings",
    "version": 1,
    "segments": [{"start": 1.5, "prompt": "a lighthouse", "prompt_weight": 0.6}, {"start": 4.5, "take": 2}],
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Job:
    """One scratch folder, the models in it, and the commands run there."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", M2V_CACHE=str(work / "cache"))
        self.env.pop("M2V_FAULT", None)

    def norm(self, obj):
        """``obj`` with this run's scratch folder replaced by ``<work>`` (so two runs compare)."""
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False)
        for root in {str(self.work), str(self.work.resolve())}:
            text = text.replace(root, "<work>")
        return json.loads(text)

    def engine(self, *args: str, fault: str | None = None, expect: int | None = 0) -> subprocess.CompletedProcess:
        env = dict(self.env, **({"M2V_FAULT": fault} if fault else {}))
        proc = subprocess.run(
            [sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
        )
        if expect is not None and proc.returncode != expect:
            raise SystemExit(
                f"engine {' '.join(args[:2])}: exit {proc.returncode}, not {expect}\n{proc.stderr[-3000:]}"
            )
        return proc

    def events(self, stdout: str, ordered: bool = True) -> list:
        out = []
        for line in stdout.splitlines():
            if line.startswith("{"):
                ev = {k: v for k, v in json.loads(line).items() if k not in VOLATILE}
                out.append(self.norm(ev))
        return out if ordered else sorted(out, key=lambda e: json.dumps(e, sort_keys=True))

    def folder(self, out: Path) -> dict:
        """What a render folder holds: frames, the manifest (keys first), the journal, the resume points."""
        d: dict = {}
        m = out / "manifest.json"
        if m.exists():
            doc = self.norm(json.loads(m.read_text(encoding="utf-8")))
            d["keys"] = [s["key"] for s in doc.get("segments", [])]
            d["status"] = doc.get("status")
            d["settings"] = doc.get("settings")
            d["manifest"] = sha(json.dumps(doc, sort_keys=True).encode())
        j = out / "frames.jsonl"
        if j.exists():
            d["journal"] = [self.norm(json.loads(line)) for line in j.read_text(encoding="utf-8").splitlines()]
        d["frames"] = {str(p.relative_to(out)): sha(p.read_bytes()) for p in sorted(out.glob("seg_*/*.png"))}
        d["resume"] = {p.name: sha(p.read_bytes()) for p in sorted((out / "state").glob("*.pt"))}
        return d


def setup(job: Job) -> dict:
    """The song, lyrics, segment settings, models and movie every job shares."""
    import soundfile as sf

    from engine.analysis.synth import Section, synth_song
    from tests.footage_media import write_movie
    from tests.small_models import write_all

    w = job.work
    s = synth_song([Section(4, 120, "rock", "soft", 0.3), Section(4, 120, "metal", "bright", 0.9)], seed=5)
    sf.write(w / "song.wav", s.y, s.sr)
    (w / "song.lrc").write_text("[00:03.10]a glass lighthouse\n[00:05.00]over the sea\n", encoding="utf-8")
    (w / "settings.json").write_text(json.dumps(SETTINGS_DOC), encoding="utf-8")
    write_movie(w / "movie.mp4", 300)
    out = {"models": write_all(w / "models"), "rt_models": write_all(w / "rt_models", roundtrip=True)}
    # The keys hold each model file's name, size and modification time: fixed, so two runs compare.
    for folder in out.values():
        for p in folder.rglob("*"):
            if p.is_file():
                os.utime(p, ns=(MTIME_NS, MTIME_NS))
    return out


def model_flags(folder: Path) -> list[str]:
    from tests.small_models import model_args

    return model_args(folder)


COMMON = ["--size", "32", "32", "--cutouts", "4", "--seed", "3", "--lr", "0.3", "--cut-method", "crops"]


def run_all(job: Job, only: set[str] | None) -> dict:
    w = job.work
    paths = setup(job)
    models, rt = model_flags(paths["models"]), model_flags(paths["rt_models"])
    song, lrc = str(w / "song.wav"), str(w / "song.lrc")
    res: dict = {}

    def want(name: str) -> bool:
        return only is None or name in only

    def render(name: str, plan: Path, *flags: str, fault: str | None = None, expect: int = 0):
        out = w / name
        proc = job.engine("render", str(plan), "--out", str(out), *flags, fault=fault, expect=expect)
        return out, proc

    # ---------------------------------------------------------------- analysis and plan scopes
    if want("analyze"):
        a = job.engine(
            "analyze",
            song,
            "--lyrics",
            lrc,
            "--preset",
            "draft",
            "--min-length",
            "1.5",
            "--target-length",
            "3",
            "--no-estimate",
            "-o",
            str(w / "a1.json"),
        )
        b = job.engine(
            "analyze",
            song,
            "--preset",
            "draft",
            "--granularity",
            "beats",
            "--intensity",
            "authors",
            "--min-rate",
            "3",
            "--max-rate",
            "9",
            "--fps",
            "6",
            "--no-estimate",
            "-o",
            str(w / "a2.json"),
        )
        res["analyze"] = {
            "scenes": job.norm(json.loads((w / "a1.json").read_text())),
            "beats_authors": job.norm(json.loads((w / "a2.json").read_text())),
            "stderr": [a.stderr.splitlines()[:3], b.stderr.splitlines()[:3]],
        }
    job.engine(
        "plan",
        song,
        "--boundaries",
        BOUNDS,
        "--preset",
        "draft",
        "--lyrics",
        lrc,
        "--min-rate",
        "4",
        "--max-rate",
        "4",
        "--fps",
        "2",
        "--segment-settings",
        str(w / "settings.json"),
        "--no-estimate",
        "-o",
        str(w / "plan.json"),
    )
    plan = w / "plan.json"
    res["plan"] = job.norm(json.loads(plan.read_text()))
    job.engine(
        "plan",
        song,
        "--boundaries",
        "0,1.5,3",
        "--preset",
        "draft",
        "--min-rate",
        "4",
        "--max-rate",
        "8",
        "--fps",
        "4",
        "--no-estimate",
        "-o",
        str(w / "plan_fm.json"),
    )

    # ---------------------------------------------------------------- renders
    if want("plain"):
        flags = (
            "--style",
            "oil painting",
            "--style-weight",
            "0.3",
            "--l1-weight",
            "0.2",
            "--no-prompt-average",
            "--snapshot-every",
            "0",
        )
        out, proc = render("plain", plan, *COMMON, *flags, *models)
        res["plain"] = {**job.folder(out), "events": job.events(proc.stdout)}
    if want("layout"):
        out, proc = render("layout", plan, "--layout", "--size", "48", "32")
        res["layout"] = {**job.folder(out), "events": job.events(proc.stdout)}
    if want("chains"):
        out, proc = render("chains", plan, *COMMON, "--chain-at", "3,6", "--snapshot-every", "0", *models)
        res["chains"] = {**job.folder(out), "events": job.events(proc.stdout)}
        out, proc = render(
            "chains2", plan, *COMMON, "--chains", "2", "--precision", "fp32", "--snapshot-every", "1000", *models
        )
        res["chains_n"] = {**job.folder(out), "events": job.events(proc.stdout)}
    if want("ray"):
        import ray

        # Token authentication reads a token file shared by every Ray on the machine: off for this local instance.
        os.environ["RAY_AUTH_MODE"] = job.env["RAY_AUTH_MODE"] = "disabled"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            address = ray.get_runtime_context().gcs_address
            out, proc = render(
                "ray",
                plan,
                *COMMON,
                "--chain-at",
                "3,6",
                "--snapshot-every",
                "0",
                "--ray",
                address,
                "--ray-workers",
                "2",
                *models,
            )
        finally:
            ray.shutdown()
        ev = job.events(proc.stdout, ordered=False)
        # Which worker sends which chain first, and so the counts in image events, depend on timing.
        stable = [e for e in ev if e["event"] not in ("image", "segment_end", "chain_start", "chain_end")]
        res["ray"] = {
            **job.folder(out),
            "events": stable,
            "images": sorted([e["segment"], e["index"], e["file"]] for e in ev if e["event"] == "image"),
        }
    if want("footage"):
        flags = (
            "--footage",
            str(w / "movie.mp4"),
            "--footage-offset",
            "0.5",
            "--footage-span",
            "0.7",
            "3.0",
            "--footage-blend",
            "0.4",
            "--init-weight",
            "1",
            "--zoom",
            "0.2",
            "--rotate",
            "8",
            "--shift",
            "2",
            "-1",
            "--snapshot-every",
            "0",
        )
        out, proc = render("footage", w / "plan_fm.json", *COMMON, *flags, *rt)
        res["footage"] = {**job.folder(out), "events": job.events(proc.stdout)}
        out, proc = render(
            "musicvideo",
            w / "plan_fm.json",
            *COMMON,
            "--preset",
            "musicvideo",
            "--init-space",
            "pixel",
            "--footage",
            str(w / "movie.mp4"),
            "--init-weight",
            "2",
            "--snapshot-every",
            "0",
            *rt,
        )
        res["musicvideo"] = {**job.folder(out), "events": job.events(proc.stdout)}
    if want("killed"):
        for name, every, fault in (
            ("killed_replay", "1000", "frame.renamed:6"),
            ("killed_points", "0", "journal.appended:7"),
        ):
            out, proc = render(name, plan, *COMMON, "--snapshot-every", every, *models, fault=fault, expect=-9)
            at_kill = {**job.folder(out), "events": job.events(proc.stdout)}
            out, proc = render(name, plan, *COMMON, "--snapshot-every", every, *models)
            res[name] = {"at_kill": at_kill, "resumed": {**job.folder(out), "events": job.events(proc.stdout)}}
    return res


def differences(a, b, where: str = "") -> list[str]:
    """Where two digests differ (paths into the JSON)."""
    if type(a) is not type(b):
        return [f"{where}: {str(a)[:120]} != {str(b)[:120]}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'after' if k not in a else 'before'}")
            else:
                out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"] + differences(a[: len(b)], b[: len(a)], where)
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:120]} != {str(b)[:120]}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="write the digest here (JSON)")
    ap.add_argument("--compare", help="a digest from another commit: list every difference, exit 1 if any")
    ap.add_argument("--only", help="comma-separated jobs: analyze, plain, layout, chains, ray, footage, killed")
    ap.add_argument("--keep", help="render in this folder and keep it (default: a temporary folder)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    t0 = time.monotonic()
    if args.keep:
        work = Path(args.keep).resolve()
        work.mkdir(parents=True, exist_ok=False)
        res = run_all(Job(work), only)
    else:
        with tempfile.TemporaryDirectory(prefix="m2v-identity-") as d:
            res = run_all(Job(Path(d)), only)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    doc = {"commit": commit.stdout.strip(), "jobs": res}
    Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    n = sum(
        len(j.get("frames", {})) + len(j.get("resumed", {}).get("frames", {}))
        for j in res.values()
        if isinstance(j, dict)
    )
    print(f"{len(res)} jobs, {n} frames, {time.monotonic() - t0:.0f} s -> {args.out}")
    if args.compare:
        before = json.loads(Path(args.compare).read_text(encoding="utf-8"))["jobs"]
        diff = differences({k: before[k] for k in res if k in before}, res)
        missing = sorted(set(before) - set(res)) if only is None else []
        for line in diff:
            print("DIFFERS", line)
        for k in missing:
            print("MISSING", k)
        print("IDENTICAL" if not diff and not missing else f"{len(diff)} differences")
        return 1 if diff or missing else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
