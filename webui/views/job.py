"""Job: one fine-tuning job (``?id=``): its state, progress, loss and eval curves, log, and result.

While the job is queued or running the page redraws itself every few seconds; it
stops once the job has finished.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from finetune import Job
from hub.errors import HubError
from webui import jobs
from webui.auth import OPEN, page_visitor
from webui.common import md, model_link, query_param, show_error, status_badge

RECENT = 50
REFRESH_SECONDS = 2.0
SCORES = ("accuracy", "macro_f1")  # evaluation metrics in [0, 1], charted on an axis of exactly that span
SERIES_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]  # distinct, in a chart's order
DASHES = [[1, 0], [6, 4], [2, 3], [8, 3, 2, 3], [4, 2], [1, 3]]  # solid first; lines that coincide stay apart
SHAPES = ["circle", "square", "diamond", "triangle-up", "cross", "triangle-down"]


def chosen_job_id() -> str | None:
    """``?id=``, or a pick from the recent jobs when the page was opened without one."""
    if job_id := query_param("id"):
        return job_id
    recent = jobs.list_jobs(visitor, limit=RECENT)
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
        job = jobs.cancel(visitor, job)
    except HubError as exc:
        show_error(exc)
        return job
    if job.status == "cancelled":
        st.success("Cancelled; nothing was published.", icon=":material/cancel:")
    else:
        st.info("Cancel requested: the job stops at the end of its current step (after a checkpoint); nothing is published.")
    return job


def line_chart(rows: list[dict[str, Any]], y_title: str, *, points: list[str], unit_interval: bool) -> None:
    """Lines of ``rows`` (``step``, ``series``, ``value``), a colour and a dash pattern each, with a
    legend; the series in ``points`` also get a hollow mark of their own shape at each value, so a
    single evaluation shows and two series that coincide both stay visible.

    Args:
        unit_interval: the values are scores in [0, 1]: the axis spans exactly that.
    """
    names = list(dict.fromkeys(row["series"] for row in rows))
    series = {"field": "series", "type": "nominal", "sort": names}
    encoding = {
        "x": {"field": "step", "type": "quantitative", "title": "step", "axis": {"tickMinStep": 1}, "scale": {"padding": 8}},
        "y": {"field": "value", "type": "quantitative", "title": y_title,
              "scale": {"padding": 8, **({"domain": [0, 1]} if unit_interval else {})}},
        "color": {**series, "title": None, "scale": {"domain": names, "range": SERIES_COLOURS[: len(names)]},
                  "legend": {"orient": "bottom", "symbolType": "stroke", "symbolStrokeWidth": 3}},
        "strokeDash": {**series, "legend": None, "scale": {"domain": names, "range": DASHES[: len(names)]}},
        "tooltip": [{"field": "series", "type": "nominal"}, {"field": "step", "type": "quantitative"},
                    {"field": "value", "type": "quantitative", "format": ".4f"}],
    }
    marks = {"type": "point", "filled": False, "size": 60, "strokeWidth": 2}
    shapes = {**series, "legend": None, "scale": {"domain": names, "range": SHAPES[: len(names)]}}
    layers = [{"mark": {"type": "line", "strokeWidth": 2}},
              {"mark": marks, "encoding": {"shape": shapes}, "transform": [{"filter": {"field": "series", "oneOf": points}}]}]
    st.vega_lite_chart(rows, {"encoding": encoding, "layer": layers}, width="stretch")


def show_metrics(job_id: str) -> None:
    """The loss by step (training, and validation after each epoch) on one chart, and the other
    evaluation metrics on another: scores in [0, 1] (accuracy, macro F1) on an axis of exactly that
    span, errors (MSE, MAE) on their own."""
    train = jobs.job_metrics(visitor, job_id, split="train")
    evaluations = jobs.job_metrics(visitor, job_id, split="eval")
    loss_column, eval_column = st.columns(2)
    with loss_column:
        st.markdown("**Loss**")
        losses = [{"step": m.step, "series": "training loss", "value": m.values["loss"]} for m in train if "loss" in m.values]
        losses += [{"step": m.step, "series": "validation loss", "value": m.values["loss"]} for m in evaluations if "loss" in m.values]
        if losses:
            line_chart(losses, "loss", points=["validation loss"], unit_interval=False)
        else:
            st.caption("No training step yet.")
    with eval_column:
        st.markdown("**Evaluation**")
        if evaluations:
            names = [name for name in dict.fromkeys(name for m in evaluations for name in m.values) if name != "loss"]
            scores = [{"step": m.step, "series": name, "value": m.values[name]} for m in evaluations for name in names if name in m.values]
            if scores:
                unit = all(name in SCORES for name in names)
                line_chart(scores, "score" if unit else "error", points=names, unit_interval=unit)
            st.caption(", ".join(f"{name} {value:.4f}" for name, value in evaluations[-1].values.items()) + f" at step {evaluations[-1].step}")
        else:
            st.caption("No evaluation yet; one runs after each epoch.")


def show_events(job_id: str) -> None:
    events = jobs.job_events(visitor, job_id)
    st.dataframe([{"time": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "level": e.level, "message": e.message} for e in events],
                 hide_index=True, width="stretch")


def show_outcome(job: Job) -> None:
    """The error of a failed job, or the published version of a succeeded one and how to load it."""
    if job.error:
        st.error(f"**{md(job.error['code'])}**: {md(job.error['message'])}", icon=":material/error:")
    if job.result:
        st.success(f"Published {model_link(job.result)}", icon=":material/check:")
        st.code(f'import hub\n\nmodel = hub.load("{job.result}")', language="python")


visitor = page_visitor()
st.title("Job")
if visitor.mode != OPEN and not visitor.signed_in:
    st.info("Fine-tuning jobs belong to users: sign in (in the sidebar) to see yours.")
    st.stop()
job_id = chosen_job_id()
if job_id is None:
    st.stop()
try:
    job = jobs.get_job(visitor, job_id)
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
    current = jobs.get_job(visitor, job_id)
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
