"""The TRIPOD+AI items the run report claims to cover, and the report section that covers each.

TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) is a 27-item checklist for reporting studies that
develop or evaluate a prediction model. A run report covers the items that the run folder and its
cohort can answer; the others (background, ethics, funding, patient involvement, ...) belong to
the study around the model and are not claimed. The titles below are short paraphrases, not the
checklist's wording.

Every section of the HTML page carries ``data-tripod="<item ids>"`` (space-separated);
``tests/reporting`` checks that each claimed item has a non-empty section.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TRIPOD_ITEMS", "TripodItem", "items_of_section"]


@dataclass(frozen=True)
class TripodItem:
    """One claimed checklist item.

    Attributes
    ----------
    item : the item's number in TRIPOD+AI (``"11"``, ``"23a"``).
    title : what the item asks for, in a few words.
    sections : ids of the report sections that answer it.
    """

    item: str
    title: str
    sections: tuple[str, ...]


#: The items the report covers, in checklist order.
TRIPOD_ITEMS: tuple[TripodItem, ...] = (
    TripodItem("1", "Title names a prognostic model, its population and outcome", ("summary",)),
    TripodItem("2", "Short structured summary of data, model and results", ("summary",)),
    TripodItem("5a", "Where the data come from", ("data",)),
    TripodItem("7", "How inputs were prepared before modelling", ("inputs",)),
    TripodItem("8a", "Outcome predicted, its time unit and horizons", ("data",)),
    TripodItem("9a", "Which predictors (modalities, covariates) enter the model", ("inputs",)),
    TripodItem("10", "Number of patients and events available", ("data",)),
    TripodItem("11", "How missing inputs were handled", ("inputs",)),
    TripodItem("12a", "How the data were split for development and evaluation", ("validation",)),
    TripodItem("12b", "How predictors were transformed or scaled", ("inputs",)),
    TripodItem(
        "12c", "Model type, building steps, tuning and internal validation", ("model", "validation")
    ),
    TripodItem(
        "12e", "Performance measures used", ("discrimination", "calibration", "risk-groups")
    ),
    TripodItem("14", "How fairness across patient groups was examined", ("subgroups",)),
    TripodItem(
        "15", "What the model outputs and how risk groups are formed", ("model", "risk-groups")
    ),
    TripodItem("18f", "Code version and run provenance", ("provenance",)),
    TripodItem("20b", "Characteristics of the patients (follow-up, events)", ("data",)),
    TripodItem("21", "Patients and events in each analysis (per fold)", ("validation",)),
    TripodItem("22", "The fitted model in enough detail to reproduce it", ("model",)),
    TripodItem(
        "23a",
        "Performance with confidence intervals, overall and in subgroups",
        ("discrimination", "calibration", "risk-groups", "subgroups"),
    ),
    TripodItem("26", "Limitations", ("limits",)),
    TripodItem(
        "27a",
        "How poor-quality or unavailable inputs affect predictions in use",
        ("robustness", "inputs"),
    ),
)


def items_of_section(section: str) -> list[str]:
    """The item ids that section ``section`` answers (its ``data-tripod`` value, split)."""
    return [t.item for t in TRIPOD_ITEMS if section in t.sections]
