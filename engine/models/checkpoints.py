"""Loading checkpoint files safely: ``torch.load(weights_only=True)`` or safetensors, never pickle code.

The official VQGAN checkpoints were written by PyTorch Lightning 1.0.8 and
pickle a reference to its ``ModelCheckpoint`` callback class. Lightning is
not installed (and must not be imported): a stub class is allowed under that
exact name, so the restricted unpickler accepts the file without running
anything from it. Any other global is refused with its name.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

from engine.errors import InputError


class LightningCallbackStub:
    """Stand-in for Lightning callback classes pickled as dictionary keys in old checkpoints."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        self.state = state


#: Globals a Lightning checkpoint may reference, mapped to what stands in for them.
LIGHTNING_GLOBALS = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
)

_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class UnsafeCheckpoint(InputError):
    """The file would run code (it references a global m2v does not allow): refused, never loaded."""


def pickle_globals(path: Path) -> list[str]:
    """The ``module.name`` globals a pickle (raw, or the ``data.pkl`` of a torch zip) references, read without running it."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
        found, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return found
    except Exception:  # noqa: BLE001 - a damaged file simply names nothing
        return []


def _safe_globals() -> list:
    allowed: list = [(LightningCallbackStub, name) for name in LIGHTNING_GLOBALS]
    # Written by later Lightning versions into hyper-parameters and loop state.
    import codecs

    import numpy as np

    allowed += [np.dtype, codecs.encode]
    multiarray = getattr(getattr(np, "core", None), "multiarray", None)
    for extra in (getattr(multiarray, "scalar", None), getattr(getattr(np, "dtypes", None), "Float64DType", None)):
        if extra is not None:
            allowed.append(extra)
    return allowed


def load_torch_file(path: str | Path) -> dict:
    """Load a ``.ckpt``/``.pt``/``.pth`` file with the restricted unpickler.

    Raises
    ------
    InputError
        Naming the file and, for a refused global, the global's name.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        with torch.serialization.safe_globals(_safe_globals()), warnings.catch_warnings():
            # torch warns about pickle protocols it may not read; the error below says what matters.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = _UNSUPPORTED.search(str(e))
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _safe_globals() if not isinstance(g, tuple)}
        allowed |= set(LIGHTNING_GLOBALS) | {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2"}
        named = (
            [m.group(1)] if m else [g for g in pickle_globals(path) if g not in allowed and not g.startswith("torch.")]
        )
        if named:
            raise UnsafeCheckpoint(
                f"the file references {named[0]}, which m2v will not load (only tensors and "
                "known Lightning callback records are allowed)",
                path,
            ) from None
        raise InputError(f"not a readable PyTorch checkpoint ({_first_line(e)})", path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable PyTorch checkpoint ({_first_line(e)})", path) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a dictionary of tensors, found {type(obj).__name__}", path)
    return obj


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def load_state_dict_file(path: str | Path) -> dict:
    """Tensors from a safetensors file or a torch checkpoint (a ``state_dict`` inside is unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise InputError("weights file not found", path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"not a readable safetensors file ({e})", path) from None
    obj = load_torch_file(path)
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, dict):
        raise InputError("the checkpoint's state_dict is not a dictionary of tensors", path)
    return sd


def check_keys(model, state: dict, path: str | Path, what: str) -> None:
    """Strict load of ``state`` into ``model``: every key present, none unknown, every shape equal.

    Raises
    ------
    InputError
        Naming the first few missing, unexpected or mismatched keys.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(
            "missing " + ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    if unexpected:
        problems.append(
            "unexpected "
            + ", ".join(unexpected[:5])
            + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
        )
    if mismatched:
        problems.append("wrong shape " + ", ".join(mismatched[:3]))
    if problems:
        raise InputError(f"does not match the {what} architecture: " + "; ".join(problems), path)
    model.load_state_dict(state, strict=True)
