#!/usr/bin/env bash
# One experiment of a sweep that many machines share through one git remote and one DVC
# remote (see README, "Sweeps over many machines"):
#   scripts/sweep_worker.sh -S probe.C=0.5 [-S key=value ...] [-n NAME] [other `dvc exp run` args]
# In this clone (clean, its HEAD pushed: that commit is the baseline) it runs ./run.sh setup
# (a no-op once .venv is current), `git fetch`, `dvc fetch --run-cache`, then
# `dvc exp run --pull -n NAME -S ...` (stages another machine already ran are downloaded,
# not rerun), `dvc push --run-cache` (plus the run-cache's copies of `cache: false`
# outputs, which DVC leaves behind) and `dvc exp push`, and resets the work tree to the
# baseline (the results live in the experiment). Failures end in one `sweep_worker:` line.
# Env:
#   SWEEP_GIT_REMOTE  git remote to fetch and push experiments to (default: origin); the
#                     DVC remote is the project's default one (`dvc remote add -d ...`)
#   SWEEP_NAME        experiment name (or -n); default: the overrides made ref-safe and a
#                     hash of them, after t$SLURM_ARRAY_TASK_ID- if set: t3-probe.C-0.5-1a2b3c4d
#   SWEEP_SKIP_SETUP  1: no ./run.sh setup; use the `dvc` and `python` first on PATH (a
#                     shared venv), importing this clone's src/ first (PYTHONPATH)
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "sweep_worker: error: $*" >&2
  exit 1
}

# Runs a step with its output shown; on failure, one line naming the step and the last
# error line the command printed.
step() {
  local what=$1 err rc=0 cause
  shift
  err=$(mktemp)
  { "$@" 2>&1 1>&3 3>&- | tee "$err" >&2; } 3>&1 || rc=$? # stderr shown and kept
  if ((rc != 0)); then
    cause=$(grep -E '^error:' "$err" | tail -n 1 || true)
    [[ -n $cause ]] || cause=$(grep -E '^ERROR' "$err" | tail -n 1 || true)
    rm -f "$err"
    die "$what failed (exit $rc)${cause:+: $cause}"
  fi
  rm -f "$err"
}

# Reads run-cache entry paths (runs/xx/KEY/VALUE) on stdin; pushes their outputs' objects.
# DVC's Python API (the pinned 3.x); the entries are this machine's, so every object is here.
PUSH_RUN_OUTPUTS='
import sys
from dvc.repo import Repo

entries = [tuple(path.split("/")[-2:]) for path in sys.stdin.read().splitlines() if path]
with Repo() as repo:
    objs = set().union(*repo.stage_cache.get_used_objs(entries).values())
    result = repo.cloud.push(objs)
if result.failed:
    sys.exit(f"ERROR: {len(result.failed)} run-cache outputs failed to upload")
print(f"{len(entries)} new runs: {len(result.transferred)} of their outputs pushed")
'

remote=${SWEEP_GIT_REMOTE:-origin}
name=${SWEEP_NAME:-}
sets=()
rest=()
while (($#)); do
  case $1 in
    -S | --set-param)
      (($# >= 2)) || die "$1 needs a key=value"
      sets+=("$2")
      shift 2
      ;;
    -S* | --set-param=*)
      sets+=("${1#-S}")
      sets[-1]=${sets[-1]#--set-param=}
      shift
      ;;
    -n | --name)
      (($# >= 2)) || die "$1 needs a name"
      name=$2
      shift 2
      ;;
    --name=*)
      name=${1#--name=}
      shift
      ;;
    *)
      rest+=("$1")
      shift
      ;;
  esac
done

if [[ ${SWEEP_SKIP_SETUP:-0} == 1 ]]; then
  command -v dvc >/dev/null && command -v python >/dev/null ||
    die "SWEEP_SKIP_SETUP=1 but no dvc or python on PATH: put the project venv's bin/ first on PATH, or unset it"
else
  step "./run.sh setup" ./run.sh setup
  export PATH="$PWD/.venv/bin:$PATH"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

git rev-parse --verify -q HEAD >/dev/null 2>&1 || die "$PWD is not a git repository with a commit"
git remote get-url "$remote" >/dev/null 2>&1 || die "no git remote '$remote' (set SWEEP_GIT_REMOTE)"
dvc remote default >/dev/null 2>&1 || die "no default DVC remote: add the shared one with \`dvc remote add -d NAME URL\`"
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  die "the work tree has uncommitted changes: an experiment runs from a committed (and pushed) baseline, so commit and push them first"
fi

if [[ -z $name ]]; then
  # Readable and deterministic: the overrides made ref-safe, plus a hash of them all.
  slug=$(printf '%s-' "${sets[@]}" | tr -c 'A-Za-z0-9._-' '-' | tr -s '.-' | cut -c 1-40 | sed 's/^[.-]*//; s/[.-]*$//')
  hash=$(printf '%s\n' "${SLURM_ARRAY_TASK_ID:-}" "${sets[@]}" | git hash-object --stdin)
  name="${SLURM_ARRAY_TASK_ID:+t$SLURM_ARRAY_TASK_ID-}${slug:-baseline}-${hash:0:8}"
fi
head=$(git rev-parse HEAD)
baseline=${head:0:7}
ref="refs/exps/${head:0:2}/${head:2}/$name" # where DVC keeps the experiment

step "git fetch $remote" git fetch --quiet "$remote"
if [[ -z $(git branch -r --contains HEAD --list "$remote/*") ]]; then
  die "baseline $baseline is on no branch of '$remote': push it first (git push $remote HEAD), so every machine and the comparison share it"
fi
remote_exps=$(dvc exp list "$remote" --name-only 2>/dev/null) || remote_exps=
if grep -qxF -- "$name" <<<"$remote_exps"; then
  die "experiment '$name' of baseline $baseline is already on '$remote': set SWEEP_NAME, or remove it (dvc exp remove -g $remote $name)"
fi

# The run-cache alone: `check` names the one tiny output of the first stage, so no other
# baseline data is downloaded here; `--pull` below downloads only the outputs the run needs.
step "dvc fetch --run-cache" dvc fetch --run-cache check
echo "sweep_worker: experiment '$name' from baseline $baseline: ${sets[*]:-no overrides}"
set_args=()
for kv in "${sets[@]}"; do set_args+=(-S "$kv"); done
runs=$(dvc cache dir)/runs || die "\`dvc cache dir\` failed"
runs_before=$(find "$runs" -type f 2>/dev/null | sort)
step "dvc exp run" dvc exp run --pull -n "$name" "${set_args[@]}" "${rest[@]}"
step "dvc push --run-cache" dvc push --run-cache
# `dvc push --run-cache` uploads the run records but not the copies of the `cache: false`
# outputs (metrics, plots) that the run-cache keeps: without them no other machine can
# restore a stage that has such outputs (model, report, ...) and it reruns it. Push them
# for the runs made here.
new_runs=$(comm -13 <(echo "$runs_before") <(find "$runs" -type f 2>/dev/null | sort))
step "pushing the run-cache's outputs" python -c "$PUSH_RUN_OUTPUTS" <<<"$new_runs"
step "dvc exp push" dvc exp push "$remote" "$name"
# `dvc exp push` exits 0 when the remote holds another run under this name (diverged).
pushed=$(git ls-remote "$remote" "$ref") || die "could not list '$remote' after pushing '$name'"
if [[ ${pushed%%[[:space:]]*} != "$(git rev-parse "$ref")" ]]; then
  die "'$remote' holds another experiment '$name' (baseline $baseline), pushed meanwhile by another worker: this run stays local (dvc exp push -f $remote $name replaces it)"
fi
git reset --quiet --hard HEAD # back to the baseline; the results are in the experiment
echo "sweep_worker: pushed experiment '$name' (baseline $baseline) to '$remote'"
