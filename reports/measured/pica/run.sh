#!/usr/bin/env bash
# The PICA study (stages/evaluate_pica.py) on full Colored MNIST (the IRM paper's protocol,
# environments made from the four original MNIST idx files) and on the complete Colored
# Fashion-MNIST (54,000 training images), with the default profile's pica_study settings.
# Run from the repository root: bash reports/measured/pica/run.sh
set -euo pipefail
out=reports/measured/pica
test -f data/cli/colored_mnist/manifest.json || .venv/bin/python -m pipeline make-envs \
    --dataset colored_mnist --source ../shared/data/mnist --out data/cli/colored_mnist
test -f data/cli/colored_fashion_mnist/manifest.json || .venv/bin/python -m pipeline \
    make-envs --dataset colored_fashion_mnist --out data/cli/colored_fashion_mnist
.venv/bin/python - <<'PY'
import yaml
params = yaml.safe_load(open("params.yaml"))
section = {**params["pica_study"], "datasets": ["colored_mnist", "colored_fashion_mnist"]}
yaml.safe_dump({"pica_study": section}, open("reports/measured/pica/params.yaml", "w"))
PY
git rev-parse HEAD > $out/commit.txt
.venv/bin/python -m stages.evaluate_pica --envs-dir data/cli --params $out/params.yaml \
    --out $out/pica.json 2>&1 | tee $out/pica.log
.venv/bin/python - <<'PY'
import json
from pipeline.report.pica import pica_markdown, projection_figure
result = json.load(open("reports/measured/pica/pica.json"))
open("reports/measured/pica/pica.md", "w").write(pica_markdown(result))
projection_figure(result, "reports/measured/pica/fig11_pica_projection")
PY
# the agreement tolerance on the synthetic case: 200 seeded draws per rule (tolerance.log)
.venv/bin/python - <<'PY' | tee $out/tolerance.log
import numpy as np
from pipeline.pica.study import synthetic_rows
print("rule       tolerance  draws  mean|cos|  min|cos|  draws<0.99")
for threshold in ("signed", "symmetric"):
    for tol in (0.01, 0.02, 0.05, 0.1):
        cos = [r["cosine"] for r in synthetic_rows(0, 200, tol, threshold) if r["method"] == "pica"]
        print(f"{threshold:10s} {tol:9.2f} {len(cos):6d} {np.mean(cos):10.4f} {np.min(cos):9.4f} "
              f"{sum(c < 0.99 for c in cos):11d}")
PY
