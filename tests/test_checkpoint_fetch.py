"""A generator checkpoint given as a URL is fetched once into the cache and checked against its sha256."""

import hashlib

import pytest

from conf.generator import generator_config
from tasks.errors import GeneratorError
from tasks.generators.fetch import resolve_checkpoint


def test_a_file_url_is_fetched_once_and_checked(tmp_path, monkeypatch, tiny_diffusion):
    monkeypatch.setenv("MATLOOP_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "published.pt"
    source.write_bytes(tiny_diffusion.read_bytes())
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    local = resolve_checkpoint(source.as_uri(), sha)
    assert local.parent == tmp_path / "cache" / "checkpoints" and local.read_bytes() == source.read_bytes()
    source.unlink()  # a later campaign finds it in the cache: no fetch
    assert resolve_checkpoint(source.as_uri(), sha) == local
    cfg = generator_config(name="diffusion", diffusion={"checkpoint": source.as_uri(), "checkpoint_sha256": sha,
                                                       "steps": 5})
    from tasks.generators import build_generator
    from tasks.seeds import SeedSet

    assert build_generator(cfg, SeedSet(known_phases=[], templates=[])).identity().startswith("diffusion:")


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MATLOOP_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "tampered.pt"
    source.write_bytes(b"not the published file")
    with pytest.raises(GeneratorError, match="expected " + "0" * 64):
        resolve_checkpoint(source.as_uri(), "0" * 64)
    assert not list((tmp_path / "cache" / "checkpoints").iterdir())
    with pytest.raises(GeneratorError, match="could not be fetched"):
        resolve_checkpoint((tmp_path / "missing.pt").as_uri(), "0" * 64)


def test_checkpoint_urls_need_a_hash_and_a_known_scheme(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_sha256"):
        generator_config(name="gan", gan={"checkpoint": "https://example.org/gan.pt"})
    with pytest.raises(ValueError, match="allowed: http, https, file"):
        generator_config(name="gan", gan={"checkpoint": "s3://bucket/gan.pt", "checkpoint_sha256": "0" * 64})
    assert generator_config(name="gan", gan={"checkpoint": tmp_path / "g.pt"}).gan.checkpoint == str(tmp_path / "g.pt")
    assert resolve_checkpoint(tmp_path / "g.pt") == tmp_path / "g.pt"
