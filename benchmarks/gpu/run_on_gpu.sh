#!/bin/bash
# One call on a lent GPU machine (the device tool; prepared by benchmarks/gpu/prepare.sh), most valuable first,
# each stage under a time limit so that the call ends inside LIMIT seconds: the default full run (timed, outputs kept), CUDA vs CPU
# maps on its weights, --quick with the T4 path forced (fp16 + GradScaler), benchmarks/bench.py into bench-gpu.json,
# then full-scale seeds of the audit (each written as it finishes) beside the test suite on 8 CPU workers.
# What comes back in $OUT (8 files at most): stages.log, gpu-run.tgz, audit_per_image.npz, compare.json, bench-gpu.json,
# small.tgz, pytest.log, seeds.tgz. Not yet run on a GPU: no GPU has been lent to this work so far.
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $OUT/stages.log; }
D=/tmp/data/cifar10-jpeg
{ nvidia-smi; python3 -c "import torch,sys,torchvision;print(sys.version); print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())"; nproc; lscpu | grep 'Model name'; free -g; } >> $OUT/stages.log 2>&1
python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl >> $OUT/stages.log 2>&1; echo "pip rc=$?" >> $OUT/stages.log
mkdir -p /tmp/data && tar -xzf .gpu/cifar10-jpeg.tar.gz -C /tmp/data
el "setup done"
LIMIT=${LIMIT:-560}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
el "full run start"
S=$(date +%s)
timeout $(( $(left) - 200 )) python3 grad_cam_experiment.py --no-progress --data-dir $D --output-dir /tmp/gpu-run > /tmp/gpu-run.log 2>&1
echo "rc=$? wall_s=$(( $(date +%s) - S ))" >> /tmp/gpu-run.log
el "full run end: $(tail -1 /tmp/gpu-run.log)"
cp /tmp/gpu-run/audit_per_image.npz $OUT/ 2>/dev/null; ls -la /tmp/gpu-run >> $OUT/stages.log 2>&1
tar -czf $OUT/gpu-run.tgz -C /tmp --exclude=checkpoints --exclude=audit_per_image.npz gpu-run gpu-run.log
el "compare start"
timeout 60 python3 benchmarks/gpu/compare_maps.py /tmp/gpu-run $D $OUT/compare.json > /tmp/compare.log 2>&1; el "compare rc=$?"
el "t4 quick start"
S=$(date +%s)
timeout 120 python3 benchmarks/gpu/t4_quick.py --quick --no-progress --data-dir $D --output-dir /tmp/t4-quick > /tmp/t4-quick.log 2>&1
echo "rc=$? wall_s=$(( $(date +%s) - S ))" >> /tmp/t4-quick.log
el "t4 quick end: $(tail -1 /tmp/t4-quick.log)"
el "bench start (left $(left) s)"
timeout $(( $(left) - 25 )) python3 benchmarks/bench.py --data-dir $D --workers 8 --out $OUT/bench-gpu.json > /tmp/bench.log 2>&1
el "bench rc=$?"
tar -czf $OUT/small.tgz -C /tmp --exclude=checkpoints t4-quick t4-quick.log compare.log bench.log
# the rest of the time: full-scale seeds on the GPU (each written as it finishes) beside the test suite on 8 CPU workers
el "seeds + pytest start (left $(left) s)"
( timeout $(( $(left) - 20 )) python3 benchmarks/seeds.py --data-dir $D --seeds 0,1,2 --train-subset 0 --test-subset 0 \
    --audit-images 200 --no-fp32-comparison --out /tmp/seeds-gpu > /tmp/seeds-gpu.log 2>&1; echo "rc=$?" >> /tmp/seeds-gpu.log ) &
( OMP_NUM_THREADS=2 timeout $(( $(left) - 20 )) python3 -m pytest -q -p no:cacheprovider -n 8 -rfE > $OUT/pytest.log 2>&1; echo "rc=$?" >> $OUT/pytest.log ) &
wait
el "seeds: $(tail -1 /tmp/seeds-gpu.log); pytest: $(tail -2 $OUT/pytest.log | tr '\n' ' ')"
tar -czf $OUT/seeds.tgz -C /tmp --exclude=checkpoints seeds-gpu seeds-gpu.log
el "done"
