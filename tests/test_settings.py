"""Settings built at the edge from the environment: where state goes, and what overrides what."""

from __future__ import annotations

from pathlib import Path

from truss_cli.settings import Settings

HOME = Path("/home/someone")


def test_defaults_follow_xdg_under_home() -> None:
    settings = Settings.from_environment({}, HOME)
    assert settings.cache_dir == HOME / ".cache" / "truss-cli"
    assert settings.data_dir == HOME / ".local" / "share" / "truss-cli"
    assert settings.base_image is None


def test_xdg_variables_move_both_and_truss_variables_win() -> None:
    xdg = {"XDG_CACHE_HOME": "/xdg/cache", "XDG_DATA_HOME": "/xdg/data"}
    assert Settings.from_environment(xdg, HOME).cache_dir == Path("/xdg/cache/truss-cli")
    assert Settings.from_environment(xdg, HOME).data_dir == Path("/xdg/data/truss-cli")
    explicit = {**xdg, "TRUSS_CACHE_DIR": "/c", "TRUSS_DATA_DIR": "/d"}
    settings = Settings.from_environment(explicit, HOME)
    assert (settings.cache_dir, settings.data_dir) == (Path("/c"), Path("/d"))


def test_base_image_from_the_environment_and_a_blank_one_is_none() -> None:
    assert Settings.from_environment({"TRUSS_BASE_IMAGE": " offline:1 "}, HOME).base_image == "offline:1"
    assert Settings.from_environment({"TRUSS_BASE_IMAGE": "  "}, HOME).base_image is None


def test_the_environment_is_a_copy_children_start_from() -> None:
    environ = {"TRUSS_SECRET_token": "x"}
    settings = Settings.from_environment(environ, HOME)
    environ["LATER"] = "1"
    assert settings.environ == {"TRUSS_SECRET_token": "x"}
