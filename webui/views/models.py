"""Models: search, filter, sort and page through every model in the hub."""

from __future__ import annotations

import streamlit as st

from hub.formatting import human_size
from webui.auth import page_visitor
from webui.common import md, model_link

PAGE_SIZE = 50
SORTS = {"name": "Name", "updated": "Recently updated", "size": "Size"}

visitor = page_visitor()
hub = visitor.hub
readable = visitor.readable()
st.title("Models")


@st.cache_data(ttl=15, show_spinner=False)
def facets_of(visitor_key: str) -> dict[str, list[str]]:
    """The filter choices of the models this visitor may list (``visitor_key`` tells visitors apart);
    they change only when models are published, so a few seconds' cache is fine."""
    return hub.model_facets(readable=readable)


facets = facets_of(visitor.key)
search_column, task_column, tag_column, license_column, sort_column = st.columns([3, 1, 1, 1, 1])
search = search_column.text_input("Search", placeholder="name or description", key="search")
task = task_column.selectbox("Task", ["any", *facets["task"]], key="task")
tag = tag_column.selectbox("Tag", ["any", *facets["tag"]], key="tag")
license_ = license_column.selectbox("License", ["any", *facets["license"]], key="license")
sort = sort_column.selectbox("Sort by", list(SORTS), format_func=SORTS.__getitem__, key="sort")

filters = {"task": None if task == "any" else task, "tag": None if tag == "any" else tag,
           "license": None if license_ == "any" else license_}
total = hub.count_models(search or None, readable=readable, **filters)
pages = max(1, -(-total // PAGE_SIZE))
page = st.number_input("Page", min_value=1, max_value=pages, value=1, key="page") if pages > 1 else 1
models = hub.list_models(search or None, sort=sort, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, readable=readable, **filters)

st.caption(f"{total:,} model{'s' if total != 1 else ''}" + (f" · page {page} of {pages}" if pages > 1 else ""))
if not models:
    st.info("No model matches. Publish one on the Publish page, or with `hub publish` / `hub.publish()`.")
rows = [
    f"| {model_link(m.name)} | {m.latest_version} | {m.num_versions} | {md(m.task or '')} | {md(', '.join(m.tags))} | {md(m.license or '')} "
    f"| {human_size(m.size_bytes)} | {' '.join(f'`@{a}`→{v}' for a, v in sorted(m.aliases.items()))} | {m.updated_at:%Y-%m-%d %H:%M} |"
    for m in models
]
if rows:
    st.markdown("\n".join(["| model | latest | versions | task | tags | license | size | aliases | updated |",
                           "|---|--:|--:|---|---|---|--:|---|---|", *rows]))
