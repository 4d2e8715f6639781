"""`python -m bertlottery doctor [--configfile FILE ...]`: what a model job here would use, and why.

Prints the device a job would run on, the torch and CUDA builds, the driver, the visible GPUs and the
with-gpu slot a job would get, the CPU threads, and (with a config) whether its model and GLUE data load.
Exits non-zero, naming the cause, where a job would silently do the wrong thing: e.g. CUDA_VISIBLE_DEVICES
set while CUDA is unusable (a CPU-only torch, a torch built for a newer driver). Model jobs run the same
device check when they start (runtime.pick_device).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bertlottery import devices, runtime
from bertlottery.errors import BertLotteryError


def _nvidia_smi(*args: str) -> str:
    """nvidia-smi's output, or why there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "(nvidia-smi not found)"
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return f"(nvidia-smi failed: {exc})"


def _slot_report(problems: list[str]) -> tuple[str, dict[str, str]]:
    """The with-gpu line, and the environment a job started by with-gpu would see."""
    env = dict(os.environ)
    try:
        pool = devices.slot_devices()
        per_gpu = devices.jobs_per_gpu()
    except BertLotteryError as exc:
        problems.append(str(exc))
        return f"unusable ({exc})", env
    if pool is None:
        return f"CUDA_VISIBLE_DEVICES={env[devices.ENV_VISIBLE]} already set: used as it is", env
    if not pool:
        return "no GPU found: jobs run on the CPU", env
    free = next((dev for dev, slot in devices.slots(pool, per_gpu) if _slot_is_free(dev, slot)), None)
    env[devices.ENV_VISIBLE] = free or pool[0]
    where = f"next free slot on GPU {free}" if free else "every slot busy now (a job would wait)"
    return f"GPUs {','.join(pool)}, {per_gpu} job(s) per GPU, locks in {devices.lock_dir()}: {where}", env


def _slot_is_free(device: str, slot: int) -> bool:
    directory = devices.lock_dir()
    if not directory.is_dir():
        return True
    try:
        fd = devices.try_lock(devices.lock_path(directory, device, slot))
    except OSError:
        return True  # the lock dir itself is checked by with-gpu when a job runs
    if fd is None:
        return False
    os.close(fd)
    return True


def device_report(problems: list[str]) -> list[tuple[str, str]]:
    """(label, value) lines on the device; what would go wrong is appended to `problems`."""
    import torch

    slot_line, job_env = _slot_report(problems)
    try:
        problem = runtime.device_problem(job_env)
    except BertLotteryError as exc:
        problem = str(exc)
    if problem:
        problems.append(problem)
    cuda_reason = runtime.cuda_unusable_reason()
    device = "refused (see below)" if problem else runtime.pick_device(job_env).type
    threads = os.environ.get("BERTLOTTERY_THREADS") or f"unset (torch uses {torch.get_num_threads()})"
    return [
        ("device a model job would use", device),
        (runtime.ENV_DEVICE, os.environ.get(runtime.ENV_DEVICE) or "unset (auto: CUDA when usable)"),
        ("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'none, CPU-only'})"),
        ("CUDA usable", "yes" if cuda_reason is None else f"no: {cuda_reason}"),
        ("driver", (_nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader") or "none").splitlines()[0]),
        ("GPUs (nvidia-smi -L)", ", ".join(devices.nvidia_smi_devices()) or "none"),
        ("CUDA_VISIBLE_DEVICES", os.environ.get(devices.ENV_VISIBLE, "unset")),
        (devices.ENV_GPUS, os.environ.get(devices.ENV_GPUS, "unset")),
        ("with-gpu", slot_line),
        ("CPU threads per job (BERTLOTTERY_THREADS)", threads),
        ("CPU", f"{runtime.cpu_model()}, {os.cpu_count()} logical cores"),
    ]


def read_configs(paths: list[Path]) -> dict:
    """The configs merged as Snakemake merges --configfile files (later files win, nested keys merged)."""
    config: dict = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BertLotteryError(f"{path}: cannot read the config ({exc})") from None
        if not isinstance(loaded, dict):
            raise BertLotteryError(f"{path}: expected a YAML mapping of config keys")
        _merge(config, loaded)
    return config


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def config_report(config: dict, problems: list[str]) -> list[tuple[str, str]]:
    """Whether the config passes the workflow's checks, and its model and GLUE data load."""
    from bertlottery.glue.prepare import load_tokenizer
    from bertlottery.glue.reading import check_glue_dir
    from bertlottery.modeling.loading import load_classifier
    from bertlottery.settings import check_config, load_schema

    lines = []
    try:
        check_config(config)
    except BertLotteryError as exc:
        problems.append(str(exc))
        return [("config", f"refused: {exc}")]
    tasks = config.get("tasks") or load_schema()["properties"]["tasks"]["default"]
    model = str(config.get("model") or load_schema()["properties"]["model"]["default"])
    try:
        load_tokenizer(model)
        size = sum(p.numel() for p in load_classifier(model, 2).parameters())
        lines.append(("model", f"{model}: loads ({size / 1e6:.1f} M parameters with a 2-label head)"))
    except BertLotteryError as exc:
        problems.append(f"config key model: {exc}")
        lines.append(("model", f"{model}: does not load"))
    glue_dir = config.get("glue_dir")
    if glue_dir:
        try:
            check_glue_dir(glue_dir, tasks)
            lines.append(("GLUE data", f"{glue_dir}: every file of {', '.join(tasks)} present"))
        except BertLotteryError as exc:
            problems.append(str(exc))
            lines.append(("GLUE data", f"{glue_dir}: incomplete"))
    else:
        lines.append(("GLUE data", f"HuggingFace hub (nyu-mll/glue) for {', '.join(tasks)}; not checked here"))
    return lines


def main_doctor(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bertlottery doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, nargs="*", default=[],
                        help="the workflow config file(s) whose model and GLUE data to check")
    args = parser.parse_args(argv)
    problems: list[str] = []
    lines = device_report(problems)
    if args.configfile:
        lines += config_report(read_configs(args.configfile), problems)
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}")
    if problems:
        raise BertLotteryError("; ".join(problems))
    print("ok: no problem found", file=sys.stderr)
