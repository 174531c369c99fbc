"""A model's page: its card, versions, aliases (set, move, history), files, exports, lineage and how to load it."""

from __future__ import annotations

import streamlit as st

from hub.errors import HubError
from hub.formatting import human_size
from webui.auth import page_visitor
from webui.common import card_body, md, model_link, query_param, show_error
from webui.tryout import try_mode

LINEAGE_DEPTH = 8
ALIAS_SET = "alias-set"  # session state: what the last "Set alias" did, shown once after the page is redrawn

visitor = page_visitor()
hub = visitor.hub
ref = query_param("ref")
if ref is None:
    names = [m.name for m in hub.list_models(limit=None, readable=visitor.readable())]
    if not names:
        st.info("The hub holds no model yet. Publish one on the Publish page.")
        st.stop()
    ref = st.selectbox("Model", names)
try:
    visitor.check_read(ref)  # a private model this visitor can't read is "not found", as a missing one
    version = hub.info(ref)
except HubError as error:
    show_error(error)
    st.stop()
name = version.name
versions = hub.list_versions(name)

st.title(name)
badges = [f":blue-badge[v{version.version}]"] + [f":green-badge[@{a}]" for a in version.aliases]
badges += [f":gray-badge[{md(t)}]" for t in (version.task, version.license, *version.tags) if t]
st.markdown(" ".join(badges))
if version.description:
    st.markdown(md(version.description))
runnable = try_mode(version, hub.model_spec(version)) is not None  # Try it only where that page can run the model
st.markdown((f"[Try it](/try?ref={version.ref}) · " if runnable else "") + f"[Fine-tune it](/finetune?ref={version.ref}) · "
            + " · ".join(model_link(v.ref, f"v{v.version}") for v in versions))

card_tab, versions_tab, aliases_tab, files_tab, exports_tab, lineage_tab, use_tab = st.tabs(
    ["Model card", "Versions", "Aliases", "Files", "Exports", "Lineage", "Use it"])

with card_tab:
    try:
        card = hub.read_card(version.ref)
        st.markdown(card_body(card) if card else f"_{version.ref} has no model card._")
    except HubError as error:  # a damaged store: say so here, show the rest
        show_error(error)

with versions_tab:
    st.dataframe(
        [{"version": v.version, "aliases": ", ".join(v.aliases), "size": human_size(v.size_bytes),
          "parameters": f"{v.num_parameters:,}", "dtype": v.dtype or "", "created": v.created_at.strftime("%Y-%m-%d %H:%M"),
          "parent": v.parent or "", **{k: round(x, 4) for k, x in v.metrics.items()}} for v in reversed(versions)],
        hide_index=True, width="stretch",
    )

with aliases_tab:
    aliases = {a: v.version for v in versions for a in v.aliases}
    st.markdown("\n".join(f"- `@{a}` → {model_link(f'{name}:{n}', f'v{n}')}" for a, n in sorted(aliases.items())) or "_No aliases._")
    if done := st.session_state.pop(ALIAS_SET, None):  # the page as it is after the move, drawn again
        st.success(done)
    with st.form("set-alias"):
        alias_column, version_column = st.columns(2)
        alias = alias_column.text_input("Alias", value="production")
        target = version_column.selectbox("Version", [v.version for v in reversed(versions)])
        if st.form_submit_button("Set alias"):
            try:
                with visitor.writing(name, f"setting @{alias.strip()} of {name!r}"):
                    hub.set_alias(name, alias, int(target))
            except HubError as error:
                show_error(error)
            else:  # the badges, the list above, the versions and the histories all show the old state: draw them again
                st.session_state[ALIAS_SET] = f"@{alias} now points at {name}:{target}"
                st.rerun()
    if aliases:
        with st.form("remove-alias"):
            gone = st.selectbox("Alias to remove", sorted(aliases), format_func=lambda a: f"@{a}", key="remove-alias")
            if st.form_submit_button("Remove alias"):
                try:
                    with visitor.writing(name, f"removing @{gone} of {name!r}"):
                        hub.delete_alias(name, gone)
                except HubError as error:
                    show_error(error)
                else:
                    st.session_state[ALIAS_SET] = f"@{gone} no longer points at a version of {name}"
                    st.rerun()
    for alias in sorted(aliases):
        st.caption(f"History of @{alias}")
        st.dataframe([{"from": c.from_version, "to": c.to_version, "by": c.changed_by, "when": c.changed_at.strftime("%Y-%m-%d %H:%M:%S")}
                      for c in hub.alias_history(name, alias)], hide_index=True)

with files_tab:
    st.dataframe([{"path": f.path, "size": human_size(f.size), "sha256": f.sha256} for f in version.files],
                 hide_index=True, width="stretch")

with exports_tab:
    try:
        exports = hub.list_exports(version.ref)
    except HubError as error:  # a damaged record, a server that can't be asked: say so here, show the rest
        show_error(error)
        exports = []
    if not exports:
        st.markdown(f"_{version.ref} has no exports._ Make one with `hub export {version.ref} --format onnx` (or `--format pt2`).")
    else:
        st.dataframe([{"format": r.format, "opset": r.opset or "", "max |diff|": f"{r.parity.get('max_abs_diff', float('nan')):.2g}",
                       "tolerance": f"{r.parity.get('tolerance', float('nan')):.0e}", "passed": bool(r.parity.get("passed")),
                       "shapes": ", ".join("x".join(map(str, s)) for s in r.parity.get("shapes", [])),
                       "provider": r.parity.get("provider") or "", "size": human_size(r.size_bytes), "exporter": r.exporter,
                       "created": r.created_at.strftime("%Y-%m-%d %H:%M"), "by": r.created_by} for r in exports],
                     hide_index=True, width="stretch")
        for record in exports:
            main = record.files[0]
            st.download_button(f"Download {main.path} ({human_size(main.size)})", key=f"export-{record.format}",
                               data=lambda r=record: (hub.download_export(version.ref, r.format) / r.files[0].path).read_bytes(),
                               file_name=f"{name.split('/')[-1]}-v{version.version}-{main.path}", mime="application/octet-stream")
            if len(record.files) > 1:
                st.caption(f"Its external-data files come with `hub download {version.ref} --export {record.format}`.")
        st.caption(f"Inputs: {', '.join(i['name'] for i in exports[0].inputs)}; outputs: {', '.join(o['name'] for o in exports[0].outputs)}. "
                   f"In Python: `hub.load_export(\"{version.ref}\")` gives an onnxruntime session.")

with lineage_tab:
    ancestors, cursor = [], version
    while cursor.parent and len(ancestors) < LINEAGE_DEPTH:
        try:
            visitor.check_read(cursor.parent)
            cursor = hub.info(cursor.parent)
        except HubError:  # the parent was deleted, or lives in another hub
            ancestors.append(cursor.parent)
            break
        ancestors.append(cursor.ref)
    children = [c.ref for c in hub.list_children(version.ref) if visitor.can_read(c.name)]
    chain = [*reversed(ancestors), version.ref]
    edges = [*zip(chain, chain[1:]), *((version.ref, child) for child in children)]
    nodes = [*chain, *children]
    dot = ["digraph lineage {", 'rankdir="LR";', 'node [shape=box, style="rounded,filled", fillcolor="#eef2ff", fontname="sans-serif"];']
    highlight = {version.ref: ', fillcolor="#c7d2fe"'}
    dot += [f'"{n}" [URL="/model?ref={n}", target="_self"{highlight.get(n, "")}];' for n in nodes]
    dot += [f'"{a}" -> "{b}";' for a, b in edges] + ["}"]
    st.graphviz_chart("\n".join(dot))
    st.markdown("Parents: " + (" ← ".join(model_link(a) for a in ancestors) or "none") + "  \n"
                + "Fine-tuned children: " + (", ".join(model_link(c) for c in children) or "none"))

with use_tab:
    st.code(f'import hub\nmodel = hub.load("{version.ref}")', language="python")
    st.code(f"hub download {version.ref} --to ./{name.split('/')[-1]}\nfinetune submit {version.ref} data.csv --output me/{name.split('/')[-1]}-ft",
            language="bash")
