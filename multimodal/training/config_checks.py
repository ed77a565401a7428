"""Checks of a loaded config that need the registries, run before any data is read.

:class:`multimodal.config.Config` checks types and keys; whether ``fusion.name`` names a fusion
that exists can only be answered by the registries, which live in higher layers than the config.
:func:`check_registry_names` answers it first thing in ``train`` (and the demo), so a typo costs
neither a cohort load nor a half-written run folder.
"""

from __future__ import annotations

from multimodal.config import Config
from multimodal.encoders import ENCODERS
from multimodal.exceptions import ConfigError
from multimodal.fusion import FUSIONS
from multimodal.registry import Registry
from multimodal.survival.heads import HEADS

__all__ = ["check_registry_names"]


def check_registry_names(cfg: Config) -> None:
    """Raise one :class:`ConfigError` naming every unknown registry name of ``cfg``.

    Checked: ``encoders.<modality>.name`` and ``data.frozen_image_encoder.name`` (encoders),
    ``fusion.name`` (fusions) and ``head.name`` (heads, as resolved for the endpoint). Each problem
    reads ``"<key>: unknown <kind> '<name>'. Did you mean '<closest>'? Available: ..."``.
    """
    names: list[tuple[str, Registry, str]] = [
        (f"encoders.{modality}.name", ENCODERS, enc.name) for modality, enc in cfg.encoders.items()
    ]
    if cfg.data.frozen_image_encoder is not None:
        names.append(
            ("data.frozen_image_encoder.name", ENCODERS, cfg.data.frozen_image_encoder.name)
        )
    names.append(("fusion.name", FUSIONS, cfg.fusion.name))
    names.append(("head.name", HEADS, cfg.head_name))
    problems = []
    for key, registry, name in names:
        try:
            registry.get(name)
        except ConfigError as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        raise ConfigError("; ".join(problems))
