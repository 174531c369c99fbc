"""The web UI's entry point: one ``st.navigation`` over the page modules."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"  # not "pages/": Streamlit would list that folder itself

st.set_page_config(page_title="modelhub", page_icon=":package:", layout="wide")
models = st.Page(VIEWS / "models.py", title="Models", icon=":material/search:", url_path="models")


def start() -> None:
    """The app's root URL: the Models page, at its own path (Streamlit serves its default page
    at ``/`` only, so a default Models page would be "Page not found" at ``/models``)."""
    st.switch_page(models)


navigation = st.navigation({
    "Models": [
        st.Page(start, title="Start", url_path="start", default=True, visibility="hidden"),
        models,
        st.Page(VIEWS / "model.py", title="Model", icon=":material/deployed_code:", url_path="model"),
        st.Page(VIEWS / "try_it.py", title="Try it", icon=":material/play_arrow:", url_path="try"),
        st.Page(VIEWS / "publish.py", title="Publish", icon=":material/upload:", url_path="publish"),
    ],
    "Fine-tuning": [
        st.Page(VIEWS / "fine_tune.py", title="Fine-tune", icon=":material/tune:", url_path="finetune"),
        st.Page(VIEWS / "jobs.py", title="Jobs", icon=":material/list:", url_path="jobs"),
        st.Page(VIEWS / "job.py", title="Job", icon=":material/monitoring:", url_path="job"),
    ],
})
navigation.run()
