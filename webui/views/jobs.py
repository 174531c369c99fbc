"""Jobs: every fine-tuning job, newest first, refreshing itself while any job is queued or running."""

from __future__ import annotations

import streamlit as st

from finetune import STATUSES, Job
from webui import jobs as job_api
from webui.auth import OPEN, page_visitor
from webui.common import job_link, md, model_link, status_badge

ACTIVE = ("queued", "running")
LIMIT = 200
REFRESH_SECONDS = 2.0


def any_active() -> bool:
    """Whether some job is queued or running, so the table is worth refreshing."""
    return any(job_api.list_jobs(visitor, status, limit=1) for status in ACTIVE)


def table_row(job: Job) -> str:
    """One job as a Markdown table row, with links to its page, its base and its result."""
    result = model_link(job.result) if job.result else ""
    cells = [job_link(job.id), status_badge(job.status), model_link(job.base), job.output, md(job.task), f"{job.progress:.0%}",
             result, job.created_at.strftime("%Y-%m-%d %H:%M UTC")]
    return "| " + " | ".join(cells) + " |"


visitor = page_visitor()
st.title("Jobs")
if visitor.mode != OPEN and not visitor.signed_in:
    st.info("Fine-tuning jobs belong to users: sign in (in the sidebar) to see yours.")
    st.stop()
status = st.selectbox("Status", ["any", *STATUSES], key="status")
refreshing = any_active()


@st.fragment(run_every=REFRESH_SECONDS if refreshing else None)
def jobs_table() -> None:
    """The jobs table; while jobs are queued or running it redraws itself every few seconds."""
    jobs = job_api.list_jobs(visitor, None if status == "any" else status, limit=LIMIT)
    if not jobs:
        st.info("No fine-tuning job yet. Start one on the Fine-tune page, or with `finetune submit`.")
    else:
        st.caption(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}, newest first" + (f" (the latest {LIMIT})" if len(jobs) == LIMIT else ""))
        header = "| job | status | base | output | task | progress | result | created |\n|---|---|---|---|---|---|---|---|\n"
        st.markdown(header + "\n".join(table_row(job) for job in jobs))
    if refreshing and not any_active():
        st.rerun()  # the last job finished: draw the page once more, without the timer


jobs_table()
