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
    shown = address or f"(RAY_ADDRESS={target})"
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


def raylet_alive() -> bool:
    """Whether this machine's raylet (the Ray process the driver talks to) still runs; True when it cannot tell.

    When the raylet dies, Ray's core worker ends the driver's process (``_exit(1)``, no clean-up) at its next
    call into Ray: the driver checks this first, without calling into Ray, and stops the render itself (one
    ``error:`` line and event, the lock released).
    """
    try:
        import ray._private.worker as ray_worker

        node = ray_worker._global_node
    except (ImportError, AttributeError):
        return True
    if node is None:
        return True  # Ray Client: no raylet here
    procs = (getattr(node, "all_processes", None) or {}).get("raylet") or []
    if procs:  # a local instance this process started
        return all(p.process is None or p.process.poll() is None for p in procs)
    try:
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
        #: Set when Ray died under the render: its threads may still write until the process ends, so fd 2
        #: stays on the log and ``sys.stderr`` becomes the terminal's copy (m2v's error line still shows).
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
        sys.stdout = self._stdout
        if self.keep:
            sys.stderr = self._terminal
            return
        os.dup2(self._saved_fd, 2)
        for attr in self._swapped:
            setattr(self.progress, attr, sys.stderr)
        self._terminal.close()
        os.close(self._saved_fd)
        with contextlib.suppress(Exception):
            self._text.close()
