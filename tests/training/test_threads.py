"""train.threads: how ``auto`` resolves (OMP_NUM_THREADS, affinity, small models), explicit
integers, refused values, and that the count is restored after training."""

from __future__ import annotations

import os

import pytest
import torch

from multimodal.config import load_config
from multimodal.exceptions import ConfigError
from multimodal.training.threads import (
    SMALL_MODEL_PARAMETERS,
    available_cpus,
    resolve_threads,
    training_threads,
)

BIG = 10 * SMALL_MODEL_PARAMETERS


@pytest.fixture
def four_cpus(monkeypatch):
    """A process whose affinity mask holds four CPUs (of a 64-CPU machine)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)


def test_auto_uses_the_affinity_mask(four_cpus):
    assert available_cpus() == 4
    assert resolve_threads("auto") == 4
    assert resolve_threads("auto", n_parameters=BIG) == 4


def test_auto_without_affinity_uses_cpu_count(four_cpus, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert resolve_threads("auto") == 64


def test_auto_respects_omp_num_threads(four_cpus, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto", n_parameters=BIG) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # nested levels: the first is ours
    assert resolve_threads("auto") == 2


@pytest.mark.parametrize("bad", ["", "zero", "0", "-2"])
def test_unusable_omp_num_threads_is_ignored(four_cpus, monkeypatch, bad):
    monkeypatch.setenv("OMP_NUM_THREADS", bad)
    assert resolve_threads("auto") == 4


def test_small_models_on_cpu_get_one_thread(four_cpus, monkeypatch):
    assert resolve_threads("auto", n_parameters=SMALL_MODEL_PARAMETERS - 1) == 1
    assert resolve_threads("auto", n_parameters=SMALL_MODEL_PARAMETERS) == 4
    # on an accelerator the CPU threads only feed it: no cap
    assert resolve_threads("auto", n_parameters=1000, on_cpu=False) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto", n_parameters=1000) == 1


def test_an_explicit_integer_wins(four_cpus, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads(2, n_parameters=10) == 2
    assert resolve_threads(8) == 8


@pytest.mark.parametrize("bad", [0, -1, True, "many", 1.5])
def test_resolve_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        resolve_threads(bad)


def test_config_accepts_auto_and_integers():
    assert load_config({}).train.threads == "auto"
    assert load_config({"train": {"threads": 3}}).train.threads == 3
    assert load_config({}, ["train.threads=2"]).train.threads == 2


@pytest.mark.parametrize("bad", [0, -1, "many", True, 2.5, "2"])
def test_config_refuses_bad_threads(bad):
    with pytest.raises(ConfigError, match=r"train\.threads: .*positive integer .* or 'auto'"):
        load_config({"train": {"threads": bad}})


def test_training_threads_restores_the_previous_count(four_cpus, monkeypatch):
    calls = []
    state = {"n": 2}
    monkeypatch.setattr(torch, "get_num_threads", lambda: state["n"])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), state.update(n=n)))
    with training_threads("auto", n_parameters=100) as n:
        assert n == 1 and state["n"] == 1
    assert state["n"] == 2 and calls == [1, 2]
    with pytest.raises(RuntimeError), training_threads(3):
        assert state["n"] == 3
        raise RuntimeError
    assert state["n"] == 2
