"""Flax modules only: generator, discriminator, classifier and shared layers."""

from ganjax.models.classifier import PreActBlock, ResNet, SmallCNN
from ganjax.models.gan import Discriminator, Generator
from ganjax.models.layers import Downsample, Upsample, depth_to_space, space_to_depth
from ganjax.models.seed import SeedDiscriminator, SeedGenerator

__all__ = [
    "Discriminator",
    "Generator",
    "PreActBlock",
    "ResNet",
    "SeedDiscriminator",
    "SeedGenerator",
    "SmallCNN",
    "Downsample",
    "Upsample",
    "depth_to_space",
    "space_to_depth",
]
