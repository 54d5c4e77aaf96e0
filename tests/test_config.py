"""Settings: a TOML file's relative paths mean its directory; where the lock lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdforge.config import Config, load
from rdforge.errors import ConfigError
from rdforge.outputs.initrd import lock_path


def test_relative_paths_in_a_toml_file_mean_its_directory(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src/debian"
    src.mkdir(parents=True)
    (src / "rdforge.toml").write_text('[build]\ndeb_dir = "debs"\noutput = "out/initrd.img"\n'
                                      'trust = ["keys/cert.pem", "/etc/vendor.pem"]\n'
                                      'mirror = "http://deb.example/debian"\n'
                                      '[build.files]\n"etc/x.conf" = "x.conf"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load(Path("src/debian/rdforge.toml"))
    assert cfg.deb_dir == "src/debian/debs"
    assert cfg.output == "src/debian/out/initrd.img"
    assert cfg.trust == ["src/debian/keys/cert.pem", "/etc/vendor.pem"]
    assert cfg.files == {"etc/x.conf": "src/debian/x.conf"}
    assert cfg.mirror == "http://deb.example/debian"  # not a path
    # the command line's paths stay relative to the working directory
    assert load(Path("src/debian/rdforge.toml"), {"deb_dir": "mine"}).deb_dir == "mine"


def test_the_lock_sits_beside_the_config_else_beside_the_image(tmp_path: Path) -> None:
    (tmp_path / "generic.toml").write_text("[build]\n")
    assert lock_path(load(tmp_path / "generic.toml")) == tmp_path / "generic.lock"
    assert lock_path(load(tmp_path / "generic.toml", {"lock": "x.lock"})) == Path("x.lock")
    assert lock_path(load(None, {"output": "/boot/img"})) == Path("/boot/img.lock")
    assert lock_path(Config(output="out/initrd.img")) == Path("out/initrd.img.lock")


def test_distribution_defaults_are_overridden_by_etc_then_by_c_and_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usr, etc = tmp_path / "usr/lib/rdforge", tmp_path / "etc/rdforge"
    usr.mkdir(parents=True)
    etc.mkdir(parents=True)
    (usr / "10-vendor.toml").write_text('[build]\ncompression = "xz"\nadd_packages = ["hello"]\n'
                                        'trust = ["vendor.pem"]\n')
    (usr / "20-debug.toml").write_text('[build]\nhwdb = true\n')
    (etc / "20-debug.toml").write_text("")  # an empty file of the same name switches it off
    (etc / "30-local.toml").write_text('[build]\ncompression_level = 5\n')
    monkeypatch.setenv("RDFORGE_CONFIG_DIRS", f"{usr}:{etc}")
    cfg = load(None)
    assert (cfg.compression, cfg.compression_level, cfg.hwdb) == ("xz", 5, False)
    assert cfg.add_packages == ["hello"] and cfg.trust == [str(usr / "vendor.pem")]
    (tmp_path / "my.toml").write_text('[build]\ncompression = "zstd"\ncompression_level = 3\n')
    cfg = load(tmp_path / "my.toml", {"compression_level": 7})
    assert (cfg.compression, cfg.compression_level) == ("zstd", 7)
    assert load(None, layered=False).compression == "zstd"
    (etc / "40-bad.toml").write_text("[build]\nno_such_key = 1\n")
    with pytest.raises(ConfigError, match="40-bad.toml: unknown key 'no_such_key'"):
        load(None)
