"""The web UI's Models and Model pages, driven by Streamlit's AppTest on a real registry."""

from __future__ import annotations

import pytest
import torch

import hub
from conftest import ROOT

pytestmark = pytest.mark.one_backend  # the Models pages' rendering; listings are tested on both (test_registry, test_access)

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
PAGES = ROOT / "webui" / "views"


def page(name: str, **query: str):
    app = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    for key, value in query.items():
        app.query_params[key] = value
    return app.run()


def markdown(app) -> str:
    return "\n".join(element.value for element in app.markdown)


@pytest.fixture
def models():
    torch.manual_seed(0)
    base = hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), "acme/iris-mlp", task="classification",
                       tags=["tabular"], license="mit", description="Iris species from four measurements",
                       card={"text": "# Iris MLP\n\nTrained on the iris measurements."}, aliases=["production"])
    child = hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), "acme/iris-mlp-ft", parent=base.ref,
                        task="classification", tags=["tabular", "fine-tuned"], license="apache-2.0")
    hub.publish(hub.create("convnet"), "acme/digits-cnn", task="image-classification", tags=["images"], license="mit")
    return base, child


def test_search_and_filters_narrow_the_list(models):
    everything = page("models")
    assert not everything.exception
    assert all(name in markdown(everything) for name in ("acme/iris-mlp", "acme/iris-mlp-ft", "acme/digits-cnn"))
    assert "3 models" in everything.caption[0].value

    searched = everything.text_input(key="search").input("iris").run()
    assert "acme/digits-cnn" not in markdown(searched) and "2 models" in searched.caption[0].value
    tagged = searched.selectbox(key="tag").select("fine-tuned").run()
    assert "acme/iris-mlp-ft" in markdown(tagged) and "(/model?ref=acme%2Firis-mlp)" not in markdown(tagged)
    assert "1 model" in tagged.caption[0].value
    licensed = page("models").selectbox(key="license").select("mit").run()
    assert "acme/iris-mlp-ft" not in markdown(licensed) and "2 models" in licensed.caption[0].value


def test_model_page_shows_card_versions_lineage_and_snippet(models):
    base, child = models
    app = page("model", ref="acme/iris-mlp")
    assert not app.exception
    text = markdown(app)
    assert "Trained on the iris measurements." in text and ":green-badge[@production]" in text
    assert "acme/iris-mlp-ft:1" in text  # the fine-tuned child, under Lineage
    assert 'hub.load("acme/iris-mlp:1")' in app.code[0].value
    assert base.ref in app.get("graphviz_chart")[0].proto.spec and child.ref in app.get("graphviz_chart")[0].proto.spec
    child_page = page("model", ref=child.ref)
    assert "Parents: [acme/iris-mlp:1]" in markdown(child_page)


def test_moving_an_alias_on_the_page_moves_it_in_the_hub(models):
    hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), "acme/iris-mlp")
    app = page("model", ref="acme/iris-mlp")
    app.text_input[0].input("production")
    app.selectbox[0].select(2)
    app = app.button[0].click().run()
    assert not app.exception and "@production now points at acme/iris-mlp:2" in app.success[0].value
    assert hub.info("acme/iris-mlp@production").version == 2
    assert [(c.from_version, c.to_version) for c in hub.alias_history("acme/iris-mlp", "production")] == [(None, 1), (1, 2)]


def test_after_setting_an_alias_the_page_shows_it_everywhere(models):
    hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), "acme/iris-mlp")
    app = page("model", ref="acme/iris-mlp")
    assert "`@staging`" not in markdown(app)
    app.text_input[0].input("staging")
    app = app.button[0].click().run()  # the version picker's first choice: v2, the latest
    assert not app.exception and "@staging now points at acme/iris-mlp:2" in app.success[0].value
    text = markdown(app)
    assert "- `@staging` → [v2](/model?ref=acme%2Firis-mlp%3A2)" in text  # the alias list above the form
    assert ":green-badge[@staging]" in text  # the badges of v2, the version shown
    assert "History of @staging" in [caption.value for caption in app.caption]
    assert app.dataframe[0].value["aliases"].tolist() == ["staging", "production"]  # the versions table, newest first
    assert not page("model", ref="acme/iris-mlp").success  # said once


def test_an_unknown_model_is_an_error_not_a_traceback(models):
    app = page("model", ref="acme/nothing")
    assert not app.exception and "acme/nothing" in app.error[0].value


LINK = "[click me](https://evil.example/{})"


def test_user_text_is_escaped_where_markdown_renders_it(hub_home):
    """Tags, task, license and description hold Markdown link syntax: every page shows them as
    typed text, and no link but the UI's own comes out of them."""
    hub.publish({"w": torch.zeros(2)}, "acme/evil", tags=[LINK.format("tag"), "plain"], task=LINK.format("task"),
                license="<https://evil.example/license>", description="see www.evil.example or https://evil.example/d | x")
    from conftest import live_links

    listing = page("models")
    assert not listing.exception and live_links(listing) == []
    table = markdown(listing)
    assert r"\[click me\](https\://evil.example/tag), plain" in table and r"\<https\://evil.example/license\>" in table
    assert r"\[click me\](https\://evil.example/task)" in table
    assert table.count("\n") == 2  # header, rule, one row: no text broke out of its cell

    model = page("model", ref="acme/evil")
    assert not model.exception and live_links(model) == []
    assert r":gray-badge[\[click me\](https\://evil.example/tag)]" in markdown(model)
    assert r"see www\.evil.example or https\://evil.example/d \| x" in markdown(model)
