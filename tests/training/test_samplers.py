"""Event-balanced sampling: every batch holds events, every sample is used once per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.training.samplers import EventBalancedBatchSampler, RandomBatchSampler


@pytest.mark.parametrize(
    "n, rate, bs", [(500, 0.15, 16), (97, 0.05, 32), (64, 0.5, 8), (1000, 0.3, 64)]
)
def test_event_balanced_batches(n, rate, bs):
    rng = np.random.default_rng(0)
    event = rng.random(n) < rate
    event[:2] = True
    sampler = EventBalancedBatchSampler(event, bs, np.random.default_rng(1), min_events=2)
    batches = sampler.epoch()
    joined = np.concatenate(batches)
    assert sorted(joined.tolist()) == list(range(n))
    per_batch = [int(event[b].sum()) for b in batches]
    assert min(per_batch) >= min(2, int(event.sum()))
    assert max(per_batch) - min(per_batch) <= 1
    sizes = [len(b) for b in batches]
    assert max(sizes) - min(sizes) <= 1


def test_plain_random_batches_can_lack_events_but_balanced_never_do():
    event = np.zeros(400, dtype=bool)
    event[:20] = True  # 5% events
    plain = RandomBatchSampler(400, 16, np.random.default_rng(0)).epoch()
    balanced = EventBalancedBatchSampler(event, 16, np.random.default_rng(0)).epoch()
    assert any(event[b].sum() == 0 for b in plain)
    assert all(event[b].sum() >= 2 for b in balanced)


def test_sampler_is_deterministic_given_rng_state():
    event = np.random.default_rng(0).random(200) < 0.3
    a = EventBalancedBatchSampler(event, 32, np.random.default_rng(5)).epoch()
    b = EventBalancedBatchSampler(event, 32, np.random.default_rng(5)).epoch()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
