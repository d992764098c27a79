#!/usr/bin/env bash
# Run here, on the CPU machine, before a lent GPU's one call (see run_on_gpu.sh): fills the ignored folder .gpu/ with
# what the GPU machine lacks and cannot download there: the peers' wheels the tests and bench.py compare against
# (pure Python, pinned as in requirements-dev.txt) and the CIFAR-10 archive. Then call the device tool with
#   command: LIMIT=555 bash benchmarks/gpu/run_on_gpu.sh     carry: [".gpu"]     timeout_s: 580
set -euo pipefail
cd "$(dirname "$0")/../.."
archive=${1:-../shared/data/cifar10-jpeg.tar.gz}
[ -f "$archive" ] || { echo "error: no CIFAR-10 archive at $archive; pass its path as the first argument" >&2; exit 2; }
mkdir -p .gpu/wheels
pip download -q --no-deps grad-cam==1.5.7 ttach captum==0.9.0 quantus==0.6.0 cachetools -d .gpu/wheels
for sdist in .gpu/wheels/*.tar.gz; do  # grad-cam ships only a source archive: build its (pure Python) wheel here
  [ -e "$sdist" ] || continue; pip wheel -q --no-deps "$sdist" -w .gpu/wheels && rm "$sdist"
done
cp "$archive" .gpu/cifar10-jpeg.tar.gz
du -sh .gpu && ls .gpu/wheels
