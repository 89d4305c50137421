"""Settings: defaults with no file, the example file, overrides, and clear refusals."""

from __future__ import annotations

import pytest

from ocireg.config import Config, ConfigError
from tests.support import REPO_ROOT


def test_no_file_means_port_5000_and_local_data_dir():
    config = Config.load()
    assert config.listen == ("tcp:5000",)
    assert config.data_dir == "./ocireg-data"
    assert config.database == ""


def test_example_file_states_the_defaults():
    assert Config.load(str(REPO_ROOT / "etc" / "ocireg.toml")) == Config()


def test_command_line_overrides_the_file(tmp_path):
    path = tmp_path / "ocireg.toml"
    path.write_text('listen = ["tcp:6000"]\ndata_dir = "/srv/registry"\n')
    config = Config.load(str(path), listen=["tcp:7000"], data_dir=None)
    assert config.listen == ("tcp:7000",)
    assert config.data_dir == "/srv/registry"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("listen = 5000\n", "listen"),
        ("data_dir = 3\n", "data_dir"),
        ("listen = [\n", "not valid TOML"),
        ("stale_cache_max_age = -1\n", "stale_cache_max_age"),
        ("min_free_space = 'lots'\n", "min_free_space"),
        ("min_free_space = '100%'\n", "min_free_space"),
        ("min_free_space = -1\n", "min_free_space"),
        ("min_free_space = 1.5\n", "min_free_space"),
        ("max_connections = 0\n", "max_connections"),
        ("max_client_connections = '8'\n", "max_client_connections"),
        ("header_timeout = -1\n", "header_timeout"),
        ("max_client_buffer = 1000\n", "max_client_buffer"),
    ],
)
def test_bad_file_is_refused_with_the_setting_named(tmp_path, text, message):
    path = tmp_path / "ocireg.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.load(str(path))


def test_missing_file_is_refused_clearly(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(str(tmp_path / "absent.toml"))


def test_every_setting_is_documented_in_the_example_file_and_the_readme():
    import attrs

    example = (REPO_ROOT / "etc" / "ocireg.toml").read_text()
    readme = (REPO_ROOT / "README.rst").read_text()
    for setting in (a.name for a in attrs.fields(Config)):
        assert f"\n{setting} = " in example, setting
        assert f"``{setting}``" in readme, setting


@pytest.mark.parametrize(
    ("value", "kept"),
    [("256MiB", 256 * 1024**2), ("2 GB", 2 * 1000**3), ("5%", 5 * 1024**3), (0, 0),
     (1048576, 1048576)],
)
def test_min_free_space_is_a_size_or_a_share_of_the_file_system(value, kept):
    # On a 100 GiB file system.
    assert Config(min_free_space=value).reserve.of(100 * 1024**3) == kept
