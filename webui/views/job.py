"""Job: one fine-tuning job (``?id=``): its state, progress, loss and eval curves, log, and result.

While the job is queued or running the page redraws itself every few seconds; it
stops once the job has finished.
"""

from __future__ import annotations

import streamlit as st

import finetune
from finetune import Job
from hub.errors import HubError
from webui.common import md, model_link, query_param, show_error, status_badge

RECENT = 50
REFRESH_SECONDS = 2.0


def chosen_job_id() -> str | None:
    """``?id=``, or a pick from the recent jobs when the page was opened without one."""
    if job_id := query_param("id"):
        return job_id
    recent = finetune.list_jobs(limit=RECENT)
    if not recent:
        st.info("No fine-tuning job yet. Start one on the Fine-tune page, or with `finetune submit`.")
        return None
    return st.selectbox("Job", [job.id for job in recent], key="job",
                        format_func=lambda job_id: next(f"{j.id} · {j.status} · {j.output}" for j in recent if j.id == job_id))


def show_cancel(job: Job) -> Job:
    """A Cancel button for an unfinished job; returns the job as it is after a click."""
    if job.finished or not st.button("Cancel job", key="cancel", disabled=job.cancel_requested):
        if job.cancel_requested and not job.finished:
            st.caption("Cancel requested: the job stops after its current step.")
        return job
    try:
        job = finetune.cancel(job.id)
    except HubError as exc:
        show_error(exc)
        return job
    if job.status == "cancelled":
        st.success("Cancelled; nothing was published.", icon=":material/cancel:")
    else:
        st.info("Cancel requested: the job stops at the end of its current step (after a checkpoint); nothing is published.")
    return job


def show_metrics(job_id: str) -> None:
    """The training loss by step and the evaluation metrics by step."""
    train = finetune.job_metrics(job_id, split="train")
    evaluations = finetune.job_metrics(job_id, split="eval")
    loss_column, eval_column = st.columns(2)
    with loss_column:
        st.markdown("**Training loss**")
        if train:
            st.line_chart({"step": [m.step for m in train], "loss": [m.values.get("loss") for m in train]}, x="step", y="loss")
        else:
            st.caption("No training step yet.")
    with eval_column:
        st.markdown("**Evaluation**")
        if evaluations:
            names = list(dict.fromkeys(name for m in evaluations for name in m.values))
            st.line_chart({"step": [m.step for m in evaluations], **{name: [m.values.get(name) for m in evaluations] for name in names}},
                          x="step", y=names)
            st.caption(", ".join(f"{name} {value:.4f}" for name, value in evaluations[-1].values.items()) + f" at step {evaluations[-1].step}")
        else:
            st.caption("No evaluation yet; one runs after each epoch.")


def show_events(job_id: str) -> None:
    events = finetune.job_events(job_id)
    st.dataframe([{"time": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "level": e.level, "message": e.message} for e in events],
                 hide_index=True, width="stretch")


def show_outcome(job: Job) -> None:
    """The error of a failed job, or the published version of a succeeded one and how to load it."""
    if job.error:
        st.error(f"**{md(job.error['code'])}**: {md(job.error['message'])}", icon=":material/error:")
    if job.result:
        st.success(f"Published {model_link(job.result)}", icon=":material/check:")
        st.code(f'import hub\n\nmodel = hub.load("{job.result}")', language="python")


st.title("Job")
job_id = chosen_job_id()
if job_id is None:
    st.stop()
try:
    job = finetune.get_job(job_id)
except HubError as exc:
    show_error(exc)
    st.stop()

st.subheader(job.id)
st.markdown(f"Fine-tune {model_link(job.base)} ({md(job.task)}) into **{job.output}**, by {md(job.created_by or 'unknown')}, "
            f"created {job.created_at:%Y-%m-%d %H:%M UTC}")
job = show_cancel(job)


@st.fragment(run_every=None if job.finished else REFRESH_SECONDS)
def live_view(was_finished: bool) -> None:
    """Everything that changes while the job runs; redraws itself every few seconds until the job finishes."""
    current = finetune.get_job(job_id)
    if current.finished and not was_finished:
        st.rerun()  # it just finished: draw the whole page again, without the timer and the Cancel button
    st.markdown(f"Status: {status_badge(current.status)}" + (f" · worker {md(current.worker)}" if current.worker else ""))
    steps = f"step {current.step} of {current.total_steps}" if current.total_steps else f"{current.status}: no step yet"
    st.progress(current.progress, text=steps)
    show_outcome(current)
    show_metrics(job_id)
    st.markdown("**Events**")
    show_events(job_id)


live_view(job.finished)
