"""Ray around a ``render --ray``: the address, a bounded connect, what the cluster can hold, its logs, its leftovers.

Each check runs before the work it protects and says what is wrong in one line (exit 2):

- the address: ``--ray ''`` is refused; ``host:port`` (and ``ray://``, ``auto``, ``RAY_ADDRESS``) is probed
  with a plain TCP connect and an HTTP/2 greeting (Ray's GCS and client server speak gRPC) for a few seconds,
  so an address where nothing (or something else) answers fails at once instead of after Ray's long retries;
- the cluster: ``--ray-cpus`` above every node's CPUs is refused (no worker could ever be placed), and
  ``--ray-workers`` above what the cluster holds runs as many workers as fit, the chains queueing on them (a
  warning says so), so no worker waits for CPUs held by another worker of the same render;
- Ray's SIGTERM handlers are kept out while it starts or connects: m2v's stop handler takes the signal, and
  the render stops as at any other moment (exit 3, or the folder as it was found when nothing was rendered);
- Ray's own log lines (its notices, actor restarts, a dead node's advice) go to ``ray.log`` in the render
  folder, m2v's own lines to the terminal;
- the workers' temporary folders (``$TMPDIR/m2v-chain-<job>-*``) are removed by the driver at the end, those
  of workers that died too (a killed worker's ``atexit`` never runs).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

from engine.errors import InputError
from engine.files import entry_kind, open_replacing

#: Seconds the address probe waits for a connection and for the server's greeting.
CONNECT_TIMEOUT_S = 3.0
#: Prefix of a Ray worker's temporary folder (followed by the render's job id).
WORKER_DIR_PREFIX = "m2v-chain-"
#: An HTTP/2 client greeting and an empty SETTINGS frame: a gRPC server answers with its own SETTINGS frame.
_H2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 4


def check_address_flag(text: str | None) -> str | None:
    """``--ray``'s value: None or ``local`` for a local instance; an empty or blank address is refused."""
    if text is None:
        return None
    if not text.strip():
        raise InputError(
            "--ray '': no address given; give host:port, ray://host:port or auto, or --ray alone for a local instance"
        )
    return text.strip()


def one_line(text: object, limit: int = 300) -> str:
    """Ray's multi-line messages (advice, tracebacks) as one line: its first meaningful line, shortened."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else str(text).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _host_port(address: str, flag: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{flag} {address}: not an address (give host:port, ray://host:port or auto)")
    return host, int(port)


def resolve_address(address: str | None) -> str | None:
    """The ``host:port`` Ray will connect to for ``address`` (None: Ray starts a local instance)."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if address is None or address == "auto":
        if env:
            return env
        if address is None:
            return None
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            raise InputError("--ray auto: no running Ray cluster was found on this machine") from None
        except Exception as e:  # noqa: BLE001 - Ray's own lookup; its failure is the user's to see, in one line
            raise InputError(f"--ray auto: cannot find the Ray cluster ({one_line(e)})") from None
        if found is None:
            raise InputError("--ray auto: no running Ray cluster was found on this machine")
        return found
    return address


def probe_address(address: str | None, flag: str = "--ray", timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse at once an address where no Ray server answers (exit 2, one line), instead of Ray's long retries."""
    target = resolve_address(address)
    if target is None:
        return
    host, port = _host_port(target, flag)
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if target == address:
        shown = address
    elif env and target == env:
        shown = f"{address or ''} (RAY_ADDRESS={target})".strip()
    else:
        shown = f"{address} ({target})"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(_H2_GREETING)
            head = b""
            while len(head) < 9:
                chunk = s.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise InputError(f"{flag} {shown}: no Ray server answered within {timeout:g} s") from None
    except OSError as e:
        raise InputError(f"{flag} {shown}: cannot reach a Ray cluster there ({e.strerror or e})") from None
    if len(head) < 9 or head[3] != _SETTINGS:
        raise InputError(f"{flag} {shown}: something answers there, but it is not a Ray cluster (no gRPC server)")


@contextlib.contextmanager
def keep_stop_handlers():
    """While Ray starts or connects, keep m2v's SIGINT/SIGTERM handlers.

    ``ray.init`` installs a SIGTERM handler that exits with code 15 (and, when it starts a local instance,
    one that kills Ray's processes and exits with 1): a stop in those seconds would end the render with
    neither m2v's exit code nor its clean-up. Ray's installer is a no-op inside this block.
    """
    try:
        import ray._private.utils as ray_utils

        original = ray_utils.set_sigterm_handler
    except (ImportError, AttributeError):
        yield
        return
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original


#: Ray's processes of a local instance that the node cannot live without (its agents are fate-shared with it).
_VITAL = ("gcs_server", "raylet")
_watched: dict[int, list[tuple[int, int | None]]] = {}  # by the node object, found once per Ray session


def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """``(parent pid, state, start time)`` of a process from ``/proc`` (Linux), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19])


def _vital_processes(node) -> list[tuple[int, int | None]]:
    """The vital processes of a local Ray instance this process started, as ``(pid, start time)``: its GCS, its
    raylet and the raylet's agents (those only where ``/proc`` tells)."""
    out = []
    for kind in _VITAL:
        for info in (getattr(node, "all_processes", None) or {}).get(kind) or []:
            if info.process is None:
                continue
            pid = info.process.pid
            st = _proc_stat(pid)
            out.append((pid, st[2] if st else None))
            if kind != "raylet" or st is None:
                continue
            for entry in Path("/proc").iterdir():
                child = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
                if child is None or child[0] != pid:
                    continue
                with contextlib.suppress(OSError):
                    if b"Agent" in (entry / "cmdline").read_bytes().split(b"\0")[0]:
                        out.append((int(entry.name), child[2]))
    return out


def _running(pid: int, start: int | None) -> bool:
    st = _proc_stat(pid)
    if st is None:
        try:
            os.kill(pid, 0)  # no /proc here: the pid alone
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return start is None
    return st[1] != "Z" and (start is None or st[2] == start)


def raylet_alive() -> bool:
    """Whether this machine's Ray node is still whole (the driver talks to it); True when it cannot tell.

    When a vital process of the node dies (its raylet, or the dashboard or runtime-env agent, which the raylet
    shares its fate with), Ray's core worker soon ends the driver's process (``_exit(1)``, no clean-up), at its
    next call into Ray or when the control store declares the node dead. The driver looks first, without calling
    into Ray, and stops the render itself (one ``error:`` line and event, the lock released). For a local
    instance it watches those processes; for a cluster's node, that the raylet's port still answers.
    """
    try:
        import ray._private.worker as ray_worker

        node = ray_worker._global_node
    except (ImportError, AttributeError):
        return True
    if node is None:
        return True  # Ray Client: no raylet here
    if getattr(node, "all_processes", None):  # a local instance this process started
        watched = _watched.get(id(node)) or _watched.setdefault(id(node), _vital_processes(node))
        if not all(_running(pid, start) for pid, start in watched):
            return False
    try:  # the raylet's port answers
        with socket.create_connection((node.node_ip_address, int(node.node_manager_port)), timeout=1.0):
            return True
    except (OSError, AttributeError, TypeError, ValueError):
        return False


def own_node_alive(ray) -> bool:
    """Whether Ray's control store still counts this machine's node as alive (a raylet can hang while its node is
    declared dead, and the driver's next call into it then ends the process just the same); True when unknown."""
    try:
        me = ray.get_runtime_context().get_node_id()
        return next((bool(n.get("Alive", n.get("alive"))) for n in ray.nodes() if n.get("NodeID") == me), False)
    except Exception:  # noqa: BLE001 - a control store that cannot answer says nothing about the node
        return True


def forget_ray_at_exit() -> None:
    """After Ray died under the render: do not let Ray's own exit hook call into it (that ends the process)."""
    import atexit

    with contextlib.suppress(ImportError, AttributeError):
        import ray._private.worker as ray_worker

        atexit.unregister(ray_worker.shutdown)


def node_cpus_and_gpus(ray) -> tuple[list[float], list[float]]:
    """Each alive node's CPUs and GPUs."""
    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive"))]
    res = [n.get("Resources") or {} for n in nodes]
    return [float(r.get("CPU", 0)) for r in res], [float(r.get("GPU", 0)) for r in res]


def plan_workers(
    ray, workers: int | None, cpus: int, use_gpus: bool, n_chains: int
) -> tuple[dict, str, int, list[str]]:
    """What each worker asks for, on which device, how many workers, and warnings (see the module).

    Raises
    ------
    InputError
        ``--ray-cpus`` more than any node has: naming the flag and what the cluster has.
    """
    node_cpus, node_gpus = node_cpus_and_gpus(ray)
    warnings = []
    gpus = sum(int(g) for g in node_gpus)
    if use_gpus and gpus >= 1:
        res, device, fits, what = {"num_gpus": 1}, "cuda", gpus, f"{gpus} GPU(s)"
    else:
        largest = max(node_cpus, default=0.0)
        if cpus > largest:
            raise InputError(
                f"--ray-cpus {cpus}: no node of the Ray cluster has {cpus} CPUs (its largest has {largest:g}; "
                f"{len(node_cpus)} node(s), {sum(node_cpus):g} CPUs in all): give --ray-cpus {max(1, int(largest))} "
                "or less"
            )
        fits = sum(int(c // cpus) for c in node_cpus)
        res, device, what = {"num_cpus": cpus}, "cpu", f"{sum(node_cpus):g} CPUs"
        what += f" on {len(node_cpus)} node(s), {fits} worker(s) of {cpus} CPU(s)"
    n = min(workers or fits, fits, n_chains)
    if workers is not None and workers > fits:
        warnings.append(
            f"--ray-workers {workers}: the Ray cluster holds {fits} worker(s) ({what}); running {n}, "
            "the chains queue on them"
        )
    return res, device, max(1, n), warnings


def new_job_id() -> str:
    """The id in the names of one render's worker folders (``m2v-chain-<id>-…``)."""
    return secrets.token_hex(4)


def worker_dir(job_id: str) -> str:
    """(on a worker) A new temporary folder for this worker's copies of resume points."""
    return tempfile.mkdtemp(prefix=f"{WORKER_DIR_PREFIX}{job_id}-")


def remove_worker_dirs(job_id: str, folders: set[str] | tuple = ()) -> int:
    """Remove this render's worker folders on this machine: in the temporary folder and where workers said.

    Only real folders named ``m2v-chain-<job id>-…`` are removed (never a link, never another render's).
    Returns how many.
    """
    prefix = f"{WORKER_DIR_PREFIX}{job_id}-"
    parents = {tempfile.gettempdir(), *(str(Path(f).parent) for f in folders)}
    n = 0
    for parent in parents:
        try:
            found = [p for p in Path(parent).iterdir() if p.name.startswith(prefix)]
        except OSError:
            continue
        for p in found:
            if entry_kind(p) == "folder":
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


class ThreadRouted(io.TextIOBase):
    """A text stream that sends the main thread's writes to ``main`` and every other thread's to ``other``."""

    def __init__(self, main, other) -> None:
        super().__init__()
        self.main, self.other = main, other

    def _stream(self):
        return self.main if threading.current_thread() is threading.main_thread() else self.other

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return self._stream().write(s)

    def flush(self) -> None:
        for s in (self.main, self.other):
            with contextlib.suppress(Exception):
                s.flush()


class RayLog:
    """Ray's own output in ``ray.log`` (the render folder) while a Ray render runs; m2v's lines stay on the terminal.

    Ray writes from C++ (straight to the process's stderr, fd 2), through Python's logging (to whatever
    ``sys.stderr`` is when it logs) and with ``print`` (a worker's death, to stdout). Inside the block fd 2
    and ``sys.stdout`` go to the log; the progress's own streams (its warnings and bar) get a copy of the
    terminal's stderr, so m2v's lines reach the user as before. The events (the progress's ``out``, unless it
    is stderr) are untouched.
    """

    def __init__(self, path: Path, progress) -> None:
        self.path, self.progress = path, progress
        #: Set when Ray died under the render: its threads may still write until the process ends, so fd 2 and
        #: ``sys.stdout`` stay on the log and ``sys.stderr`` becomes the terminal's copy (m2v's error line still
        #: shows).
        self.keep = False

    def __enter__(self) -> RayLog:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        self._file = open_replacing(self.path)
        self._text = io.TextIOWrapper(self._file, encoding="utf-8", errors="backslashreplace", line_buffering=True)
        self._saved_fd = os.dup(2)
        self._terminal = open(  # noqa: SIM115 - closed in __exit__
            self._saved_fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
        )
        os.dup2(self._file.fileno(), 2)
        self._stdout, sys.stdout = sys.stdout, self._text
        self._swapped = []
        for attr in ("err", "out"):
            if getattr(self.progress, attr, None) is sys.stderr:
                setattr(self.progress, attr, self._terminal)
                self._swapped.append(attr)
        return self

    def __exit__(self, *exc) -> None:
        for s in (self._text, self._terminal, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        if self.keep:
            # Ray's threads print until the process ends ("(raylet) The node ... marked dead" comes from a
            # listener thread's ``print`` to whatever sys.stdout is then): their lines keep going to the log, as
            # fd 2 does, while the main thread's (m2v's error event) reach stdout, which stays JSON lines only.
            sys.stdout = ThreadRouted(self._stdout, self._text)
            sys.stderr = self._terminal
            return
        sys.stdout = self._stdout
        os.dup2(self._saved_fd, 2)
        for attr in self._swapped:
            setattr(self.progress, attr, sys.stderr)
        self._terminal.close()
        os.close(self._saved_fd)
        with contextlib.suppress(Exception):
            self._text.close()


_GUARD = r"""
import fcntl, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock, events_fd, line, event = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if sys.stdin.buffer.read().endswith(b"ok"):
    sys.exit(0)
for fd, text in ((2, line), (events_fd, event)):
    try:
        if fd >= 0:
            os.write(fd, (text + "\n").encode("utf-8"))
    except OSError:
        pass
try:
    fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st, own = os.lstat(lock), os.fstat(fd)
        if (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev):
            os.unlink(lock)
    finally:
        os.close(fd)
except OSError:
    pass
"""


class Guardian:
    """A tiny process that ends a Ray render the way m2v ends a failed one, should Ray end the driver's process.

    Ray's core worker ends the driver with ``_exit(1)`` (no Python clean-up at all) when a vital process of its
    node dies or the node is declared dead: the driver usually sees it first (:func:`raylet_alive`), but not
    always. The guardian, started before Ray, waits on a pipe: when the driver ends without saying ``ok``, it
    prints the one ``error:`` line, writes the ``error`` event where the render's events go, and removes the
    folder's lock file (taking the lock first, as a render would). POSIX only; elsewhere it does nothing.
    """

    def __init__(self, lock: Path, events, message: str, event_line: str) -> None:
        self.proc = None
        if os.name != "posix":
            return
        import subprocess

        try:
            events_fd = events.fileno() if events is not None else -1
        except (AttributeError, OSError, ValueError):
            events_fd = -1
        fds = (events_fd,) if events_fd > 2 else ()
        with contextlib.suppress(OSError):
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _GUARD, str(lock), str(events_fd), f"error: {message}", event_line],
                stdin=subprocess.PIPE,
                pass_fds=fds,
                start_new_session=True,  # a Ctrl-C to the render's terminal is the render's, not the guardian's
            )

    def disarm(self) -> None:
        """The driver ends its own way (done, cancelled, or its own error line): the guardian leaves quietly."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write(b"ok")
            self.proc.stdin.close()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        self.proc = None
