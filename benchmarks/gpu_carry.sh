#!/usr/bin/env bash
# Fill .carry/ (git-ignored) with what benchmarks/gpu_session.sh needs on the device and the
# device cannot fetch: wheels of the notebook stack for its Python 3.12 (papermill, nbconvert,
# ipykernel and their needs, less the packages its image already holds) and Fashion-MNIST's
# four files. Run here, where pip reaches the registries; about 50 MB, under the device
# tool's 64 MiB for what travels.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${BPRIOR_CARRY:-.carry}
PYTHON=${PYTHON:-python3}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
# on the device's image already (KINDS.md's package list, read 2026-11-17): not carried
ON_DEVICE="attrs certifi charset_normalizer click idna jinja2 markupsafe packaging psutil
pygments python_dateutil pyyaml requests tqdm typing_extensions urllib3"
PLATFORMS=""
for n in 17 24 26 27 28 31 34 35; do PLATFORMS="$PLATFORMS --platform manylinux_2_${n}_x86_64"; done
rm -rf "$CARRY/wheels"
mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  $PLATFORMS --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$CARRY/wheels" papermill nbconvert nbformat nbclient ipykernel ipywidgets jupyter_client
for name in $ON_DEVICE; do
  rm -f "$CARRY"/wheels/"$name"-*.whl "$CARRY"/wheels/"${name^}"-*.whl \
        "$CARRY"/wheels/"$(echo "$name" | tr _ -)"-*.whl
done
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
  if [ ! -f "$FMNIST/$f" ]; then
    echo "gpu_carry: $FMNIST/$f is missing: install Debian's dataset-fashion-mnist (make data)" \
         "or set FMNIST to a folder holding the four files" >&2
    exit 1
  fi
  cp "$FMNIST/$f" "$CARRY/fashion-mnist/"
done
echo "gpu_carry: $(ls "$CARRY/wheels" | wc -l) wheels; $(du -sh "$CARRY" | cut -f1) in $CARRY"
