import stat

import pytest

from engine.config import Settings
from engine.errors import ConfigError


def test_key_file_is_created_owner_only_and_reused(tmp_path):
    settings = Settings.from_env({"HERALD_VAR": str(tmp_path)})
    key = tmp_path / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Settings.from_env({"HERALD_VAR": str(tmp_path)}).secret == settings.secret
    assert settings.db_url == f"sqlite:///{tmp_path / 'herald.db'}"


def test_key_file_readable_by_others_is_refused(tmp_path):
    key = tmp_path / "secret.key"
    key.write_text("x" * 64)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Settings.from_env({"HERALD_VAR": str(tmp_path)})


def test_short_secret_is_refused():
    with pytest.raises(ConfigError, match="HERALD_SECRET"):
        Settings.from_env({"HERALD_SECRET": "short"})


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://host", "smtp://"),
        ("smtp://host?bogus=1", "unknown option"),
        ("smtp://host?starttls=maybe", "true or false"),
    ],
)
def test_bad_smtp_url_is_a_config_error(url, fragment):
    from engine.delivery.channels.smtp import SmtpSettings

    with pytest.raises(ConfigError, match=fragment):
        SmtpSettings.from_url(url)
