#!/usr/bin/env bash
# The main job on the embedded default, end to end, on param_files/demo_params.py:
# simulate the prior, fit the mock galaxy with dynesty, train the amortised
# posterior on the simulations and infer the same galaxy with it.
# Run through `make demo` (which sets up .venv first); outputs go to $OUT.
set -euo pipefail
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
PARAMS=param_files/demo_params.py
BASE="$OUT/demo"

step() { printf '\n== %s\n' "$*" >&2; }

step "1/4 simulate 200,000 prior draws"
sims=$(python "$PARAMS" --simulate --n_samples 200000 --workers 2 --outfile "$BASE" --overwrite | tail -n 1)

step "2/4 classical fit of the mock galaxy (dynesty, master + 2 workers)"
fit=$(mpiexec -n 3 python "$PARAMS" --dynesty --nested_sample rwalk --nested_walks 16 \
      --nested_target_n_effective 1000 --nested_dlogz_init 0.1 --quiet --outfile "$BASE" --overwrite | tail -n 1)

step "3/4 train the amortised posterior on the simulations"
flow=$(python "$PARAMS" --train --simfile "$sims" --epochs 10 --n_validate 500 --outfile "$BASE" --overwrite | tail -n 1)

step "4/4 amortised posterior of the same galaxy"
post=$(python "$PARAMS" --infer --checkpoint "$flow" --n_draws 1000 --outfile "$BASE" --overwrite | tail -n 1)

cat <<EOF

Done. Results:
  simulations      $sims
  dynesty fit      $fit      (read with prospect.io.read_results.results_from)
  neural posterior $flow
  posterior draws  $post
Describe the simulations with:  python -m prospect_sim info $sims
EOF
