"""Weight averaging of epoch checkpoints (spec §5.3, src/run_cavmae_ft.py ``wa_model``): the plain mean of the
parameters of the models saved at the end of the chosen epochs — one model, not an ensemble.

    avg = WeightAverager()
    for epoch in ...: ...; avg.add(model.state_dict())      # the epochs wa_start..wa_end
    model.load_state_dict(avg.average())
"""

from __future__ import annotations

import torch
from torch import Tensor


class WeightAverager:
    """Running sum of state dicts in float64 (no copy of every epoch is kept); :meth:`average` divides.

    Floating-point entries are averaged; integer entries (counters, if any) are taken from the last state dict.
    """

    def __init__(self) -> None:
        self._sum: dict[str, Tensor] = {}
        self._last: dict[str, Tensor] = {}
        self.count = 0
        self.epochs: list[int] = []

    def add(self, state_dict: dict[str, Tensor], epoch: int | None = None) -> None:
        if self.count and set(state_dict) != set(self._last):
            raise ValueError("state dicts to average must have the same keys")
        for k, v in state_dict.items():
            v = v.detach()
            if v.is_floating_point():
                acc = v.to("cpu", torch.float64)
                self._sum[k] = acc.clone() if k not in self._sum else self._sum[k].add_(acc)
            self._last[k] = v.to("cpu", copy=True)
        self.count += 1
        if epoch is not None:
            self.epochs.append(int(epoch))

    def average(self) -> dict[str, Tensor]:
        """The mean state dict, each entry in its original dtype."""
        if not self.count:
            raise ValueError("no state dict was added: nothing to average")
        return {k: (self._sum[k] / self.count).to(v.dtype) if k in self._sum else v.clone()
                for k, v in self._last.items()}


def average_state_dicts(state_dicts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The mean of several state dicts (see :class:`WeightAverager`)."""
    avg = WeightAverager()
    for sd in state_dicts:
        avg.add(sd)
    return avg.average()


__all__ = ["WeightAverager", "average_state_dicts"]
