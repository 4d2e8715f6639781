#!/usr/bin/env python3
"""Submit one Snakemake job script to the batch system and print its job id.

Called by the cluster-generic executor as `submit.py JOBSCRIPT` (see config.yaml next to this file).
The job's rule, threads and resources (mem_mb, runtime in minutes, gpu) come from the
`# properties = {...}` line Snakemake writes into every job script.

Environment:
  BERTLOTTERY_SCHEDULER     slurm | pbs | sge | lsf (default: guessed from the commands found)
  BERTLOTTERY_SUBMIT_EXTRA  site options added to every submission, e.g. "-q gpu -A myproj"
  BERTLOTTERY_CLUSTER_LOGS  scheduler log directory (default results/logs/cluster)
  BERTLOTTERY_SGE_PE, BERTLOTTERY_SGE_GPU   Grid Engine parallel environment / GPU complex names
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


def job_properties(jobscript: str) -> dict:
    for line in Path(jobscript).read_text().splitlines():
        if line.startswith("# properties = "):
            return json.loads(line.split("=", 1)[1])
    sys.exit(f"submit.py: {jobscript}: no '# properties = ' line")


def scheduler() -> str:
    chosen = os.environ.get("BERTLOTTERY_SCHEDULER")
    if chosen:
        return chosen
    if shutil.which("sbatch"):
        return "slurm"
    if shutil.which("bsub"):
        return "lsf"
    if os.environ.get("SGE_ROOT"):
        return "sge"
    if shutil.which("qsub"):
        return "pbs"
    sys.exit("submit.py: no batch system found; set BERTLOTTERY_SCHEDULER")


def command(kind: str, name: str, threads: int, mem_mb: int, minutes: int, gpus: int, logs: str) -> list[str]:
    walltime = f"{minutes // 60:02d}:{minutes % 60:02d}:00"
    if kind == "slurm":
        cmd = ["sbatch", "--parsable", f"--job-name={name}", f"--output={logs}/%j.out",
               f"--cpus-per-task={threads}", f"--mem={mem_mb}M", f"--time={minutes}"]
        return cmd + ([f"--gpus={gpus}"] if gpus else [])
    if kind == "pbs":  # PBS Pro / OpenPBS; Torque wants -l nodes=1:ppn=N[:gpus=G] instead of select
        select = f"select=1:ncpus={threads}:mem={mem_mb}mb" + (f":ngpus={gpus}" if gpus else "")
        return ["qsub", "-N", name, "-j", "oe", "-o", f"{logs}/", "-V", "-l", select, "-l", f"walltime={walltime}"]
    if kind == "sge":  # memory is per slot in Grid Engine
        cmd = ["qsub", "-terse", "-cwd", "-V", "-N", name, "-j", "y", "-o", f"{logs}/",
               "-pe", os.environ.get("BERTLOTTERY_SGE_PE", "smp"), str(threads),
               "-l", f"h_vmem={max(1, mem_mb // threads)}M,h_rt={walltime}"]
        return cmd + (["-l", f"{os.environ.get('BERTLOTTERY_SGE_GPU', 'gpu')}={gpus}"] if gpus else [])
    if kind == "lsf":
        cmd = ["bsub", "-J", name, "-o", f"{logs}/%J.out", "-n", str(threads),
               "-R", f"span[hosts=1] rusage[mem={mem_mb}]", "-W", str(minutes)]
        return cmd + (["-gpu", f"num={gpus}"] if gpus else [])
    sys.exit(f"submit.py: unknown scheduler {kind!r} (slurm, pbs, sge, lsf)")


def job_id(kind: str, out: str) -> str:
    """The id in the scheduler's answer: '123;cluster', '123.server', '123', 'Job <123> is submitted'."""
    if kind == "lsf":
        match = re.search(r"Job <(\d+)>", out)
    else:
        match = re.match(r"\s*([\w.\[\]-]+?)(;|\s|$)", out)
    if not match:
        sys.exit(f"submit.py: no job id in the scheduler's answer: {out!r}")
    return match.group(1)


def main(jobscript: str) -> None:
    props = job_properties(jobscript)
    res = props.get("resources", {})
    kind = scheduler()
    logs = os.environ.get("BERTLOTTERY_CLUSTER_LOGS", "results/logs/cluster")
    Path(logs).mkdir(parents=True, exist_ok=True)
    cmd = command(kind, f"smk-{props.get('rule', 'job')}", int(props.get("threads", 1)),
                  int(res.get("mem_mb", 4000)), int(res.get("runtime", 60)), int(res.get("gpu", 0)), logs)
    cmd += shlex.split(os.environ.get("BERTLOTTERY_SUBMIT_EXTRA", ""))
    if kind == "lsf":  # bsub reads the script from stdin
        with open(jobscript) as stdin:
            out = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True)
    else:
        out = subprocess.run(cmd + [jobscript], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"submit.py: {shlex.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    print(job_id(kind, out.stdout))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: submit.py JOBSCRIPT")
    main(sys.argv[1])
