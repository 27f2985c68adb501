"""Training checkpoints: a killed training resumes where it stopped and ends as if never stopped.

Every ``every`` epochs the loop hands its whole state to :meth:`TrainingCheckpoint.save`: the
stage and epoch, the network's and the optimiser's state, the random generator that orders the
batches and samples the non-edges, the labels and target distribution of the joint stage and
the history so far. The file is written under a temporary name and moved into place, so a kill
during the write leaves the previous checkpoint whole. A training that finds a checkpoint of the
same run (same fingerprint: parameters, seed, clusters, cells, genes, device kind,
deterministic kernels) starts from it; on the CPU with deterministic kernels it then ends with
the same labels, bit for bit, as an uninterrupted run. A finished training removes its
checkpoint. The file holds tensors, numbers and strings only and is read with
``torch.load(weights_only=True)``, which runs no code from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import settings
from .._errors import InputError

#: Format of the checkpoint dictionary; a file of another format is ignored.
FORMAT = 1


def fingerprint(**facts: Any) -> str:
    """A short hash of everything that must match for a checkpoint to be resumed."""
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TrainingCheckpoint:
    """Where and how often a training saves its state, and for which run.

    Parameters
    ----------
    path
        The checkpoint file (its folder is created when the first checkpoint is written).
    every
        Save after every ``every``-th epoch of each stage (≥ 1; else :class:`InputError`).
    run
        :func:`fingerprint` of the run; a file with another one is not resumed.
    """

    def __init__(self, path: str | os.PathLike, every: int, run: str) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"checkpoint_every must be a positive integer, got {every!r}")
        self.path = Path(path)
        self.every = every
        self.run = run
        #: Stage and epoch of the state :meth:`load` resumed from; None when it started afresh.
        self.resumed: dict[str, Any] | None = None

    def due(self, epoch: int) -> bool:
        """Whether to save after the ``epoch``-th epoch (1-based) of a stage."""
        return epoch % self.every == 0

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run, or None (no file, another run, or unreadable)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: start afresh, say why
            settings.logger.warning(
                "%s: unreadable checkpoint (%s): starting afresh", self.path, err
            )
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            settings.logger.warning(
                "%s: not a checkpoint of this version: starting afresh", self.path
            )
            return None
        if state.get("run") != self.run:
            settings.logger.info(
                "%s: checkpoint of other settings (parameters, seed, data or device): starting "
                "afresh",
                self.path,
            )
            return None
        self.resumed = {"stage": state["stage"], "epoch": int(state["epoch"])}
        settings.logger.info(
            "scDSEC: resuming from %s (%s stage, after epoch %d)",
            self.path,
            state["stage"],
            state["epoch"],
        )
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (plus format and run) to a temporary file, then move it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save({"format": FORMAT, "run": self.run, **state}, partial)
        os.replace(partial, self.path)

    def remove(self) -> None:
        """Delete the checkpoint (after the training it belongs to has finished), and its
        folder when nothing else is left in it."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # other runs' checkpoints (or other files) are still there
            pass
