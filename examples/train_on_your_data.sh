#!/usr/bin/env bash
# Prepare a folder of your own tomograms, train, evaluate and predict.
#
#   bash examples/train_on_your_data.sh [DATA_DIR] [WORK_DIR]
#
# DATA_DIR holds NAME.mrc tomograms with NAME_labels.mrc label volumes (0 background,
# 1 microtubule, 2 ribosome, 3 double membrane, 4 single membrane, 5 carbon edge), or
# Image/ and label/ folders of same-named TIFF/PNG slices. Without DATA_DIR a few
# synthetic tomograms are written first, so the script runs as it is.
# Extra settings for every step can be passed in BIOMODELS_SETTINGS, e.g.
#   BIOMODELS_SETTINGS="--set depth=3 --set tile_size=64" EPOCHS=1 bash examples/train_on_your_data.sh
set -euo pipefail

WORK_DIR=${2:-$(mktemp -d)}
DATA_DIR=${1:-$WORK_DIR/raw}
SETTINGS=${BIOMODELS_SETTINGS:-}
EPOCHS=${EPOCHS:-5}

if [ -z "${1:-}" ]; then
  echo "No DATA_DIR given: writing 3 synthetic tomograms to $DATA_DIR"
  python -c "from biomodels.pipelines.synthetic import cryoet; cryoet.write_dataset('$DATA_DIR', 3, seed=0, shape=(8, 128, 128))"
fi

# 1. raw files -> TFRecord shards + dataset.json (split by tomogram)
python -m biomodels.prepare --task=cryoet --input="$DATA_DIR" --output_dir="$WORK_DIR/prepared" $SETTINGS
# 2. train; the same command resumes if interrupted
python -m biomodels.train --task=cryoet --data_dir="$WORK_DIR/prepared" --model_dir="$WORK_DIR/run" --epochs="$EPOCHS" $SETTINGS
# 3. evaluate on the validation split too
python -m biomodels.evaluate --task=cryoet --model_dir="$WORK_DIR/run" --split=val
# 4. label the tomograms (writes NAME_labels.mrc and one probability MRC per class)
python -m biomodels.predict --task=cryoet --model="$WORK_DIR/run" --input="$DATA_DIR" --output="$WORK_DIR/predictions" --probabilities
echo "Predictions in $WORK_DIR/predictions"
