"""Settings safety: a URL with a password is refused from assistant.yml, allowed from the environment."""
import pytest

from core.settings import SettingsError, load_settings

URLS = {
    "database_url": ("postgresql://rasa:test-password@db.example:5432/northwind", "PGPASSWORD"),
    "tracker_url": ("postgresql+psycopg2://rasa:test-password@db.example/rasa?sslmode=require", "PGPASSWORD"),
    "lock_store_url": ("redis://:test-password@redis.example:6379/1", "ASSISTANT_LOCK_STORE_URL"),
}


@pytest.mark.parametrize("name", sorted(URLS))
def test_a_url_with_a_password_in_the_settings_file_is_refused_naming_the_setting(tmp_path, name):
    url, where = URLS[name]
    path = tmp_path / "assistant.yml"
    path.write_text(f"{name}: {url}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert f"'{name}'" in message and f"ASSISTANT_{name.upper()}" in message and where in message
    assert "test-password" not in message, "the password itself is never repeated"
    env = {f"ASSISTANT_{name.upper()}": "sqlite:///elsewhere.db"}
    with pytest.raises(SettingsError, match=name):  # the file is wrong even when the environment overrides it
        load_settings(path, environ=env)


def test_a_password_as_a_url_parameter_is_refused_too(tmp_path):
    path = tmp_path / "assistant.yml"
    path.write_text("database_url: postgresql://rasa@db.example/northwind?password=test-password\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="'database_url'"):
        load_settings(path, environ={})


@pytest.mark.parametrize("name", sorted(URLS))
def test_the_same_url_from_the_environment_is_allowed(tmp_path, name):
    url, _ = URLS[name]
    settings = load_settings(tmp_path / "absent.yml", environ={f"ASSISTANT_{name.upper()}": url})
    assert getattr(settings, name) == url


def test_urls_without_a_password_are_fine_in_the_settings_file(tmp_path):
    path = tmp_path / "assistant.yml"
    path.write_text(
        "database_url: postgresql://rasa@db.example:5432/northwind\n"
        "tracker_url: sqlite:////var/lib/northwind/tracker.db\n"
        "lock_store_url: redis://redis.example:6379/1\n",
        encoding="utf-8",
    )
    settings = load_settings(path, environ={})
    assert settings.database_url == "postgresql://rasa@db.example:5432/northwind"
    assert settings.lock_store_url == "redis://redis.example:6379/1"


def test_the_lock_store_password_from_the_environment_reaches_every_redis_client():
    from core.settings import lock_store_redis_options

    env = {"ASSISTANT_LOCK_STORE_PASSWORD": "from-the-test-env"}
    assert lock_store_redis_options("redis://redis:6379/1", env) == {"password": "from-the-test-env"}
    assert lock_store_redis_options("redis://:own-test@redis:6379/1", env) == {}
    assert lock_store_redis_options("redis://redis:6379/1", {}) == {}
