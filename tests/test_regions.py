import pytest

from engine.authoring.regions import region_data


def test_regions_eu_has_27_states_plus_outermost_regions_and_aland():
    eu = region_data().regions["EU"]
    states = eu - {"RE", "GP", "MQ", "GF", "YT", "MF", "AX"}
    assert len(states) == 27
    assert {"RE", "GP", "MQ", "GF", "YT", "MF", "AX"} <= eu
    assert "GB" not in eu
    assert "CH" not in eu
    assert "NO" not in eu


def test_regions_eea_is_eu_plus_iceland_liechtenstein_norway():
    data = region_data()
    assert data.regions["EEA"] == data.regions["EU"] | {"IS", "LI", "NO"}
    assert data.regions["EFTA"] == {"IS", "LI", "NO", "CH"}
    assert data.regions["UK"] == {"GB"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("EL", "GR"),
        ("uk", "GB"),
        ("de", "DE"),
        ("NO", "NO"),
        ("XX", None),
        ("EU", None),
    ],
)
def test_regions_country_code_accepts_eurostat_aliases(given, expected):
    assert region_data().country_code(given) == expected


@pytest.mark.parametrize(
    ("country", "first_language"),
    [
        ("BE", "nl"),
        ("LU", "fr"),
        ("NO", "nb"),
        ("CY", "el"),
        ("AX", "sv"),
        ("BR", "pt"),
    ],
)
def test_regions_each_country_knows_its_official_languages(country, first_language):
    assert region_data().country(country).languages[0] == first_language
