"""Pictures of predictions: PNG overlays of a model's output (optionally next to ground truth).

What is drawn follows the model's output keys, not config flags: ``instances`` (instance models:
masks, boxes, scores), ``sem_seg`` ((C, H, W) class scores of a semantic model: the argmax class
map) or ``depth`` ((H, W) metres of a depth model). Instances and class maps are drawn with
detectron2's ``Visualizer``, the ground truth, when given, the same way on the left; depth is drawn
by :func:`draw_depth_comparison` as image | ground truth | prediction | error.
"""

import os
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.evaluation.sem_seg_evaluation import load_image_into_numpy_array
from detectron2.utils.visualizer import ColorMode, Visualizer
from matplotlib import colormaps

from ..data.depth_io import read_depth
from ..data.sem_seg import label_palette
from ..evaluation.depth_evaluation import depth_valid_mask

__all__ = [
    "DEPTH_INVALID_COLOUR",
    "Predictor",
    "draw_dataset_predictions",
    "draw_depth_comparison",
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


# Ground-truth pixels that are not evaluated (0 = invalid in the depth files, or outside the
# metadata's (min_depth, max_depth)) in the ground-truth and error panels: a grey that neither
# colour map below contains.
DEPTH_INVALID_COLOUR = (128, 128, 128)
_DEPTH_COLORMAP = "magma_r"  # near: light, far: dark
_ERROR_COLORMAP = "viridis"


def _colourise(values: np.ndarray, vmax: float, cmap: str) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 RGB through the matplotlib colour map ``cmap`` over the
    fixed range [0, vmax] (values outside are clipped, NaN drawn as 0)."""
    norm = np.clip(np.nan_to_num(values / vmax, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return colormaps[cmap](norm, bytes=True)[..., :3]


def _titled(panel: np.ndarray, title: str, band: int) -> np.ndarray:
    """``panel`` with a black strip of height ``band`` above it holding ``title`` (clipped to the
    panel's width)."""
    strip = np.zeros((band, panel.shape[1], 3), np.uint8)
    cv2.putText(
        strip,
        title,
        (3, band - band // 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        band / 40,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return np.concatenate([strip, panel], axis=0)


def draw_depth_comparison(
    image_rgb: np.ndarray,
    pred,
    gt: Optional[np.ndarray],
    max_depth: float,
    min_depth: float = 1e-3,
    scale: float = 1.0,
    max_rel_error: float = 0.5,
) -> np.ndarray:
    """One picture of a depth prediction: image | ground truth | prediction | relative error
    (image | prediction when ``gt`` is None), each panel under a small title.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        pred: (H, W) predicted depth in metres (tensor or array).
        gt: (H, W) ground-truth depth in metres (0 = invalid), or None.
        max_depth, min_depth: ground truth and prediction are colour-mapped ("magma_r", light =
            near) over the same fixed range [0, max_depth]. Ground-truth pixels outside
            (min_depth, max_depth), the ones the evaluation ignores, are drawn in
            :data:`DEPTH_INVALID_COLOUR` in the ground-truth and error panels.
        scale: size of the drawing relative to the image.
        max_rel_error: top of the error panel's colour scale ("viridis"): |d - d*| / d*, with
            the prediction clipped into [min_depth, max_depth] as the evaluation does.

    Returns:
        (B + s*H, n*s*W, 3) uint8 RGB, s = ``scale``, n = 4 (2 without ``gt``), B the title band
        height (``round(16 * max(1, s))``).
    """
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().to("cpu", torch.float32).numpy()
    pred = np.asarray(pred, dtype=np.float32)
    size = image_rgb.shape[:2]
    if pred.shape != size:
        raise ValueError(
            f"predicted depth has shape {pred.shape} but the image is {size} (H, W); a depth "
            "model returns (H, W) depth at the original image size"
        )
    panels = [(np.ascontiguousarray(image_rgb, dtype=np.uint8), "image")]
    depth_range = f"0-{max_depth:g} m"
    if gt is not None:
        gt = np.asarray(gt, dtype=np.float32)
        if gt.shape != size:
            raise ValueError(
                f"ground-truth depth has shape {gt.shape} but the image is {size} (H, W)"
            )
        valid = depth_valid_mask(gt, min_depth, max_depth)  # (H, W)
        gt_panel = _colourise(gt, max_depth, _DEPTH_COLORMAP)
        gt_panel[~valid] = DEPTH_INVALID_COLOUR
        panels.append((gt_panel, f"truth {depth_range}"))
    panels.append((_colourise(pred, max_depth, _DEPTH_COLORMAP), f"prediction {depth_range}"))
    if gt is not None:
        clipped = np.clip(pred, min_depth, max_depth)
        rel_error = np.abs(clipped - gt) / np.where(valid, gt, 1.0)  # (H, W)
        error_panel = _colourise(rel_error, max_rel_error, _ERROR_COLORMAP)
        error_panel[~valid] = DEPTH_INVALID_COLOUR
        mean = f" mean {rel_error[valid].mean():.3f}" if valid.any() else ""  # before the range: a narrow panel cuts the end
        panels.append((error_panel, f"|d-d*|/d*{mean} (0-{max_rel_error:g})"))

    band = int(round(16 * max(1.0, scale)))
    out_size = (int(round(size[1] * scale)), int(round(size[0] * scale)))  # (W, H) for cv2
    drawn = []
    for k, (panel, title) in enumerate(panels):
        if out_size != (size[1], size[0]):
            # the photo smoothly, the maps with nearest so that colours stay exact
            interpolation = cv2.INTER_LINEAR if k == 0 else cv2.INTER_NEAREST
            panel = cv2.resize(panel, out_size, interpolation=interpolation)
        drawn.append(_titled(panel, title, band))
    return np.concatenate(drawn, axis=1)


def _draw_depth_output(
    image_rgb: np.ndarray, metadata, depth, record: Optional[Dict], scale: float
) -> np.ndarray:
    """:func:`draw_depth_comparison` with the range of the dataset ``metadata`` and the ground
    truth of ``record["depth_file_name"]`` (read with the metadata's ``depth_scale``)."""
    dataset = metadata.get("name", "?")
    max_depth = metadata.get("max_depth", None)
    if max_depth is None:
        raise KeyError(
            f"cannot draw depth predictions: dataset '{dataset}' has no metadata 'max_depth' (the "
            "top of the colour scale; a depth dataset's metadata has it, see "
            "percep_det/data/depth_io.py)"
        )
    gt = None
    if record is not None and "depth_file_name" in record:
        depth_scale = metadata.get("depth_scale", None)
        if depth_scale is None:
            raise KeyError(
                f"cannot read ground-truth depth '{record['depth_file_name']}': dataset "
                f"'{dataset}' has no metadata 'depth_scale' (PNG value per metre)"
            )
        gt = read_depth(record["depth_file_name"], depth_scale)
    min_depth = metadata.get("min_depth", 1e-3)
    return draw_depth_comparison(image_rgb, depth, gt, max_depth, min_depth, scale)


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
    ``SemSegEvaluator`` reads it); otherwise ``output["depth"]`` -> :func:`draw_depth_comparison`
    with the depth map of ``record["depth_file_name"]`` and the ``metadata``'s ``max_depth``,
    ``min_depth`` and ``depth_scale``.
    """
    if "instances" in output:
        return draw_overlay(image_rgb, metadata, output["instances"], record, score_thresh, scale)
    if "sem_seg" in output:
        gt = None
        if record is not None and "sem_seg_file_name" in record:
            gt = load_image_into_numpy_array(record["sem_seg_file_name"], dtype=np.int64)
        return draw_sem_seg_overlay(image_rgb, metadata, output["sem_seg"], gt, scale)
    if "depth" in output:
        return _draw_depth_output(image_rgb, metadata, output["depth"], record, scale)
    raise KeyError(
        f"cannot draw model output with keys {sorted(output)}: expected 'instances' (instance "
        "models), 'sem_seg' (semantic models) or 'depth' (depth models)"
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
    instances, semantic class maps or depth (image | truth | prediction | error), whichever the
    model outputs (see :func:`draw_prediction`).

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
