"""Pictures of predictions: PNG overlays of a model's output (optionally next to ground truth)."""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["Predictor", "draw_dataset_predictions", "draw_overlay"]


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


def _write_png(path: str, rgb: np.ndarray) -> None:
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
    """Write ``num_images`` PNGs of ground truth (left) and predictions (right) of a dataset.

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
        if "instances" not in output:
            raise KeyError(f"model output has no 'instances' (keys: {sorted(output)})")
        picture = draw_overlay(rgb, metadata, output["instances"], record, score_thresh, scale)
        name = os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(out_dir, f"{dataset_name}_{name}.png")
        _write_png(path, picture)
        paths.append(path)
    return paths
