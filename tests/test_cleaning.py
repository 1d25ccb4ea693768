"""Text cleaning (`urgency.cleaning`): HTML to text, quoted replies and signatures removed, and the
cleaning carried inside every saved model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from urgency.cleaning import CLEANED, NOTHING, Cleaning, TextCleaner, clean_text, clean_texts, looks_like_html
from urgency.config import ParamsError, load_params
from urgency.predict import models_cleaning, predict_frame
from urgency.text import ticket_text

from .conftest import params_dict, write_params, write_sources

HTML_CASES = [
    # (what, raw text, cleaned text)
    ("entities", "Fish &amp; chips &lt; 5 &euro; &#39;ok&#39;", "Fish & chips < 5 € 'ok'"),
    ("entities in HTML", "<p>caf&eacute; &nbsp;&gt;&nbsp;bar</p>", "café > bar"),
    ("br", "line one<br>line two<br/>line three<BR />four", "line one\nline two\nline three\nfour"),
    ("list items", "<ul><li>first</li><li>second</li></ul><ol><li>third</li></ol>", "first\nsecond\nthird"),
    ("paragraphs", "<p>Hello</p><p>World</p>", "Hello\nWorld"),
    ("inline tags join words", "<p>The <b>server</b> is <span>down</span>!</p>", "The server is down!"),
    ("nested", "<div><div><p>deep <em>text <u>here</u></em></p></div></div>", "deep text here"),
    ("broken HTML", "<div><p>unclosed <b>bold and <i>italic", "unclosed bold and italic"),
    ("stray close tag", "text</p> more</div>", "text\nmore"),
    (
        "script and style dropped",
        "<style>p{color:red}</style><p>visible</p><script>alert(1)</script>",
        "visible",
    ),
    ("head dropped", "<html><head><title>t</title></head><body>body text</body></html>", "body text"),
    ("comments dropped", "before<!-- a comment -->after", "beforeafter"),
    ("table cells", "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
    ("not HTML: a < b", "if a < b and c > d then", "if a < b and c > d then"),
    ("not HTML: heart", "love it <3", "love it <3"),
    ("not HTML: placeholders", "Dear <name>, call <tel_num>", "Dear <name>, call <tel_num>"),
    (
        "not HTML: e-mail address",
        "mail John <john@example.com> please",
        "mail John <john@example.com> please",
    ),
    ("ampersand kept", "AT&T and R&D", "AT&T and R&D"),
    ("zero-width and nbsp", "a\u200bb\xa0\xa0c", "ab c"),
    ("gmail wrapper", '<div dir="ltr"><p>Printer on fire</p></div>', "Printer on fire"),
]


@pytest.mark.parametrize(("what", "raw", "cleaned"), HTML_CASES, ids=[case[0] for case in HTML_CASES])
def test_html_edge_cases(what: str, raw: str, cleaned: str) -> None:
    assert clean_text(raw) == cleaned
    # Idempotent: cleaned text passes through unchanged.
    assert clean_text(cleaned) == cleaned


QUOTE_CASES = [
    (
        "gmail reply",
        "Still broken.\n\nOn Mon, 3 Feb 2025 at 10:00, Ann <ann@x.com> wrote:\n> old text",
        "Still broken.",
    ),
    (
        "wrapped gmail header",
        "Still broken.\nOn Mon, 3 Feb 2025 at 10:00 Ann Smith <ann@x.com>\nwrote:\n> old",
        "Still broken.",
    ),
    ("outlook", "Please fix.\n-----Original Message-----\nFrom: a\nSent: b\nold", "Please fix."),
    ("outlook headers", "Please fix.\nFrom: Bob <b@x.com>\nSent: Monday\nTo: desk\nold", "Please fix."),
    ("german", "Geht nicht.\nAm 03.02.2025 um 10:00 schrieb Ann <a@x.de>:\n> alt", "Geht nicht."),
    (
        "french",
        "Ça ne marche pas.\nLe lun. 3 févr. 2025, Ann <a@x.fr> a écrit :\n> vieux",
        "Ça ne marche pas.",
    ),
    ("inline quotes", "> you said\nmy answer\n> more\nsecond answer", "my answer\nsecond answer"),
    ("signature delimiter", "Help me.\n-- \nJohn Smith\nACME Corp", "Help me."),
    ("device lines", "Help me.\nSent from my iPhone", "Help me."),
    ("device lines de", "Hilfe.\nVon meinem iPhone gesendet", "Hilfe."),
    ("outlook mobile", "Help.\n\nGet Outlook for Android", "Help."),
    ("html blockquote", "<p>answer</p><blockquote>quoted</blockquote>", "answer"),
    (
        "gmail html quote",
        '<div>new</div><div class="gmail_quote">On x wrote:<blockquote>old</blockquote></div>',
        "new",
    ),
    ("dashes in text kept", "version 2 -- beta -- is broken", "version 2 -- beta -- is broken"),
    ("on in text kept", "On my laptop the app crashes", "On my laptop the app crashes"),
]


@pytest.mark.parametrize(("what", "raw", "cleaned"), QUOTE_CASES, ids=[case[0] for case in QUOTE_CASES])
def test_quoted_replies_and_signatures_removed(what: str, raw: str, cleaned: str) -> None:
    assert clean_text(raw) == cleaned
    assert clean_text(cleaned) == cleaned


def test_each_step_can_be_switched_off() -> None:
    text = "<p>Help</p>\n> quoted\n-- \nJohn"
    assert clean_text(text, Cleaning(html=False)) == "<p>Help</p>"
    assert clean_text(text, Cleaning(quoted_replies=False)) == "Help\n> quoted"
    assert clean_text(text, Cleaning(signatures=False)) == "Help\n--\nJohn"
    assert clean_text(text, NOTHING) == "<p>Help</p>\n> quoted\n--\nJohn"


def test_missing_values_and_series() -> None:
    values = pd.Series(["<b>x</b>", None, float("nan"), 3], index=[5, 6, 7, 8])
    cleaned = clean_texts(values, Cleaning())
    assert cleaned.tolist() == ["x", "", "", "3"]
    assert list(cleaned.index) == [5, 6, 7, 8]
    assert looks_like_html("<div>") and not looks_like_html("x <y> z")


def test_cleaning_happens_before_the_cut() -> None:
    # Markup must not use up the length: the same words survive the cut either way.
    body = pd.Series(["<div style='" + "x" * 200 + "'><p>printer on fire</p></div>"])
    assert ticket_text(None, body, 40, Cleaning()).tolist() == ["printer on fire"]
    assert ticket_text(None, body, 40).tolist() == [body[0][:40]]


def test_text_cleaner_step_is_stateless_and_keeps_settings() -> None:
    step = TextCleaner(html=False)
    frame = pd.DataFrame({"text": ["<b>x</b>\n> q"], "other": [1]})
    out = step.fit(frame).transform(frame)
    assert out["text"].tolist() == ["<b>x</b>"] and out["other"].tolist() == [1]
    assert frame["text"].tolist() == ["<b>x</b>\n> q"]  # the input is not changed
    assert step.get_params() == {"html": False, "quoted_replies": True, "signatures": True}


def test_heads_cleaning_the_same_batch_clean_it_once() -> None:
    """Three heads of a model set read one batch: it is cleaned once, and each head gets its own
    copy (a head changing its frame cannot change what the next head reads)."""
    frame = pd.DataFrame({"text": ["<p>Printer &amp; scanner down</p>", "> quoted\nreal text"]})
    before = CLEANED.computed
    outputs = [TextCleaner().transform(frame) for _ in range(3)]
    assert CLEANED.computed == before + 1
    assert all(out["text"].tolist() == ["Printer & scanner down", "real text"] for out in outputs)
    outputs[0].loc[0, "text"] = "changed"
    assert TextCleaner().transform(frame)["text"].tolist()[0] == "Printer & scanner down"
    # Other settings clean for themselves; a missing text is cleaned without the memo.
    TextCleaner(html=False).transform(frame)
    assert CLEANED.computed == before + 2
    missing = TextCleaner().transform(pd.DataFrame({"text": [None, "<b>x</b>"]}))
    assert missing["text"].tolist() == ["", "x"] and CLEANED.computed == before + 2


# ---------------------------------------------------------------------------------------------
# Settings in the params


def _params_with(
    tmp_path: Path, data_cleaning: dict[str, Any] | None, source_cleaning: dict[str, Any] | None
) -> Any:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    if data_cleaning is not None:
        data["data"]["cleaning"] = data_cleaning
    if source_cleaning is not None:
        data["data"]["sources"][0]["cleaning"] = source_cleaning
    return load_params(write_params(tmp_path, data))


def test_sources_inherit_the_params_level_cleaning(tmp_path: Path) -> None:
    params = _params_with(tmp_path, {"signatures": False}, {"signatures": True})
    assert params.data.cleaning.signatures is False
    first, second = params.data.sources[0], params.data.sources[1]
    assert first.cleaning.signatures is True and first.cleaning.html is True
    assert second.cleaning.signatures is False  # inherited


def test_a_source_cannot_switch_off_what_the_model_does(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"tickets.*html off has no effect"):
        _params_with(tmp_path, None, {"html": False})


# ---------------------------------------------------------------------------------------------
# Inside the saved model

PLAIN = "server down outage ticket 1"
WRAPPED = [
    f'<div dir="ltr"><p>{PLAIN}</p></div>',
    f"<html><head><style>p{{}}</style></head><body><p>{PLAIN.replace(' ', '&nbsp;')}</p></body></html>",
    f"{PLAIN}\n\nOn Mon, 3 Feb 2025 at 10:00, Ann <ann@x.com> wrote:\n> thanks for help\n> invoice",
    f"<p>{PLAIN}</p>\n-- \nAnn<br>love the new app\nSent from my iPhone",
]


def test_html_wrapped_text_gets_the_plain_texts_probabilities(trained: dict[str, Any], models: Any) -> None:
    # The loaded baseline models (a saved, registered and reloaded artifact), alone and through
    # predict_frame: the same probabilities for the plain text and every wrapped form.
    for model in models.values():
        plain = model.model.predict(pd.DataFrame({"text": [PLAIN]}))
        wrapped = model.model.predict(pd.DataFrame({"text": WRAPPED}))
        np.testing.assert_allclose(wrapped, np.repeat(plain, len(WRAPPED), axis=0), atol=1e-6, rtol=0)
    frame = pd.DataFrame({"body": [PLAIN, *WRAPPED]})
    out = predict_frame(models, frame, subject_column=None, body_column="body", max_text_chars=5000)
    probabilities = out.filter(like="_proba_").to_numpy()
    np.testing.assert_allclose(probabilities, np.repeat(probabilities[:1], len(frame), axis=0), atol=1e-6)
    assert models_cleaning(models) == Cleaning()


def test_the_logged_model_carries_its_cleaning(trained: dict[str, Any]) -> None:
    params, outcome = trained["params"], trained["result"].heads["urgency"]
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    info = mlflow.models.get_model_info(outcome.model_uri)
    assert info.metadata["cleaning"] == {"html": True, "quoted_replies": True, "signatures": True}
    folder = Path(mlflow.artifacts.download_artifacts(outcome.model_uri))
    assert (folder / "code" / "urgency" / "cleaning.py").exists()
    requirements = (folder / "requirements.txt").read_text().split()
    assert any(r.startswith("selectolax==") for r in requirements)
    example = json.loads((folder / "input_example.json").read_text())
    assert not any("<" in str(row) for row in example["data"])


def test_a_saved_model_cleans_where_urgency_is_not_installed(trained: dict[str, Any], tmp_path: Path) -> None:
    # What `mlflow models serve` of an exported folder does: load the folder in a fresh Python
    # whose path has no urgency source; the model's own code folder supplies the cleaning.
    params, outcome = trained["params"], trained["result"].heads["sentiment"]
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    folder = tmp_path / "model"
    shutil.copytree(mlflow.artifacts.download_artifacts(outcome.model_uri), folder)
    script = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({str(folder)!r})\n"
        "import urgency.cleaning\n"
        "assert urgency.cleaning.__file__.startswith(sys.argv[1]), urgency.cleaning.__file__\n"
        f"texts = [{PLAIN!r}, *{WRAPPED!r}]\n"
        "print(json.dumps(model.predict(pd.DataFrame({'text': texts})).tolist()))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probabilities = np.asarray(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(
        probabilities, np.repeat(probabilities[:1], len(probabilities), axis=0), atol=1e-6
    )


def test_placeholders_and_comparisons_survive_inside_html() -> None:
    assert clean_text("<p>Dear <name>, if a < b call <tel_num></p>") == "Dear <name>, if a < b call <tel_num>"
    subject_and_html = "Order <order_id> late\n<div>Hello <b>team</b></div>"
    assert clean_text(subject_and_html) == "Order <order_id> late\nHello team"


def test_escaped_tags_stay_text_and_cleaning_stays_idempotent() -> None:
    # A Jira issue quoting code: the decoded tag must not be read as HTML by a second pass.
    raw = "binding it to a &lt;script&gt; tag fails; see <b>TestPage.html</b>: &lt;/head&gt;"
    once = clean_text(raw)
    assert once == "binding it to a \u2039script> tag fails; see TestPage.html: \u2039/head>"
    assert clean_text(once) == once
    assert clean_text("x&nbsp;y &lt;b&gt; z") == "x y \u2039b> z"


def test_real_tickets_clean_idempotently() -> None:
    # Every body of the shared sources, as written: one pass cleans, a second changes nothing.
    from .conftest import SHARED_DATA

    files = {
        "jira_issues_priority.csv": "description",
        "support_tickets_synthetic.csv": "body",
        "airline_tweets_sentiment.csv": "text",
        "it_helpdesk_coded.csv": "body",
    }
    for name, column in files.items():
        path = SHARED_DATA / name
        if not path.exists():
            pytest.skip(f"{path} is not here")
        once = clean_texts(pd.read_csv(path, usecols=[column])[column], Cleaning())
        again = clean_texts(once, Cleaning())
        assert (once != again).sum() == 0, once[once != again].head(3).tolist()


def test_corrections_from_the_store_are_cleaned_and_their_language_normalised(tmp_path: Path) -> None:
    # The service stores a ticket as sent; as a training row it reads as the models read it.
    from urgency.history import corrections_frame

    params = load_params(
        write_params(tmp_path, params_dict(write_sources(tmp_path / "data"), tmp_path / "m"))
    )
    decisions = pd.DataFrame(
        {
            "ticket_id": ["T-1"],
            "subject": ["<b>Printer</b>"],
            "body": ["<p>on fire</p>\nOn Mon, 3 Feb 2025, Ann <a@x.com> wrote:\n> old"],
            "fields": [json.dumps({"language": "en-US"})],
            "created_at": ["2026-01-05T09:00:00Z"],
            "decided_at": ["2026-01-05T10:00:00Z"],
            "agent_urgency": ["high"],
        }
    )
    frame, ignored = corrections_frame(decisions, params)
    assert frame.loc[0, ["subject", "body", "language"]].tolist() == ["Printer", "on fire", "en"]
    assert ignored == 0


def test_a_line_starting_with_on_before_a_reply_header_stays() -> None:
    assert clean_text("on fire\nOn Mon, 3 Feb 2025, Ann <a@x.com> wrote:\n> old") == "on fire"
    assert clean_text("On it now\nthanks") == "On it now\nthanks"


def test_a_comparison_is_not_a_quoted_line() -> None:
    assert clean_text("Outage\n> 100 users affected\n>= 5 errors a minute\n> quoted") == (
        "Outage\n> 100 users affected\n>= 5 errors a minute"
    )


def test_indented_markers_count() -> None:
    assert clean_text("Hi\n   -- \nJohn") == "Hi"
    assert clean_text("Hi\n  > quoted\nthere") == "Hi\nthere"
