"""The data layer every model family trains on: Shapes and users' own image-text pairs."""

from mmgen.data.collate import collate_examples
from mmgen.data.imagetext import ImageTextDataset
from mmgen.data.shapes import ShapesDataset, export_shapes, parse_caption, shapes_grid
from mmgen.data.sources import DataSource, open_dataset, open_images

__all__ = [
    "DataSource",
    "ImageTextDataset",
    "ShapesDataset",
    "collate_examples",
    "export_shapes",
    "open_dataset",
    "open_images",
    "parse_caption",
    "shapes_grid",
]
