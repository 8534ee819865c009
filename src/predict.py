"""Classify image files with a CIFAR-10 model from MLflow.

    python -m src.predict cat.png ship.jpg                # models:/cifar10-cnn@champion
    python -m src.predict photos/ --run <run_id>          # every PNG/JPEG in photos/, runs:/<run_id>/model
    python -m src.predict x.png --name cifar10-cnn --alias challenger --tracking-uri http://host:5000

Prints `path<TAB>class<TAB>probability` per image. Images are converted to
RGB, resized to 32x32 and scaled to [0, 1], as in training. An unreadable
file is reported on stderr and makes the exit code 1; the others are still
classified.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import List, Tuple

import mlflow
import numpy as np
from PIL import Image

from src.core.data import CLASS_NAMES
from src.tracking.store import check_reachable, resolve_uri, sqlite_path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DEFAULT_NAME, DEFAULT_ALIAS = "cifar10-cnn", "champion"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SIZE = (32, 32)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.predict", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", help="image files (PNG/JPEG) or folders of them")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-uri", help="any MLflow model URI (models:/..., runs:/...)")
    source.add_argument("--run", help="a training run id: uses runs:/<id>/model")
    source.add_argument("--name", help=f"registered model name (default {DEFAULT_NAME})")
    parser.add_argument("--alias", help=f"registered model alias (default {DEFAULT_ALIAS})")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the embedded store")
    args = parser.parse_args(argv)
    if args.alias and (args.model_uri or args.run):
        parser.error("--alias goes with --name, not with --model-uri or --run")
    return args


def model_uri(args: argparse.Namespace) -> str:
    if args.model_uri:
        return args.model_uri
    if args.run:
        return f"runs:/{args.run}/model"
    return f"models:/{args.name or DEFAULT_NAME}@{args.alias or DEFAULT_ALIAS}"


def image_paths(inputs: List[str]) -> List[Path]:
    """Files as given; a folder stands for its PNG/JPEG files, sorted."""
    paths: List[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def read_image(path: Path) -> np.ndarray:
    """(32, 32, 3) float32 in [0, 1]. Raises OSError (or ValueError) when unreadable."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != SIZE:
            image = image.resize(SIZE, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32) / 255.0


def load_model(uri: str, tracking_uri: str):
    store = sqlite_path(tracking_uri)
    if store and not store.is_file():  # MLflow would create an empty store there
        raise FileNotFoundError(f"no MLflow store at {store}")
    check_reachable(tracking_uri)  # a server that is down, or refuses this client, in one line
    mlflow.set_tracking_uri(tracking_uri)
    # MLflow's "Downloading artifacts" progress bars, one per model file, are not the answer
    # (MLflow reads this as it downloads; set explicitly, it is kept).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.pyfunc.load_model(uri)


def read_images(paths: List[Path]) -> Tuple[List[Path], List[np.ndarray], int]:
    """The readable images and their arrays; each unreadable one is reported and counted."""
    readable, arrays, failures = [], [], 0
    for path in paths:
        try:
            arrays.append(read_image(path))
            readable.append(path)
        except (OSError, ValueError) as err:
            print(f"error: cannot read image {path}: {err}", file=sys.stderr)
            failures += 1
    return readable, arrays, failures


def main(argv=None) -> int:
    args = parse_args(argv)
    paths, arrays, failures = read_images(image_paths(args.images))
    if not arrays:
        print("error: no readable images", file=sys.stderr)
        return 1
    uri, tracking_uri = model_uri(args), resolve_uri(args.tracking_uri)
    try:
        model = load_model(uri, tracking_uri)
    except Exception as err:  # MLflow raises many types: a missing model, run or store
        print(f"error: cannot load model {uri} from {tracking_uri}: {err}", file=sys.stderr)
        return 1
    with contextlib.redirect_stdout(sys.stderr):  # Keras' progress bar: stdout is for results
        probabilities = np.asarray(model.predict(np.stack(arrays)))
    for path, row in zip(paths, probabilities):
        best = int(row.argmax())
        print(f"{path}\t{CLASS_NAMES[best]}\t{row[best]:.4f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
