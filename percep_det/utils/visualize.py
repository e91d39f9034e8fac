"""Pictures of predictions: PNG overlays of a model's output (optionally next to ground truth).

What is drawn follows the model's output keys, not config flags: ``instances`` (instance models:
masks, boxes, scores) or ``sem_seg`` ((C, H, W) class scores of a semantic model: the argmax class
map). Both are drawn with detectron2's ``Visualizer``; the ground truth, when given, is drawn the
same way on the left.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.evaluation.sem_seg_evaluation import load_image_into_numpy_array
from detectron2.utils.visualizer import ColorMode, Visualizer

from ..data.sem_seg import label_palette

__all__ = [
    "Predictor",
    "draw_dataset_predictions",
    "draw_overlay",
    "draw_prediction",
    "draw_sem_seg_overlay",
    "write_png",
]


class Predictor:
    """Runs an already built model on single images with the config's test-time resize.

    Unlike detectron2's ``DefaultPredictor`` it does not build or load a model, so a model that is
    being trained can be drawn without a second copy.
    """

    def __init__(self, cfg: CfgNode, model: torch.nn.Module):
        self.model = model
        self.input_format = cfg.INPUT.FORMAT
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Dict:
        """image: (H, W, 3) uint8 in ``cfg.INPUT.FORMAT``. Returns the model's output dict."""
        was_training = self.model.training
        self.model.eval()
        try:
            h, w = image.shape[:2]
            resized = self.aug.get_transform(image).apply_image(image)
            tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
            return self.model([{"image": tensor, "height": h, "width": w}])[0]
        finally:
            self.model.train(was_training)


def draw_overlay(
    image_rgb: np.ndarray,
    metadata,
    instances=None,
    record: Optional[Dict] = None,
    score_thresh: float = 0.3,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw predicted ``instances`` (and, if given, the ground-truth ``record`` on their left).

    Returns an (s*H, s*W or 2*s*W, 3) uint8 RGB picture, s = ``scale``.
    """
    panels = []
    if record is not None:
        # Instances only: the record's semantic map would be painted over the whole picture.
        record = {k: v for k, v in record.items() if k != "sem_seg_file_name"}
        vis = Visualizer(image_rgb, metadata, scale=scale, instance_mode=ColorMode.IMAGE)
        panels.append(vis.draw_dataset_dict(record).get_image())
    if instances is not None:
        instances = instances.to("cpu")
        instances = instances[instances.scores >= score_thresh]
        vis = Visualizer(image_rgb, metadata, scale=scale, instance_mode=ColorMode.IMAGE)
        panels.append(vis.draw_instance_predictions(instances).get_image())
    if not panels:
        raise ValueError("nothing to draw: give instances and/or a ground-truth record")
    return np.concatenate(panels, axis=1)


def _sem_seg_metadata(metadata, num_classes: int) -> Metadata:
    """Class names and fixed colours for ``num_classes`` classes (the same colour for a class in
    every panel; detectron2 draws a random one when the metadata has no ``stuff_colors``)."""
    names = metadata.get("stuff_classes", None)
    if names is None:
        names = [f"class {k}" for k in range(num_classes)]
    elif len(names) != num_classes:
        dataset = metadata.get("name", "?")
        raise ValueError(
            f"the model predicts {num_classes} classes but dataset '{dataset}' has {len(names)} "
            "stuff_classes; check MODEL.SEM_SEG_HEAD.NUM_CLASSES and DATASETS.TEST"
        )
    colours = metadata.get("stuff_colors", None)
    if colours is None or len(colours) < num_classes:
        colours = label_palette(num_classes)
    return Metadata(stuff_classes=list(names), stuff_colors=list(colours))


def draw_sem_seg_overlay(
    image_rgb: np.ndarray,
    metadata,
    sem_seg: Optional[torch.Tensor] = None,
    gt: Optional[np.ndarray] = None,
    scale: float = 1.0,
    alpha: float = 0.7,
) -> np.ndarray:
    """Draw the class map of ``sem_seg`` ((C, H, W) scores; argmax over C), and, if given, the
    ground-truth class map ``gt`` ((H, W) ints; ``ignore_label`` pixels stay undrawn) on its left.

    Returns an (s*H, s*W or 2*s*W, 3) uint8 RGB picture, s = ``scale``.
    """
    if sem_seg is None and gt is None:
        raise ValueError("nothing to draw: give sem_seg scores and/or a ground-truth map")
    num_classes = sem_seg.shape[0] if sem_seg is not None else len(metadata.stuff_classes)
    meta = _sem_seg_metadata(metadata, num_classes)
    maps = [] if gt is None else [np.asarray(gt)]
    if sem_seg is not None:
        maps.append(sem_seg.argmax(dim=0).cpu().numpy())  # (H, W)
    panels = []
    for class_map in maps:
        vis = Visualizer(image_rgb, meta, scale=scale)
        panels.append(vis.draw_sem_seg(class_map, alpha=alpha).get_image())
    return np.concatenate(panels, axis=1)


def draw_prediction(
    image_rgb: np.ndarray,
    metadata,
    output: Dict,
    record: Optional[Dict] = None,
    score_thresh: float = 0.3,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw a model's ``output`` for one image (and the ground truth of its dataset ``record``).

    ``output["instances"]`` -> :func:`draw_overlay`; otherwise ``output["sem_seg"]`` ->
    :func:`draw_sem_seg_overlay` with the label map of ``record["sem_seg_file_name"]`` (read like
    ``SemSegEvaluator`` reads it).
    """
    if "instances" in output:
        return draw_overlay(image_rgb, metadata, output["instances"], record, score_thresh, scale)
    if "sem_seg" in output:
        gt = None
        if record is not None and "sem_seg_file_name" in record:
            gt = load_image_into_numpy_array(record["sem_seg_file_name"], dtype=np.int64)
        return draw_sem_seg_overlay(image_rgb, metadata, output["sem_seg"], gt, scale)
    raise KeyError(
        f"cannot draw model output with keys {sorted(output)}: expected 'instances' (instance "
        "models) or 'sem_seg' (semantic models)"
    )


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB picture (atomically: a temporary file renamed into place)."""
    import cv2

    tmp = path + ".tmp.png"
    if not cv2.imwrite(tmp, rgb[:, :, ::-1]):
        raise IOError(f"could not write '{path}'")
    os.replace(tmp, path)


def draw_dataset_predictions(
    cfg: CfgNode,
    model: torch.nn.Module,
    dataset_name: str,
    out_dir: str,
    num_images: int = 8,
    score_thresh: float = 0.3,
    scale: float = 1.0,
    indices: Optional[Sequence[int]] = None,
) -> List[str]:
    """Write ``num_images`` PNGs of ground truth (left) and predictions (right) of a dataset:
    instances or semantic class maps, whichever the model outputs (see :func:`draw_prediction`).

    Returns the written paths.
    """
    records = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    if indices is None:
        indices = range(min(num_images, len(records)))
    predictor = Predictor(cfg, model)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in indices:
        record = records[i]
        image = utils.read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        output = predictor(image)
        rgb = utils.convert_image_to_rgb(image, cfg.INPUT.FORMAT)
        picture = draw_prediction(rgb, metadata, output, record, score_thresh, scale)
        name = os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(out_dir, f"{dataset_name}_{name}.png")
        write_png(path, picture)
        paths.append(path)
    return paths
