#!/usr/bin/env bash
# The `make demo` walk-through: sample data -> validate -> train -> evaluate -> score.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-demo}
PY=${PY:-.venv/bin/python}
VML="$PY -m visionml"

echo "== 1. sample data (synthetic shapes, Azure AutoML JSONL) -> $DEMO_DIR/data"
if [ ! -f "$DEMO_DIR/data/train.jsonl" ]; then
  $VML sample-data --task image_object_detection -o "$DEMO_DIR/data"
fi

echo "== 2. validate"
$VML validate "$DEMO_DIR/data/train.jsonl"
