"""Batch samplers.

Cox partial likelihood needs events in every batch: with 15% events and batches of 16, one batch in
thirteen would hold none. :class:`EventBalancedBatchSampler` spreads the events evenly over the
batches of an epoch, so every batch holds about ``batch_size * event_rate`` of them (at least
``min_events`` when there are enough events in the training set).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EventBalancedBatchSampler", "RandomBatchSampler"]


class RandomBatchSampler:
    """Shuffled batches of indices; the last short batch is merged into the previous one.

    Parameters
    ----------
    n : int
        Number of training samples.
    batch_size : int
    rng : numpy Generator (its state is saved with checkpoints so that resumed runs match).
    """

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator) -> None:
        self.n, self.batch_size, self.rng = n, max(1, min(batch_size, n)), rng

    def n_batches(self) -> int:
        return max(1, self.n // self.batch_size)

    def epoch(self) -> list[np.ndarray]:
        order = self.rng.permutation(self.n)
        return [np.sort(b) for b in np.array_split(order, self.n_batches())]


class EventBalancedBatchSampler(RandomBatchSampler):
    """Batches with events spread evenly across them.

    Events and censored samples are shuffled separately and dealt round-robin over the batches, so
    each batch holds ``floor`` or ``ceil`` of ``n_events / n_batches`` events. The number of batches
    is reduced when needed so that every batch holds at least ``min_events`` events.

    Parameters
    ----------
    event : (n,) bool
    batch_size : int
    rng : numpy Generator
    min_events : int
    """

    def __init__(
        self, event: np.ndarray, batch_size: int, rng: np.random.Generator, min_events: int = 2
    ) -> None:
        event = np.asarray(event, dtype=bool)
        super().__init__(len(event), batch_size, rng)
        self.events = np.flatnonzero(event)
        self.censored = np.flatnonzero(~event)
        n_batches = super().n_batches()
        if len(self.events) >= min_events:
            n_batches = min(n_batches, max(1, len(self.events) // min_events))
        self._n_batches = n_batches

    def n_batches(self) -> int:
        return self._n_batches

    def epoch(self) -> list[np.ndarray]:
        k = self._n_batches
        ev = self.rng.permutation(self.events)
        ce = self.rng.permutation(self.censored)
        # deal events, then censored samples, round-robin from a random starting batch: events
        # are spread evenly and batch sizes differ by at most one
        start = int(self.rng.integers(k))
        both = np.concatenate([ev, ce])
        slot = (start + np.arange(len(both))) % k
        batches = [both[slot == j] for j in range(k)] if k < 64 else _split_by_slot(both, slot, k)
        order = self.rng.permutation(k)
        return [np.sort(batches[j]).astype(np.int64) for j in order]


def _split_by_slot(values: np.ndarray, slot: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(slot, kind="stable")
    return np.split(values[order], np.cumsum(np.bincount(slot, minlength=k))[:-1])
