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
