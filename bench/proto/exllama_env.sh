# Sourced by the device scripts that time ExLlamaV2 too (repository root, GPU machine, wheels carried in .whl/):
# installs the wheels into /tmp/exl, sets PYTHONPATH/PATH and the build's MAX_JOBS / TORCH_CUDA_ARCH_LIST, prints the
# card and commit, and starts compiling ExLlamaV2's extension in the background (its pid in $B, its source in $SRC).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/exl .whl/*.whl || exit 1
export PYTHONPATH=/tmp/exl:$PWD:$PWD/bench PATH=/tmp/exl/bin:$PATH PYTHONUNBUFFERED=1 MAX_JOBS=8 TORCH_CUDA_ARCH_LIST=9.0a
SRC=/tmp/exl/exllamav2/exllamav2_ext
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
python3 -m qllama.bench --build-exllama --exllama-src $SRC > $OUT/exllama_build.log 2>&1 &
B=$!
