"""The run report (model card): ``multimodal report RUN_DIR`` -> one self-contained HTML page.

- :func:`build_report`: write ``RUN_DIR/report.html`` (or ``out``) and return its path.
- :data:`TRIPOD_ITEMS`: the TRIPOD+AI items the report claims to cover, each with the section(s)
  that answer it; every section of the page carries ``data-tripod="<item ids>"``.
"""

from multimodal.reporting.build import REPORT_FILE, build_report
from multimodal.reporting.tripod import TRIPOD_ITEMS, TripodItem

__all__ = ["REPORT_FILE", "TRIPOD_ITEMS", "TripodItem", "build_report"]
