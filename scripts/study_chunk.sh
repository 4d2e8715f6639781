#!/usr/bin/env bash
# Save a study chunk partway as a partial bundle, and continue it on a fresh machine without its
# fine-tuned weights (docs/results/minilm/README.md, "A chunk across fresh machines").
#
#   scripts/study_chunk.sh start TASK STUDY      # STUDY: a new clone; runs the chunk in the background, in two phases
#   scripts/study_chunk.sh resume TASK STUDY     # the same machine, STUDY's results/ still there: goes on where it stopped
#   scripts/study_chunk.sh save TASK STUDY       # run from the repository: writes docs/results/minilm-complete/partial/
#   scripts/study_chunk.sh continue TASK STUDY   # STUDY: a new clone; restores, then starts the rest in the background
#   DRY_RUN=1 scripts/study_chunk.sh continue TASK STUDY   # restores, then lists the jobs it would run
#
# STUDY is the chunk's working copy: its results/, job_cpu/<TASK>/ (the per-job CPU records of
# benchmarks/chunk_cost.py) and <task>.log. The partial bundle is the chunk's bundle so far (m-masks as
# summaries, benchmarks included), <TASK>.remaining.txt its unfinished retrainings, <TASK>.job_cpu.tar.gz its
# CPU records, and <TASK>.m_masks.tar.gz the m-masks (bit-packed) that unfinished m-retrainings read, which a
# summary bundle does not hold (`bertlottery bundle masks`: a bundle with a sha256 manifest, checked when
# restored). `save` refuses while a job that reads the fine-tuned weights is unfinished: only retrainings,
# which start from the pre-trained model and a mask, may be left. That is why `start` runs two Snakemake calls:
# first every job that reads the fine-tuned weights (each seed's full metrics, pattern counts where the task has
# them, and one pruned evaluation pull in the fine-tunes, searches and pruned evaluations), prioritized, plus the
# m-retrainings (fewer masks to carry in a partial bundle); then the whole chunk.
set -euo pipefail
verb=${1:?usage: study_chunk.sh start|resume|save|continue TASK STUDY} task=${2:?TASK} study=${3:?STUDY}
shared=${BERTLOTTERY_SHARED:-../shared}
repo=$(pwd)
partial=$repo/docs/results/minilm-complete/partial
study=$(cd "$study" && pwd)
configfile=config/minilm.yaml
cfg=(--configfile "$configfile" --config "model=$shared/models/all-MiniLM-L6-v2-fp16" "glue_dir=$shared/data/glue")
target=task_$(tr -cd '[:alnum:]' <<< "$task")
log=$study/$(tr '[:upper:]' '[:lower:]' <<< "$task" | tr -cd '[:alnum:]').log

# Run the Snakemake calls `$@` (one argument each) one after the other in STUDY, in the background, every
# job's CPU recorded (benchmarks/chunk_cost.py); with DRY_RUN set, list what each would run, in the foreground.
background() {
    local script="" call
    if [[ -n ${DRY_RUN:-} ]]; then
        for call in "$@"; do (cd "$study" && eval "$call -n --quiet rules ${cfg[*]@Q}"); done
        exit
    fi
    (cd "$study" && python "$repo/benchmarks/chunk_cost.py" --timer job_timer.sh > /dev/null && mkdir -p "job_cpu/$task")
    for call in "$@"; do script+="echo \"=== \$(date -u): $call\"; $call --rerun-incomplete ${cfg[*]@Q} || exit; "; done
    # every descriptor redirected, so that a caller reading this script's output is not held until the run ends
    (cd "$study" && BASH_ENV=$study/job_timer.sh STUDY_COST_LOG=$study/job_cpu/$task exec setsid nohup \
        bash -c "$script") < /dev/null >> "$log" 2>&1 &
}

# The retrainings a continued chunk has left (the file lists them), and only those: the masks and data card
# they read are restored files, not jobs. The m-retrainings go first: once they are done a save carries no
# m-masks (1.3 MB each).
retrain_left() {
    local m_all f m_runs=() others=() calls=()
    m_all=" $(m_retrainings) "
    while read -r f; do
        if [[ $m_all == *" $f "* ]]; then m_runs+=("$f"); else others+=("$f"); fi
    done < "$1"
    # no targets would make Snakemake run the default target, the whole study
    (( ${#m_runs[@]} + ${#others[@]} )) || { echo "$task: no retrainings left; export its bundle (README)"; exit 0; }
    (( ${#m_runs[@]} )) && calls+=("python -m snakemake ${m_runs[*]} --allowed-rules retrain --cores 2")
    (( ${#others[@]} )) && calls+=("python -m snakemake ${others[*]} --allowed-rules retrain --cores 2")
    background "${calls[@]}"
}

# The chunk's m-retrainings, named by the package's layout.
m_retrainings() {
    (cd "$study" && python - "$task" "$configfile" <<'EOF'
import sys, yaml
from bertlottery.layout import Layout
task, configfile, layout = sys.argv[1], sys.argv[2], Layout()
print(*(layout.retrain_metrics("m", kind, task, s) for s in yaml.safe_load(open(configfile))["seeds"]
        for kind in ("good", "random", "bad")))
EOF
)
}

case $verb in
start)
    # the jobs that read the fine-tuned weights, named by the package's layout, and the m-retrainings
    weights=$(cd "$study" && python - "$task" "$configfile" <<'EOF'
import sys, yaml
from bertlottery.layout import Layout
from bertlottery.patterns.extract import pattern_tasks
task, configfile, layout = sys.argv[1], sys.argv[2], Layout()
counts = ("finetuned", "pretrained") if pattern_tasks([task]) else ()  # WNLI: none (the paper leaves it out)
print(*(p for s in yaml.safe_load(open(configfile))["seeds"]
        for p in (layout.full_metrics(task, s), layout.pruned_metrics("s", "good", task, s),
                  *(layout.pattern_counts(kind, task, s) for kind in counts))))
EOF
)
    m_runs=$(m_retrainings)
    background "python -m snakemake $weights $m_runs --prioritize $weights --cores 2" \
               "python -m snakemake $target --cores 2"
    echo "$task: started in the background in $study (log: $log)"
    ;;
resume)
    # the lock a killed run left is removed, never that of a run still going in STUDY
    for pid in $(pgrep -f "snakemake" || true); do
        if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$study" ]]; then
            echo "$task: a Snakemake run (pid $pid) is still going in $study; not resumed" >&2
            exit 1
        fi
    done
    (cd "$study" && python -m snakemake --unlock --cores 1 "${cfg[@]}" > /dev/null 2>&1)
    if [[ -f $study/$task.remaining.txt ]]; then  # continued from a partial bundle: its retrainings only
        retrain_left "$study/$task.remaining.txt"
    else  # the m-retrainings first (nothing to do once they are done), then the rest
        background "python -m snakemake $(m_retrainings) --cores 2" "python -m snakemake $target --cores 2"
    fi
    echo "$task: resumed in the background in $study (log: $log)"
    ;;
save)
    mkdir -p "$partial"
    remaining=$partial/$task.remaining.txt
    if [[ -f $study/$task.remaining.txt ]]; then  # a continued chunk: what its list still lacks
        while read -r f; do [[ -e $study/$f ]] || echo "$f"; done < "$study/$task.remaining.txt" > "$remaining.new"
    else
        (cd "$study" && python -m snakemake "$target" --summary --cores 1 "${cfg[@]}" 2>/dev/null) |
            awk -F'\t' 'NR > 1 && $5 == "missing" {print $3 "\t" $1}' > "$remaining.all"
        blocking=$(awk -F'\t' '$1 != "retrain"' "$remaining.all")
        if [[ -n $blocking ]]; then
            echo "$task: not saved; these need the fine-tuned weights, let them finish:" >&2
            echo "$blocking" >&2
            rm "$remaining.all"
            exit 1
        fi
        cut -f2 "$remaining.all" > "$remaining.new" && rm "$remaining.all"
    fi
    mv "$remaining.new" "$remaining"
    rm -f "$partial/$task.tar.gz"
    (cd "$study" && python -m bertlottery bundle export --results results --out "$partial/$task.tar.gz" --tasks "$task" \
        --m-kinds good --m-masks summary "${cfg[@]}")
    tar -C "$study/job_cpu" -czf "$partial/$task.job_cpu.tar.gz" --sort=name --mtime=@0 --owner=0 --group=0 "$task"
    # the m-masks the unfinished m-retrainings read, bit-packed (the bundle holds only the good ones' summaries)
    rm -f "$partial/$task.m_masks.tar.gz"
    (cd "$study" && python -m bertlottery bundle masks --results results --runs "$remaining" \
        --out "$partial/$task.m_masks.tar.gz")
    echo "$task: saved, $(wc -l < "$remaining") retrainings left ($partial)"
    ;;
continue)
    [[ -f $partial/$task.tar.gz ]] || { echo "$partial/$task.tar.gz: no partial bundle to continue" >&2; exit 1; }
    cd "$study"
    # the splits (never in bundles), tokenized again; their data card must be the bundle's, byte for byte
    python -m snakemake "results/data/$task/splits" --cores 1 "${cfg[@]}" >> "$log" 2>&1 ||
        { tail -n 20 "$log" >&2; echo "$task: the data splits could not be made; nothing restored (log: $log)" >&2; exit 1; }
    before=$(sha256sum < "results/data/$task/data_card.json")
    python -m bertlottery bundle unpack --results results --benchmarks "$partial/$task.tar.gz"
    [[ $before == "$(sha256sum < "results/data/$task/data_card.json")" ]] ||
        { echo "results/data/$task/data_card.json: differs from the partial bundle's; not continued" >&2; exit 1; }
    mkdir -p job_cpu && tar -C job_cpu -xzf "$partial/$task.job_cpu.tar.gz"
    if [[ -f $partial/$task.m_masks.tar.gz ]]; then  # the m-masks unfinished m-retrainings read, checked
        python -m bertlottery bundle unpack --results results "$partial/$task.m_masks.tar.gz"
    fi
    cp "$partial/$task.remaining.txt" "$task.remaining.txt"
    retrain_left "$task.remaining.txt"
    echo "$task: $(wc -l < "$task.remaining.txt") retrainings started in the background (log: $log)"
    ;;
*) echo "usage: study_chunk.sh start|resume|save|continue TASK STUDY" >&2; exit 2 ;;
esac
