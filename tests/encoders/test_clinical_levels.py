"""The clinical design: levels unseen in training are mapped to "unknown" with a message."""

from __future__ import annotations

import logging

import pandas as pd
import torch

from multimodal.encoders.clinical import ClinicalPreprocessor, linear_inputs


def test_unseen_levels_become_unknown_and_are_named(caplog):
    train = pd.DataFrame({"age": [50, 60, 70], "stage": ["I", "II", "III"]}, index=["a", "b", "c"])
    new = pd.DataFrame({"age": [55, 65], "stage": ["V", "II"]}, index=["p1", "p2"])
    prep = ClinicalPreprocessor(numeric=["age"], categorical=["stage"]).fit(train)
    with caplog.at_level(logging.WARNING, logger="multimodal.encoders.clinical"):
        x = prep.transform(new)
    assert x["categorical"][:, 0].tolist() == [0, 2]  # 0 = unknown, 2 = "II"
    message = caplog.text
    assert "'stage'" in message and "'V'" in message and "p1" in message
    design = linear_inputs({k: torch.as_tensor(v) for k, v in x.items()}, prep.cardinalities)
    # [age, stage=<unknown>, stage=I, stage=II, stage=III]: the unseen level is the unknown column
    assert design[0, 1:].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_known_levels_give_no_warning(caplog):
    train = pd.DataFrame({"stage": ["I", "II"]}, index=["a", "b"])
    prep = ClinicalPreprocessor(categorical=["stage"]).fit(train)
    with caplog.at_level(logging.WARNING, logger="multimodal.encoders.clinical"):
        prep.transform(pd.DataFrame({"stage": ["II", None]}, index=["x", "y"]))
    assert "not seen" not in caplog.text
