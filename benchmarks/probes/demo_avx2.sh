#!/bin/bash
# `make demo`'s four steps, timed, as they run on a CPU with AVX2 and no AVX-512, on one
# that has AVX-512 (docs/performance.md): float32, and TensorFlow's own kernels or oneDNN
# capped at AVX2 (ONEDNN_MAX_CPU_ISA). From the repository root, after `make install`:
#   benchmarks/probes/demo_avx2.sh new   # kseg's defaults there: oneDNN for the fit only
#   benchmarks/probes/demo_avx2.sh old   # TensorFlow's own kernels throughout
# Writes the runs under /tmp/demo-avx2-$1 (removed first).
set -e
K=.venv/bin/kseg
R=/tmp/demo-avx2-$1; rm -rf $R
EIGEN="env TF_ENABLE_ONEDNN_OPTS=0"
if [ "$1" = new ]; then FIT="env TF_ENABLE_ONEDNN_OPTS=1 ONEDNN_MAX_CPU_ISA=AVX2"; else FIT="$EIGEN"; fi
t0=$(date +%s.%N)
$EIGEN $K data check > /dev/null
t1=$(date +%s.%N)
$FIT $K fit unet --recipe demo --precision float32 --runs $R > $R.fit.log 2>&1
t2=$(date +%s.%N)
$EIGEN $K eval --all --runs $R --splits val,test > $R.eval.log 2>&1
$EIGEN $K report --runs $R > $R.report.log 2>&1
t3=$(date +%s.%N)
python3 -c "print('$1', 'check', round($t1-$t0,1), 'fit', round($t2-$t1,1), 'eval+report', round($t3-$t2,1), 'total', round($t3-$t0,1))"
grep -i 'onednn\|precision' $R.fit.log | head -2
grep -i 'pixel\|accuracy' $R.eval.log | head -6
