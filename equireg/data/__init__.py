"""Datasets with one batch interface: ``create_dataset(name, split)`` then ``ds.batches(batch_size, ...)``."""

from __future__ import annotations

from equireg.data.base import CropBatch, CropSpec, ImageDataset, epoch_generator, epoch_indices, sample_seed
from equireg.data.cifar import cifar10, cifar100
from equireg.data.fashion_mnist import fashion_mnist, parse_idx
from equireg.data.folder import ImageFolderDataset, default_num_workers, load_image, sort_class_names
from equireg.data.memory import TensorImageDataset, fit_size
from equireg.data.paths import PathTable
from equireg.data.registry import DATASETS, create_dataset, list_datasets, register_dataset, split_folder
from equireg.data.synthetic import synthetic

__all__ = [
    "DATASETS",
    "CropBatch",
    "CropSpec",
    "PathTable",
    "default_num_workers",
    "sample_seed",
    "sort_class_names",
    "split_folder",
    "ImageDataset",
    "ImageFolderDataset",
    "TensorImageDataset",
    "cifar10",
    "cifar100",
    "create_dataset",
    "epoch_generator",
    "epoch_indices",
    "fashion_mnist",
    "fit_size",
    "list_datasets",
    "load_image",
    "parse_idx",
    "register_dataset",
    "synthetic",
]
