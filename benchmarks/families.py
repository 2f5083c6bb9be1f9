"""The whole default `dvc repro` on a tiny random-weight model of each family: which stages run, how long the
mechanism stages take, and how exactly attribution adds up.

Each family's model (tests/families.py: 2 layers, d_model 32, its own tokenizer style) is
built in a temporary copy of the project, `params.yaml` is the repository's with only
`model.name` changed (and `prompts.prepend_bos: false` for a tokenizer without BOS), and
a real `dvc repro` runs every stage. Printed per family: exit code, each mechanism
stage's wall time and its ratio to GPT-2's in the same run, whether it applied, and the
largest attribution identity error. Writes benchmarks/results/families_cpu.json.

    python benchmarks/families.py [family ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import save  # noqa: E402

from families import FAMILIES, PREPEND_BOS, build_family  # noqa: E402
from helpers import ENV, REPO, copy_project, sh  # noqa: E402

MECHANISM = ("heads", "attribution", "interventions", "tokens")


def repro(project: Path) -> tuple[int, str, dict[str, float]]:
    """Run `dvc repro`; its exit code, log and each stage's wall time (from its "Running stage"
    line to the next stage's, or to the end: the stage's process and DVC's own bookkeeping)."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "repro"],
        cwd=project,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log, starts = [], []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("Running stage"):
            starts.append((line.split("'")[1], time.perf_counter()))
    code = proc.wait()
    ends = [t for _, t in starts[1:]] + [time.perf_counter()]
    return code, "".join(log), {stage: round(end - t, 1) for (stage, t), end in zip(starts, ends, strict=True)}


def run_family(name: str, root: Path) -> dict:
    project = copy_project(root / "project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["name"] = str(build_family(name, root / "model"))
    params["prompts"]["prepend_bos"] = PREPEND_BOS[name]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(project, "git", "init", "-q")
    t0 = time.perf_counter()
    code, log, times = repro(project)
    out = {"exit_code": code, "repro_seconds": round(time.perf_counter() - t0, 1)}
    if code != 0:
        out["error"] = [line for line in log.splitlines() if line.startswith(("error", "ERROR"))][-2:]
        return out
    out["stage_seconds"] = times
    out["mechanism_seconds"] = sum(times.get(s, 0.0) for s in MECHANISM)
    files = {
        "heads": "data/heads/heads.json",
        "attribution": "data/attribution/attribution.json",
        "interventions": "data/interventions/summary.json",
    }
    out["applies"] = {s: json.loads((project / f).read_text())["applies"] for s, f in files.items()}
    att = json.loads((project / files["attribution"]).read_text())
    if att["applies"]:
        out["identity_error"] = max(v["identity_error"] for v in att["layers"].values())
        out["components"] = att["components"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", default=sorted(FAMILIES))
    args = parser.parse_args()
    results = {}
    for name in args.families:
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run_family(name, Path(tmp))
        r = results[name]
        print(
            f"{name:32s} exit {r['exit_code']}  repro {r['repro_seconds']:6.1f}s  "
            f"mechanism {r.get('mechanism_seconds', float('nan')):5.0f}s  applies {r.get('applies')}  "
            f"identity error {r.get('identity_error', float('nan')):.1e}",
            flush=True,
        )
    base = results.get("gpt2", {}).get("mechanism_seconds")
    if base:
        for name, r in results.items():
            if "mechanism_seconds" in r:
                r["mechanism_vs_gpt2"] = round(r["mechanism_seconds"] / base, 2)
                print(f"{name:32s} mechanism stages {r['mechanism_vs_gpt2']:.2f}x GPT-2's")
    save("families_cpu", {"families": results, "env": {k: ENV[k] for k in ("EMERGENT_POS_DEVICE",)}})


if __name__ == "__main__":
    main()
