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
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = _UNSUPPORTED.search(str(e))
        if m:
            raise InputError(
                f"the checkpoint references {m.group(1)}, which m2v will not load (only tensors and "
                "known Lightning callback records are allowed)",
                path,
            ) from None
        raise InputError(f"not a readable PyTorch checkpoint ({str(e).splitlines()[0][:200]})", path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable PyTorch checkpoint ({str(e).splitlines()[0][:200]})", path) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a dictionary of tensors, found {type(obj).__name__}", path)
    return obj


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
