"""The SLURM profile's documented GPU settings each request exactly one GPU resource, as the executor
plugin itself writes the sbatch options (no cluster needed)."""

from __future__ import annotations

import re

import pytest
from conftest import REPO
from snakemake_executor_plugin_slurm.utils import set_gres_string

PROFILE = (REPO / "workflow/profiles/slurm/config.yaml").read_text()
README = (REPO / "README.md").read_text()


class _Resources(dict):
    def __getattr__(self, name):
        return self[name]


class _Job:
    def __init__(self, resources: dict):
        self.resources = _Resources(resources)


RULE = {"gpu": 1}  # every model rule declares resources: gpu=1; set-resources override it per rule

# (the profile's documented settings, the one request they make)
DOCUMENTED = [
    ({}, "--gpus=1"),
    ({"gpu_model": "a100"}, "--gpus=a100:1"),
    ({"gres": "gpu:1", "gpu": 0}, "--gres=gpu:1"),
    ({"gres": "gpu:a100:1", "gpu": 0}, "--gres=gpu:a100:1"),
    ({"gres": "shard:1", "gpu": 0}, "--gres=shard:1"),
    ({"gres": "mps:25", "gpu": 0}, "--gres=mps:25"),
]


@pytest.mark.parametrize("setting, request_", DOCUMENTED)
def test_each_documented_gpu_setting_requests_exactly_one_resource(setting, request_):
    options = set_gres_string(_Job(RULE | setting)).split()
    assert options == [request_]
    if "gres" in setting:  # the profile states it with `gpu: 0`, as the README says
        assert re.search(rf'gres: "{re.escape(setting["gres"])}"\s+and gpu: 0\s+-> {re.escape(request_)}', PROFILE)
    elif "gpu_model" in setting:
        assert f"gpu_model: {setting['gpu_model']}" in PROFILE and request_ in PROFILE


def test_gres_without_gpu_zero_would_request_two():
    """Why the profile pairs every gres with gpu: 0 (the setting the README used to give)."""
    assert set_gres_string(_Job(RULE | {"gres": "shard:1"})).split() == ["--gres=shard:1", "--gpus=1"]
    assert '`gres: "shard:1"` and `gpu: 0`' in README
