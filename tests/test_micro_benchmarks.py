"""The microstructure benchmarks run end to end at toy size (issue 22): GAN vs DDPM with its same-run baselines,
and the loop vs random process conditions with every evaluated condition re-simulated as the held-out truth."""

from __future__ import annotations

import json
import sys

from benchmarks import micro_generators, micro_loop

TINY = ["--set", "data.size=32", "--set", "data.per_condition=4", "--set", "data.source.mean_composition=[0.4,0.5,0.6]",
        "--set", "data.source.anneal_time=[20,40,80]", "--set", "data.test_conditions=1",
        "--set", "diffusion.widths=[8,16]", "--set", "diffusion.emb_dim=16", "--set", "gan.generator_width=16",
        "--set", "gan.critic_width=8", "--set", "gan.z_channels=4", "--set", "monitor.every=0"]


def test_gan_vs_ddpm_and_the_loop_vs_random(prefect_server, tmp_path, monkeypatch):
    out = tmp_path / "results" / "micro_generators.json"
    monkeypatch.setattr(sys, "argv", ["micro_generators", "--epochs", "1", "--n", "4", "--steps", "3",
                                      "--workdir", str(tmp_path / "w"), "--out", str(out), *TINY])
    micro_generators.main()
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"gan", "diffusion"} and set(result["baselines"]) == {"real-vs-real",
                                                                                          "nearest-grid"}
    assert result["baselines"]["nearest-grid"]["mean"]["nearest_train_distance"] == 0.0  # copies of training images
    assert result["ratios"]["sampling_speed_gan_over_ddpm"] > 0
    assert (tmp_path / "results" / "samples" / "micro-gan.npz").is_file()

    loop_out = tmp_path / "results" / "micro_loop.json"
    monkeypatch.setattr(sys, "argv", ["micro_loop", "--generator", str(tmp_path / "w" / "micro-gan.pt"),
                                      "--seeds", "1", "--truth-images", "2", "--workdir", str(tmp_path / "loop"),
                                      "--out", str(loop_out), "--set", "rounds=2", "--set", "per_round=2",
                                      "--set", "images_per_condition=2", "--set", "acquisition.initial=2",
                                      "--set", "target.property=volume_fraction", "--set", "target.low=0.45",
                                      "--set", "target.high=0.55"])
    micro_loop.main()
    loop = json.loads(loop_out.read_text())
    for arm in ("band", "random"):
        run = loop["arms"][arm]["runs"][0]
        assert len(run["evaluations"]) == 4 and all(e["truth"] is not None for e in run["evaluations"])
        assert 1 <= run["first_true_hit"] <= 5
    assert [e["source"] for e in loop["arms"]["band"]["runs"][0]["evaluations"]] == ["initial"] * 2 + ["band"] * 2
