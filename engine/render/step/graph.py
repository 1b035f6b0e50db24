"""The optimisation step captured once as a CUDA graph and replayed: no Python or kernel launches per step.

A step at 512x512 launches about a thousand small kernels; eagerly the GPU waits on the host for much of the
step. Here the whole step (decode, cutouts, CLIP, loss, backward, Adam, eq. 1, clamp:
:meth:`engine.render.step.optimize.Optimizer.step_body`, the same function the eager step runs) is captured once per
shape (image size, number of targets, eq. 1 on or off) with static buffers for the targets, the cutout draws
and the anchor; a step copies its inputs into those buffers (device to device) and replays the graph.

CUDA only. Where capture fails, one warning says why and every later step runs eagerly. Steps with a footage
pull (``--init-weight``) run eagerly: the pull's target changes with every footage frame.
"""

from __future__ import annotations

import warnings

#: Eager steps on a side stream before capture: cuBLAS/cuDNN pick their algorithms and workspaces there.
WARMUP = 3


class StepGraphs:
    """The captured steps of one :class:`engine.render.step.optimize.Optimizer`, by shape."""

    def __init__(self, optimizer, warn=None) -> None:
        self.o = optimizer
        self.graphs: dict = {}
        self.failed: str | None = None
        self.warn = warn or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3))

    def clear(self) -> None:
        self.graphs.clear()

    def replay(self, tgt, wts, draw, anchor):
        """One step by replay; returns ``(image, loss)``, or None where the step must run eagerly."""
        if self.failed is not None:
            return None
        eq1 = anchor is not None and self.o.s.l1_weight > 0
        key = (tuple(self.o.z.shape), tuple(tgt.shape), eq1)
        graph = self.graphs.get(key)
        if graph is None:
            try:
                graph = self.graphs[key] = CapturedStep(self.o, tgt, wts, draw, anchor if eq1 else None)
            except Exception as e:  # noqa: BLE001 - whatever stops capture, the eager step still works
                self.failed = f"{type(e).__name__}: {e}"
                self.warn(f"the step runs eagerly: capturing it as a CUDA graph failed ({self.failed})")
                return None
        return graph.replay(tgt, wts, draw, anchor if eq1 else None)


def _optimizer_state(opt) -> list:
    return [t for st in opt.state.values() for t in st.values() if hasattr(t, "copy_")]


class CapturedStep:
    """One captured step and its static input and output buffers."""

    def __init__(self, o, tgt, wts, draw, anchor) -> None:
        import torch

        d, j = draw
        self.o = o
        self.tgt, self.wts = tgt.clone(), wts.clone()
        self.draws = {k: v[j : j + 1].clone() for k, v in d.items() if torch.is_tensor(v)}
        self.anchor = None if anchor is None else anchor.clone()
        # Warm-up steps move the latent and Adam's state: both are put back after capture.
        z0 = o.z.detach().clone()
        fresh = not o.opt.state
        saved = [t.clone() for t in _optimizer_state(o.opt)]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), o.precision.matmuls():
                for _ in range(WARMUP):
                    o.opt.zero_grad(set_to_none=True)
                    o.step_body(self.tgt, self.wts, (self.draws, 0), self.anchor, static=True)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            o.opt.zero_grad(set_to_none=True)
            with o.precision.matmuls(), torch.cuda.graph(self.graph):
                self.out, self.loss = o.step_body(self.tgt, self.wts, (self.draws, 0), self.anchor, static=True)
        finally:
            with torch.no_grad():
                o.z.copy_(z0)
                state = _optimizer_state(o.opt)
                if fresh:  # Adam's state as it starts: zero moments, step 0
                    for t in state:
                        t.zero_()
                else:
                    for t, v in zip(state, saved):
                        t.copy_(v)
        self._tgt_src = None

    def replay(self, tgt, wts, draw, anchor) -> tuple:
        d, j = draw
        if self._tgt_src is not tgt:  # targets change once an image at most
            self.tgt.copy_(tgt)
            self.wts.copy_(wts)
            self._tgt_src = tgt
        for k, buf in self.draws.items():
            buf.copy_(d[k][j : j + 1])
        if anchor is not None:
            self.anchor.copy_(anchor)
        self.graph.replay()
        # Clones: the next replay overwrites the static outputs, and callers keep an image's first output.
        return self.out.clone(), self.loss.clone()
