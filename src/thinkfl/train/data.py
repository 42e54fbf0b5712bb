"""Training questions: failure cases of one or more stores, split by fault.

A fault can yield several cases (several anomalous entry traces); they always land on the
same side of the split so validation never sees traces of a fault it trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from thinkfl.telemetry import FailureCase, TelemetryError, TelemetryStore
from thinkfl.tools import Toolbox
from thinkfl.train.config import DataSettings, TrainError


@dataclass(frozen=True)
class Question:
    """One failure case to investigate, with the store that holds its telemetry."""

    store: TelemetryStore = field(compare=False, repr=False)
    store_path: Path
    case: FailureCase

    @property
    def key(self) -> str:
        """Unique across stores: the prompt text the trainer sees maps back to this."""
        return f"{self.store_path.name}/{self.case.case_id}"

    @property
    def fault_key(self) -> str:
        """The store's folder name and the fault: the split does not depend on where the
        store lives (an evaluation elsewhere finds the same held-out faults)."""
        return f"{self.store_path.name}/{self.case.fault_id}"

    def toolbox(self) -> Toolbox:
        return Toolbox(self.store, self.case)


def load_questions(stores: list[Path]) -> list[Question]:
    questions = []
    for path in stores:
        try:
            store = TelemetryStore.open(path)
        except TelemetryError as error:
            raise TrainError(f"data.stores: {error}") from None
        questions += [Question(store, path, case) for case in store.cases()]
    if not questions:
        raise TrainError(
            f"data.stores {[str(p) for p in stores]} hold no failure cases. "
            "Fix: `thinkfl simulate` or `thinkfl ingest` a labelled data set first"
        )
    return questions


def _bucket(fault_key: str, seed: int) -> float:
    """A stable number in [0, 1) per fault, independent of order and of other faults."""
    digest = hashlib.sha256(f"{seed}:{fault_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_fault(
    questions: list[Question], val_fraction: float, seed: int = 0
) -> tuple[list[Question], list[Question]]:
    """(train, validation): whole faults go to one side; the same seed gives the same split."""
    train: list[Question] = []
    val: list[Question] = []
    for question in questions:
        side = val if _bucket(question.fault_key, seed) < val_fraction else train
        side.append(question)
    return train, val


def training_questions(settings: DataSettings) -> tuple[list[Question], list[Question]]:
    train, val = split_by_fault(
        load_questions(settings.stores), settings.val_fraction, settings.split_seed
    )
    if not train:
        raise TrainError(
            f"data.val_fraction {settings.val_fraction} left no training faults. Fix: lower it"
        )
    return train[: settings.max_questions or None], val
