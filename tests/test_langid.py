"""Reading the language of an entry that declares none (`aggregator.langid`)."""

from __future__ import annotations

import pytest

from aggregator.langid import identify


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Apple releases iOS 7.1 update for iPhone with CarPlay and a new camera", "en"),
        ("Die Hard star Bruce Willis says the war in the film was real", "en"),
        ("Des centaines de tracteurs ont bloqué les routes de la région pendant la journée", "fr"),
        ("Det kan löna sig att ta körkortet i en intensiv fart", "sv"),
        ("Madeira: Unternehmensplanung aus Microsofts Public Cloud", "de"),
        ("O candidato continua líder com 28% das intenções de voto, sem crescimento", "pt"),
        ("Новости: в Минске открылся новый мост через Свислочь", "ru"),
    ],
)
def test_the_language_of_a_headline_is_read(text: str, language: str) -> None:
    assert identify(text) == language


@pytest.mark.parametrize("text", ["", "   ", "iPhone 6", "2024-11-26", "OK"])
def test_no_language_when_the_text_does_not_tell(text: str) -> None:
    assert identify(text) is None
