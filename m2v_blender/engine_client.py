"""Running the engine as a subprocess and reading its events: plain Python, no bpy.

Blender's process never imports torch: the engine runs in the managed
environment's interpreter (``python -m engine --events ...``, an argument
list, never a shell string). A reader thread only moves stdout lines into a
queue; :meth:`EngineJob.pump` — called from a timer with a window, or in a
loop in background mode, always on Blender's main thread — turns them into
events checked against the engine's protocol. Errors reach the add-on one
way: the engine's ``error`` event.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from .contract import engine_root, protocol
from .errors import M2VError
from .outputs import open_log

_RUNNING: set[EngineJob] = set()


def env_python(env_dir: str | Path) -> Path:
    env_dir = Path(env_dir)
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class EngineJob:
    """One engine command (or several run one after another) and its events.

    Parameters
    ----------
    python : str or Path
        The managed environment's interpreter.
    commands : list of list of str
        Engine arguments per command (after ``-m engine --events``); the next starts when one exits 0.
    log_path : Path
        Where stderr goes (people read it; the add-on never parses it).
    module : bool
        False: each command is a script and its arguments (the installer), not engine arguments.
    before_step : callable, optional
        ``before_step(job, step)`` runs (in :meth:`pump`, on the caller's thread) before command ``step`` (1 on)
        starts: what the next command needs from the one before (the Render's curves need the plan's images).
        It may change ``job.commands[step]``; an :class:`M2VError` ends the job with that error (exit code 2).
    """

    def __init__(
        self,
        python: str | Path,
        commands: list[list[str]],
        log_path: Path,
        env: dict | None = None,
        module: bool = True,
        before_step=None,
    ):
        self.module = module
        self.before_step = before_step
        self.python = str(python)
        self.commands = list(commands)
        self.log_path = Path(log_path)
        self.env = env
        self.proc: subprocess.Popen | None = None
        #: What the registry feeds this job's events to (``registry.track``).
        self.handler = None
        self.queue: queue.Queue = queue.Queue()
        self.returncode: int | None = None
        self.finished = False
        self.cancelled = False
        self.events: list[dict] = []
        self.error: str | None = None
        self._log = None
        self._step = 0

    def start(self) -> EngineJob:
        if not Path(self.python).exists():
            raise M2VError(
                f"the engine's Python was not found at {self.python}: press Install Engine in the add-on preferences"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open_log(self.log_path)  # closed when the job ends
        self._launch()
        _RUNNING.add(self)
        return self

    def _launch(self) -> None:
        root = engine_root()
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        args = [
            self.python,
            *(["-m", "engine", protocol.EVENTS_FLAG] if self.module else []),
            *self.commands[self._step],
        ]
        self._log.write(f"\n$ {' '.join(args)}\n")
        self._log.flush()
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        self.proc = subprocess.Popen(
            args,
            cwd=str(root),
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            creationflags=flags,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def _parse(self, line: str) -> dict:
        if self.module:
            try:
                ev = protocol.check_event(json.loads(line))
            except ValueError:
                return {"event": protocol.CLIENT_OUTPUT, "text": line}
            if ev["event"] == "error":
                self.error = ev["message"]
            return ev
        if line.startswith("error:"):
            self.error = line[len("error:") :].strip()
        return {"event": protocol.CLIENT_OUTPUT, "text": line}

    def pump(self) -> list[dict]:
        """Events printed since the last call; advances to the next command or finishes."""
        new = []
        while True:
            try:
                line = self.queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.proc.wait()
                code = self.proc.returncode
                if code == protocol.EXIT_OK and self._step + 1 < len(self.commands) and not self.cancelled:
                    self._step += 1
                    try:
                        if self.before_step is not None:
                            self.before_step(self, self._step)
                    except M2VError as e:
                        self.error = str(e)
                        code = protocol.EXIT_INPUT
                    else:
                        self._launch()
                        continue
                self._finish(code)
                new.append({"event": protocol.CLIENT_EXIT, "code": code})
                break
            line = line.strip()
            if line:
                new.append(self._parse(line))
        self.events.extend(new)
        return new

    def _finish(self, code: int) -> None:
        self.returncode = code
        self.finished = True
        if self._log:
            self._log.close()
        _RUNNING.discard(self)
        if code not in (protocol.EXIT_OK, protocol.EXIT_CANCELLED) and not self.error:
            self.error = f"the engine stopped unexpectedly (exit code {code}); its log is {self.log_path}"

    def cancel(self) -> None:
        """Ask the engine to stop after the current image (it keeps every finished frame)."""
        self.cancelled = True
        if self.proc and self.proc.poll() is None:
            if os.name == "nt":
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                self.proc.send_signal(signal.SIGTERM)

    def kill(self, grace: float = 5.0) -> None:
        """Stop now: polite first, then forcefully (file closed, Blender quitting)."""
        self.cancel()
        if self.proc:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stop_all() -> None:
    """Kill every running engine (file closed, add-on disabled, Blender quitting): no orphans."""
    for job in list(_RUNNING):
        job.kill(grace=3.0)


def default_python() -> str:
    """``$M2V_ENGINE_PYTHON`` (scripts, farms), else empty: the preferences decide."""
    return os.environ.get("M2V_ENGINE_PYTHON", "")


atexit.register(stop_all)
