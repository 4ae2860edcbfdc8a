"""Settings: defaults, environment variables and their spellings, refusals that name the variable,
and no reading of the process environment unless asked. Backend combinations that cannot work
are in test_embeddings_api; fetch size limits in test_domain."""

import dataclasses
import typing
from typing import Literal, get_origin

import pytest

from allthethings.config import Settings, load_settings
from allthethings.domain.content import SizeLimits

CHOICES = {
    "STORE_BACKEND": ("sqlite", "atlas"),
    "RANK_FUSION": ("auto", "server", "client"),
    "EMBEDDER_BACKEND": ("local", "replicate", "openai"),
    "METRICS_BACKEND": ("emf", "prometheus", "none"),
    "WEBHOOK_SIGNATURE": ("replicate", "hookdeck"),
    "SEARCH_ACCESS": ("key", "public"),
}


def variables() -> list[str]:
    """Every environment variable a field reads, from the declarations themselves."""
    names = [variable for field in dataclasses.fields(Settings) for variable in field.metadata.get("env", ())]
    return names + [f"MAX_BYTES_{f.name.upper()}" for f in dataclasses.fields(SizeLimits)]


def test_an_empty_environment_gives_the_defaults():
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.store, settings.sqlite_path, settings.embedder, settings.model) == \
        ("sqlite", ".data/allthethings.db", "local", "all-MiniLM-L6-v2")
    assert settings.dimensions == 384 and settings.models_served == ("all-MiniLM-L6-v2",)
    assert settings.size_limits == SizeLimits() and settings.allow_private_urls is False
    assert (settings.chunk_tokens, settings.chunk_overlap, settings.search_access) == (200, 40, "key")


def test_an_empty_value_is_an_unset_one():
    assert load_settings(dict.fromkeys(variables(), "")) == Settings()


@pytest.mark.parametrize(("variable", "allowed"), CHOICES.items())
def test_a_value_outside_the_choices_is_refused_with_the_variable_and_what_it_may_be(variable, allowed):
    with pytest.raises(ValueError) as refused:
        load_settings({variable: "postgres"})
    assert str(refused.value) == f"{variable} must be one of {', '.join(allowed)}, not 'postgres'"


def test_every_setting_with_choices_is_tested_above():
    hints = typing.get_type_hints(Settings)
    variables = {field.metadata["env"][0] for field in dataclasses.fields(Settings)
                 if get_origin(hints[field.name]) is Literal}
    assert variables == set(CHOICES)



def test_choices_are_read_whatever_their_case():
    settings = load_settings({"STORE_BACKEND": "Atlas", "SEARCH_ACCESS": " PUBLIC ", "METRICS_BACKEND": "EMF"})
    assert (settings.store, settings.search_access, settings.metrics) == ("atlas", "public", "emf")


def test_local_model_is_read_when_embedding_model_is_not_set():
    assert load_settings({"LOCAL_MODEL": "all-mpnet-base-v2"}).model == "all-mpnet-base-v2"
    assert load_settings({"EMBEDDING_MODEL": "", "LOCAL_MODEL": "all-mpnet-base-v2"}).model == "all-mpnet-base-v2"
    both = {"EMBEDDING_MODEL": "bge-small-en-v1.5", "LOCAL_MODEL": "all-mpnet-base-v2",
            "EMBEDDER_BACKEND": "openai", "EMBEDDINGS_UPSTREAM_URL": "http://tei/v1"}
    assert load_settings(both).model == "bge-small-en-v1.5"


def test_the_database_lives_in_data_dir_unless_sqlite_path_says_where():
    assert load_settings({"DATA_DIR": "/srv/att"}).sqlite_path == "/srv/att/allthethings.db"
    assert load_settings({"DATA_DIR": "/srv/att", "SQLITE_PATH": "/tmp/x.db"}).sqlite_path == "/tmp/x.db"
    assert Settings(data_dir="/srv/att").sqlite_path == "/srv/att/allthethings.db"


def test_sizes_take_binary_units_and_kinds_not_given_keep_their_default():
    limits = load_settings({"MAX_BYTES_HTML": "64KiB", "MAX_BYTES_PDF": "3M", "MAX_BYTES_AUDIO": ""}).size_limits
    assert (limits.html, limits.pdf, limits.audio) == (64 * 1024, 3 * 1024 ** 2, SizeLimits().audio)


def test_lists_urls_and_flags_are_read_as_written_in_an_environment():
    settings = load_settings({"SERVED_MODELS": " all-mpnet-base-v2, ,all-MiniLM-L6-v2,",
                              "REPLICATE_API_BASE": "http://replicate.test/v1/",
                              "EMBEDDINGS_UPSTREAM_URL": "http://tei:8080/v1/", "MODEL_THREADS": "3"})
    assert settings.served_models == ("all-mpnet-base-v2", "all-MiniLM-L6-v2")
    assert settings.models_served == ("all-MiniLM-L6-v2", "all-mpnet-base-v2")
    assert (settings.replicate_api_base, settings.upstream_url) == ("http://replicate.test/v1", "http://tei:8080/v1")
    assert settings.model_threads == 3
    for yes in ("1", "true", "Yes", "ON"):
        assert load_settings({"ALLOW_PRIVATE_URLS": yes}).allow_private_urls is True
    for no in ("0", "false", "no", "off"):
        assert load_settings({"ALLOW_PRIVATE_URLS": no}).allow_private_urls is False


@pytest.mark.parametrize(("env", "message"), [
    ({"ALLOW_PRIVATE_URLS": "maybe"}, "ALLOW_PRIVATE_URLS must be one of 1, true, yes, on, 0, false, no, off, "
                                      "not 'maybe'"),
    ({"MODEL_THREADS": "four"}, "MODEL_THREADS must be a whole number, not 'four'"),
    ({"QUERY_CACHE_TTL_S": "soon"}, "QUERY_CACHE_TTL_S must be a number, not 'soon'"),
    ({"MAX_DOCUMENT_CHARS": "-1"}, "MAX_DOCUMENT_CHARS must be a positive number, not '-1'"),
])
def test_a_value_of_the_wrong_type_is_refused_with_the_variable(env, message):
    with pytest.raises(ValueError) as refused:
        load_settings(env)
    assert str(refused.value) == message


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(ValueError) as refused:
        load_settings({"STORE_BACKEND": "postgres", "CHUNK_TOKENS": "many", "MAX_BYTES_PDF": "lots"})
    for named in ("STORE_BACKEND must be one of", "CHUNK_TOKENS must be a whole number", "MAX_BYTES_PDF must be"):
        assert named in str(refused.value)


def test_neither_settings_by_field_name_nor_a_given_mapping_reads_the_process_environment(monkeypatch):
    for name, value in {"STORE_BACKEND": "atlas", "CHUNK_TOKENS": "7", "chunk_tokens": "7", "store": "atlas",
                        "DATA_DIR": "/elsewhere", "MAX_BYTES_PDF": "1"}.items():
        monkeypatch.setenv(name, value)
    for settings in (Settings(), Settings(chunk_overlap=4), load_settings({})):
        assert (settings.store, settings.chunk_tokens, settings.sqlite_path, settings.size_limits.pdf) == \
            ("sqlite", 200, ".data/allthethings.db", SizeLimits().pdf)
    from_process = load_settings()
    assert (from_process.store, from_process.chunk_tokens, from_process.size_limits.pdf) == ("atlas", 7, 1)


def test_settings_are_built_by_field_name_and_a_misspelt_one_is_refused():
    settings = Settings(chunk_tokens=20, chunk_overlap=4, stuck_after_s=900, search_access="public")
    assert (settings.chunk_tokens, settings.stuck_after_s, settings.search_access) == (20, 900.0, "public")
    with pytest.raises(TypeError, match="chunk_tokns"):
        Settings(chunk_tokns=20)
    with pytest.raises(ValueError, match="SEARCH_ACCESS must be one of key, public, not 'open'"):
        Settings(search_access="open")


def test_settings_cannot_change_once_made_but_a_changed_copy_can_be_taken():
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.store = "atlas"
    assert dataclasses.replace(settings, search_access="public").search_access == "public"
    assert settings.search_access == "key"


def test_secrets_stay_out_of_the_repr():
    settings = Settings(api_keys="unit=unit_" + "k" * 24, mongodb_uri="mongodb://u:hunter2@db",
                        replicate_api_token="r8_secret", replicate_webhook_secret="whsec_secret",
                        hookdeck_signing_secret="hd_secret", upstream_api_key="sk-secret")
    shown = repr(settings)
    assert not any(secret in shown for secret in ("kkkk", "hunter2", "r8_secret", "whsec_", "hd_secret", "sk-secret"))
