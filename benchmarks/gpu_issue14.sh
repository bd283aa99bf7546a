#!/usr/bin/env bash
# Issue 14's GPU figures in one call of a lent device (about 5 minutes): IQL updates per second
# alone and as 10 members, eager and compiled, fp32 and bf16-mixed, each beside the plain loop
# of the same process. Run from the repository root:
#   bash benchmarks/gpu_issue14.sh > "$OUT/gpu_issue14.log" 2>&1
set -u
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
for precision in 32-true bf16-mixed; do
  for compile in "" "--compile"; do
    echo "### iql, precision ${precision} ${compile}"
    timeout 170 python throughput.py --device cuda --loss iql --seconds 8 --members 1 10 \
      --precision "${precision}" ${compile} 2>&1 | grep -E "^(plain|members|lightning|ratio|compile)|Error|error" | head -20
  done
done
