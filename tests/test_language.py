"""Ticket languages (`urgency.language`): tags normalised, detected offline when an export has none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from urgency.config import Source
from urgency.data import load_tickets
from urgency.language import detect_language, detect_languages, normalise_languages, normalise_tag


@pytest.mark.parametrize(
    ("tag", "normalised"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("en_us", "en"),
        ("EN", "en"),
        (" en-GB ", "en"),
        ("English", "en"),
        ("de-DE", "de"),
        ("deu", "de"),
        ("fr_CA", "fr"),
        ("pt-BR", "pt"),
        ("zh-Hant-TW", "zh"),
        ("", None),
        ("  ", None),
        (None, None),
        (float("nan"), None),
        ("klingon", "klingon"),  # kept, lower-cased: a rule may still name it
    ],
)
def test_tags_are_normalised(tag: object, normalised: str | None) -> None:
    assert normalise_tag(tag) == normalised


def test_a_column_is_normalised() -> None:
    values = pd.Series(["en-US", "EN", None, "de_de"], index=[3, 4, 5, 6])
    out = normalise_languages(values)
    assert out.tolist()[:2] == ["en", "en"] and out.isna().tolist() == [False, False, True, False]
    assert out[6] == "de" and list(out.index) == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("My laptop does not start since the update, please help", "en"),
        ("Printer broken again", "en"),
        ("Mein Drucker druckt seit gestern nicht mehr", "de"),
        ("Ich kann mich nicht anmelden, Passwort abgelaufen", "de"),
        ("Mon ordinateur ne démarre plus depuis la mise à jour", "fr"),
        ("Je n'arrive pas à me connecter à mon compte", "fr"),
    ],
)
def test_short_tickets_are_detected(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_detection_of_empty_text_is_unknown() -> None:
    assert detect_language("") is None
    out = detect_languages(pd.Series(["Bonjour, mon imprimante est en panne", None], index=[7, 8]))
    assert out[7] == "fr" and pd.isna(out[8])


def test_detection_works_offline() -> None:
    # The model ships inside the package: a fresh Python with the hub offline and every proxy
    # pointing nowhere still detects.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    script = (
        "from urgency.language import detect_language; print(detect_language('Das Netzwerk ist langsam'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "de"


def test_sources_normalise_or_detect_their_language(tmp_path: Path) -> None:
    tagged = tmp_path / "tagged.csv"
    pd.DataFrame(
        {
            "body": ["a b", "c d", "e f", "Der Drucker druckt seit gestern nur leere Seiten aus"],
            "lang": ["en-US", "EN", "de_DE", ""],  # a blank cell is detected
        }
    ).to_csv(tagged, index=False)
    untagged = tmp_path / "untagged.csv"
    pd.DataFrame(
        {
            "body": [
                "<p>The VPN keeps disconnecting every hour</p>",
                "Der Bildschirm bleibt schwarz beim Start",
            ]
        }
    ).to_csv(untagged, index=False)
    constant = tmp_path / "constant.csv"
    pd.DataFrame({"body": ["x"]}).to_csv(constant, index=False)
    sources = [
        Source(name="tagged", path=tagged, columns={"body": "body", "language": "lang"}),
        Source(name="untagged", path=untagged, columns={"body": "body"}),
        Source(name="constant", path=constant, columns={"body": "body"}, constants={"language": "en_GB"}),
    ]
    tickets = load_tickets(sources).tickets.set_index("source")
    assert tickets.loc["tagged", "language"].tolist() == ["en", "en", "de", "de"]
    assert tickets.loc["untagged", "language"].tolist() == ["en", "de"]
    assert tickets.loc["untagged", "body"].tolist()[0] == "The VPN keeps disconnecting every hour"
    assert tickets.loc[["constant"], "language"].tolist() == ["en"]


def test_rules_read_a_normalised_language() -> None:
    from tests.rules_helpers import make_rules, run

    rules = make_rules(routing_rules=[{"name": "german", "when": {"language": "de"}, "team": "hardware-de"}])
    for tag in ("de", "de-DE", "DE", "de_at"):
        assert run(rules, language=tag).team == "hardware-de", tag
    assert run(rules, language="en-US").team == "desk"


def test_drift_sees_one_language_whatever_the_tag() -> None:
    from urgency.drift import drift_report

    def frame(language: str) -> pd.DataFrame:
        return pd.DataFrame(
            {"subject": "", "body": ["printer broken"] * 10, "language": language, "urgency": "high"}
        )

    report = drift_report(frame("en"), frame("en-US"), heads=["urgency"])
    assert "language" not in report.drifted
