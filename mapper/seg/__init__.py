"""Cropland segmentation: Mask2Former built from configs, sliding-window block inference, training."""
