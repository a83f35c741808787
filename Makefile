# freightwatch: the two commands of the README quick start, plus helpers.
# Each target creates .venv when missing and (re)installs only when pyproject.toml changed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.freightwatch-installed
export YOLO_OFFLINE := true
export ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS := 1

.PHONY: install demo test lint weights clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/freightwatch demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Retrain the bundled demo weights (CPU: about an hour each) and measure them on held-out sites.
weights: $(STAMP)
	# synthetic-only detector (`bundled-synthetic`, YOLO11n): 40 + 30 epochs on synthetic chips, then a
	# 20-epoch boat stage (392 more chips holding boats); counting thresholds and per-class NMS IoU
	# from 24 calibration sites
	$(BIN)/python benchmarks/train_detector_weights.py --boat-epochs 20 --n-calib 24 --dest runs/weights/detector/final
	cp runs/weights/detector/final/detector.safetensors freightwatch/weights/detector_synthetic.safetensors
	cp runs/weights/detector/final/detector.json freightwatch/weights/detector_synthetic.json
	cp runs/weights/detector/final/detector_accuracy.json freightwatch/weights/detector_synthetic_accuracy.json
	$(BIN)/python benchmarks/train_density_weights.py
	# density stages 2 and 3: 16 more epochs each from the previous stage on more training sites,
	# lower peak learning rate (each stage is calibrated and evaluated again)
	$(BIN)/python benchmarks/train_density_weights.py --out runs/density-cont --data runs/density-weights/data \
	   --train-seeds 1000:1080 --epochs 16 --lr 1.5e-3 --init runs/density-weights/density.safetensors
	$(BIN)/python benchmarks/train_density_weights.py --out runs/density-s3 --data runs/density-weights/data \
	   --train-seeds 1000:1120 --epochs 16 --lr 1e-3 --init runs/density-cont/density.safetensors
	# density stage 4: 12 epochs from stage 3 with crops centred on railcars 3x as often as on others
	$(BIN)/python benchmarks/train_density_weights.py --out runs/density-s4 --data runs/density-weights/data \
	   --train-seeds 1000:1120 --epochs 12 --lr 1e-3 --init runs/density-s3/density.safetensors --class-focus railcar=3
	# density stage 5: the stage-4 weights calibrated again with 8-fold test-time augmentation
	$(BIN)/python benchmarks/train_density_weights.py --out runs/density-s5-tta \
	   --recalibrate runs/density-s4/density.safetensors --train-seeds 1000:1120 --tta
	cp runs/density-s5-tta/density.safetensors runs/density-s5-tta/density.json \
	   runs/density-s5-tta/density_accuracy.json freightwatch/weights/
	# default detector (`bundled`): YOLOv8s from the real-photo checkpoint, 8 epochs on the synthetic
	# chips + real ship tiles (about an hour), stored in 9.9 MB by `freightwatch compact` (which keeps
	# the card's counting thresholds and IoU), measured as stored on held-out synthetic sites and real tiles.
	# Needs ../shared (development only); without it the synthetic-only detector is the default.
	@if [ -d ../shared/data/ships-google-earth ] && [ -f ../shared/weights/yolov8s_fall_detection.pt ]; then \
	  set -e; SYN="--model yolov8s.yaml --synthetic runs/weights/detector/run/dataset --synthetic-work runs/weights/detector"; \
	  $(BIN)/python benchmarks/train_real_detector.py --out runs/real/v8s $$SYN --prepare-synthetic \
	    --init ../shared/weights/yolov8s_fall_detection.pt; \
	  $(BIN)/freightwatch compact runs/real/v8s/detector.safetensors --out runs/real/v8s-compact/detector.safetensors \
	    --max-mb 9.9; \
	  $(BIN)/python benchmarks/train_real_detector.py --out runs/real/v8s-compact $$SYN --evaluate-only; \
	  $(BIN)/python benchmarks/real_transfer.py --detector v8s-compact=runs/real/v8s-compact/detector.safetensors \
	    --detector v8s-fp16=runs/real/v8s/detector.safetensors --out runs/real/transfer \
	    --accuracy-json runs/real/v8s-compact/bundled_accuracy.json; \
	  cp runs/real/v8s-compact/detector.safetensors freightwatch/weights/detector.safetensors; \
	  cp runs/real/v8s-compact/detector.json freightwatch/weights/detector.json; \
	  cp runs/real/v8s-compact/bundled_accuracy.json freightwatch/weights/detector_accuracy.json; \
	else echo "../shared not found: the synthetic-only detector becomes the default"; \
	  cp freightwatch/weights/detector_synthetic.safetensors freightwatch/weights/detector.safetensors; \
	  cp freightwatch/weights/detector_synthetic.json freightwatch/weights/detector.json; \
	  cp freightwatch/weights/detector_synthetic_accuracy.json freightwatch/weights/detector_accuracy.json; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf runs .pytest_cache .ruff_cache
