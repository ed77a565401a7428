"""Streamlit dashboard over a trained run folder: ``multimodal dashboard RUN_DIR``.

Reads the run's artefacts (and its cohort, when found); never trains. Views: Cohort, Patient,
Compare, New patient. The page code is thin: the numbers come from ``multimodal.dashboard``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from views import cohort_view, compare_view, new_patient_view, patient_view
from views.common import Ctx, open_run, report_sidebar, settings, warm_up

from multimodal.dashboard.cohort_stats import C_INDEX_NOTE, c_index_summary
from multimodal.dashboard.launch import ENV_PASSWORD, check_password
from multimodal.exceptions import MultimodalError

VIEWS = {
    "Cohort": cohort_view.render,
    "Patient": patient_view.render,
    "Compare": compare_view.render,
    "New patient": new_patient_view.render,
}


def authenticated() -> bool:
    """True when no password is set, or the right one was typed in this session."""
    expected = os.environ.get(ENV_PASSWORD)
    if not expected or st.session_state.get("authenticated"):
        return True
    st.title("multimodal dashboard")
    typed = st.text_input("Password", type="password", key="password")
    if typed:
        if check_password(typed, expected):
            st.session_state["authenticated"] = True
            st.session_state.pop("password", None)
            st.rerun()
        st.error("Wrong password.")
    return False


def main() -> None:
    st.set_page_config(page_title="multimodal dashboard", layout="wide")
    if not authenticated():
        return
    run_dir, cohort = settings()
    if not run_dir:
        st.error("No run folder given. Start the dashboard with `multimodal dashboard RUN_DIR`.")
        return
    try:
        run = open_run(run_dir, cohort)
    except MultimodalError as exc:
        st.error(f"Cannot open the run folder. {exc}")
        return
    with st.sidebar:
        st.title("multimodal")
        st.markdown(f"**Run** `{run.name}`  \n{', '.join(run.modalities)}")
        c = c_index_summary(run)
        if c["n_folds"]:
            ci = (
                ""
                if c["ci_low"] != c["ci_low"]
                else f" (95% CI {c['ci_low']:.3f}–{c['ci_high']:.3f})"
            )
            scope = f"{c['scope']}, " if c["scope"] else ""
            st.markdown(
                f"validation C-index **{c['estimate']:.3f}**{ci}  \n{scope}mean of "
                f"{c['n_folds']} folds",
                help=C_INDEX_NOTE,
            )
            if c["scope"]:
                st.caption(
                    "Landmark run: Harrell's C of each fold's validation patients at each "
                    "landmark, within the horizon, averaged over the landmarks and the folds; "
                    "the last row of the Cohort view's table of landmarks."
                )
            else:
                st.caption(
                    "Harrell's C of each fold's validation patients, averaged over the folds "
                    "(not pooled across fold models); the same number heads the Cohort view's "
                    "table."
                )
        view = st.radio("View", list(VIEWS), key="view")
        for note in run.notes:
            st.info(note)
        report_sidebar(run)
    ctx = Ctx(run_dir, cohort, run)
    try:
        VIEWS[view](ctx)
    except MultimodalError as exc:
        st.error(str(exc))
    warm_up(ctx)  # after the page is drawn: the fold models for the next pages


main()
