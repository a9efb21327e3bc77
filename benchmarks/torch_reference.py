"""PyTorch eager references for `benchmarks/train_step.py` (benchmark-only: ganjax never imports torch).

- `Generator`, `Discriminator`: ganjax's conditional generator and projection discriminator
  (`ganjax/models/gan.py`, upsample "subpixel" or "subpixel2x2", downsample "subpixel",
  discriminator head "conv3x3" or "none", generator norm "batch"), layer for layer, with the
  same parameter count per layer.
- `ClassicGenerator`, `ClassicDiscriminator`: the usual ConvTranspose conditional DCGAN
  (Radford et al. 2016) of about the same widths: G Linear -> [ConvTranspose 4x4 s2 -> BN ->
  ReLU] ... -> ConvTranspose 4x4 s2 -> tanh; D [Conv 4x4 s2 (-> BN) -> LeakyReLU] x 2 ->
  flatten -> linear + class-embedding projection.
- `SmallCNN`: ganjax's SmallCNN classifier (avg_pool downsampling).
- `GANStep`, `ClassifierStep`: one training step as ganjax's `make_gan_train_step` and
  `classifier_train_step` take it (hinge loss, Adam, one D then one G update on the same
  labels, fresh noise each update, generator EMA; with share_generator_forward, one G
  forward serves both updates, as ganjax's gan.share_generator_forward).

Tensors are NCHW (`channels_last=True` switches the memory format, not the shapes).
Where ganjax's layout and PyTorch's differ the functions are the same up to a fixed
permutation of weights, so the FLOPs and parameter counts are equal:
- flax `depth_to_space` puts the sub-pixel offset before the channel in the channel axis,
  `nn.PixelShuffle` after it (output channel (dy, dx, c) vs (c, dy, dx)); likewise
  `space_to_depth` vs `nn.PixelUnshuffle`;
- upsample "subpixel2x2" computes exactly ConvTranspose2d(k=4, s=2, p=1), so the twin runs that,
  PyTorch's own layer for the function; ganjax's 2x2 sub-pixel kernel [2, 2, C, 4F] holds the
  same 4x4 taps, rearranged (see `ganjax.models.Upsample`), and costs (H+1)^2/H^2 its FLOPs;
- the generator's Dense output is reshaped to [H, W, C] in flax and [C, H, W] here, and
  SmallCNN flattens [H, W, C] in flax and [C, H, W] here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganjax.models.layers import num_upsamplings


def batch_norm(features: int) -> nn.BatchNorm2d:
    # flax BatchNorm(momentum=0.9) keeps 0.9 of the old running statistics; torch's momentum is the new share.
    return nn.BatchNorm2d(features, eps=1e-5, momentum=0.1)


def upsample_layers(in_features: int, features: int, mode: str) -> list[nn.Module]:
    """ganjax's bias-free `Upsample(features, mode)` (the generator's norm "batch" has no conv bias)."""
    if mode == "subpixel":
        return [nn.Conv2d(in_features, 4 * features, 3, padding=1, bias=False), nn.PixelShuffle(2)]
    if mode == "subpixel2x2":
        return [nn.ConvTranspose2d(in_features, features, 4, stride=2, padding=1, bias=False)]
    raise ValueError(f"The PyTorch reference implements upsample 'subpixel' and 'subpixel2x2', not {mode!r}.")


class Generator(nn.Module):
    """ganjax.models.Generator with norm="batch": noise [B, Z], labels [B] -> [B, C, S, S]."""

    def __init__(self, num_classes: int, image_size: int, channels: int, width: int, embed_dim: int, noise_dim: int,
                 upsample: str = "subpixel"):
        super().__init__()
        num_up, self.base = num_upsamplings(image_size)
        self.top_width = width * 2 ** (num_up - 1)
        # Registered in forward order, as flax creates its parameters.
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.dense = nn.Linear(noise_dim + embed_dim, self.base * self.base * self.top_width, bias=False)
        self.dense_norm = batch_norm(self.top_width)
        blocks, in_features = [], self.top_width
        for level in range(num_up):
            features = width * 2 ** (num_up - 1 - level)
            blocks += [*upsample_layers(in_features, features, upsample), batch_norm(features), nn.ReLU(inplace=True)]
            in_features = features
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(in_features, channels, 3, padding=1)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([noise, self.embedding(labels)], dim=1)
        h = self.dense(h).view(-1, self.top_width, self.base, self.base)
        h = F.relu(self.dense_norm(h), inplace=True)
        return torch.tanh(self.to_image(self.blocks(h)))


class Discriminator(nn.Module):
    """ganjax.models.Discriminator with downsample="subpixel": images [B, C, S, S], labels [B] -> logits [B].

    flax's 2x2 'SAME' convolution pads one pixel at the right and bottom.
    """

    def __init__(self, num_classes: int, image_size: int, channels: int, width: int, head: str = "conv3x3"):
        super().__init__()
        num_down, _ = num_upsamplings(image_size)
        layers, in_features = [], channels
        for level in range(num_down):
            features = width * 2**level
            layers += [
                nn.PixelUnshuffle(2),
                nn.ZeroPad2d((0, 1, 0, 1)),
                nn.Conv2d(4 * in_features, features, 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            in_features = features
        if head == "conv3x3":
            layers += [nn.Conv2d(in_features, width * 2**num_down, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            in_features = width * 2**num_down
        elif head != "none":
            raise ValueError(f"Discriminator head {head!r} is unknown; use 'conv3x3' or 'none'.")
        self.encoder = nn.Sequential(*layers)
        self.linear = nn.Linear(in_features, 1)
        self.embedding = nn.Embedding(num_classes, in_features)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images).sum(dim=(2, 3))
        return self.linear(features)[:, 0] + (self.embedding(labels) * features).sum(dim=1)


class ClassicGenerator(nn.Module):
    """The usual conditional DCGAN generator: for 28x28, Linear -> 7x7x(2w) -> ConvTranspose 4x4 s2
    -> 14x14xw -> ConvTranspose 4x4 s2 -> 28x28xC -> tanh."""

    def __init__(self, num_classes: int, image_size: int, channels: int, width: int, embed_dim: int, noise_dim: int):
        super().__init__()
        num_up, self.base = num_upsamplings(image_size)
        self.top_width = width * 2 ** (num_up - 1)
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.dense = nn.Linear(noise_dim + embed_dim, self.base * self.base * self.top_width, bias=False)
        self.dense_norm = batch_norm(self.top_width)
        blocks, in_features = [], self.top_width
        for level in range(num_up - 1):
            features = in_features // 2
            blocks += [
                nn.ConvTranspose2d(in_features, features, 4, stride=2, padding=1, bias=False),
                batch_norm(features),
                nn.ReLU(inplace=True),
            ]
            in_features = features
        blocks += [nn.ConvTranspose2d(in_features, channels, 4, stride=2, padding=1)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([noise, self.embedding(labels)], dim=1)
        h = self.dense(h).view(-1, self.top_width, self.base, self.base)
        h = F.relu(self.dense_norm(h), inplace=True)
        return torch.tanh(self.blocks(h))


class ClassicDiscriminator(nn.Module):
    """The usual DCGAN discriminator: [Conv 4x4 s2 -> (BN, not on the first) -> LeakyReLU(0.2)] per
    halving, then flatten -> linear + class-embedding projection (Miyato & Koyama 2018)."""

    def __init__(self, num_classes: int, image_size: int, channels: int, width: int):
        super().__init__()
        num_down, base = num_upsamplings(image_size)
        layers, in_features = [], channels
        for level in range(num_down):
            features = width * 2**level
            layers.append(nn.Conv2d(in_features, features, 4, stride=2, padding=1, bias=level == 0))
            if level > 0:
                layers.append(batch_norm(features))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_features = features
        self.encoder = nn.Sequential(*layers)
        flat = in_features * base * base
        self.linear = nn.Linear(flat, 1)
        self.embedding = nn.Embedding(num_classes, flat)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images).flatten(1)
        return self.linear(features)[:, 0] + (self.embedding(labels) * features).sum(dim=1)


class SmallCNN(nn.Module):
    """ganjax.models.SmallCNN with norm="batch", downsample="avg_pool", dropout 0: [B, C, H, W] -> logits [B, K]."""

    def __init__(self, num_classes: int, image_size: int, channels: int, width: int):
        super().__init__()
        layers, in_features = [], channels
        for level in range(3):
            features = width * 2**level
            layers += [nn.Conv2d(in_features, features, 3, padding=1, bias=False), batch_norm(features),
                       nn.ReLU(inplace=True)]
            if level < 2:
                layers.append(nn.AvgPool2d(2))
            in_features = features
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(in_features * (image_size // 4) ** 2, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(images).flatten(1))


def adam(parameters, learning_rate: float, b1: float, b2: float) -> torch.optim.Adam:
    # foreach: one multi-tensor kernel per update, the fastest non-fused CPU Adam.
    return torch.optim.Adam(parameters, lr=learning_rate, betas=(b1, b2), eps=1e-8, foreach=True)


class GANStep:
    """One hinge-loss GAN step as ganjax takes it: a D update on (real, G(z1)), then a G update
    on G(z2) with the same labels, then the generator EMA (decay warmed up as in ganjax).

    D's weights are frozen during the G update (requires_grad False), so only the input
    gradients flow through it, as in ganjax, whose G loss differentiates G's params only.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, noise_dim: int, learning_rate: float,
                 b1: float, b2: float, ema_decay: float, channels_last: bool = False,
                 share_generator_forward: bool = False):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = generator.to(memory_format=self.memory_format).train()
        self.discriminator = discriminator.to(memory_format=self.memory_format).train()
        self.noise_dim, self.ema_decay = noise_dim, ema_decay
        self.share_generator_forward = share_generator_forward
        self.generator_optimizer = adam(self.generator.parameters(), learning_rate, b1, b2)
        self.discriminator_optimizer = adam(self.discriminator.parameters(), learning_rate, b1, b2)
        self.generator_ema = [p.detach().clone() for p in self.generator.parameters()]
        self.step = 0

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        torch._foreach_lerp_(self.generator_ema, [p.detach() for p in self.generator.parameters()], 1.0 - decay)

    def __call__(self, real_images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        batch_size = labels.shape[0]
        if self.share_generator_forward:  # one G forward serves both updates (PyTorch's DCGAN example)
            shared_fakes = self.generator(torch.randn(batch_size, self.noise_dim), labels)
            fake_images = shared_fakes.detach()
        else:
            with torch.no_grad():
                fake_images = self.generator(torch.randn(batch_size, self.noise_dim), labels)
        real_logits = self.discriminator(real_images, labels)
        fake_logits = self.discriminator(fake_images, labels)
        d_loss = F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.discriminator_optimizer.step()

        self.discriminator.requires_grad_(False)
        if self.share_generator_forward:
            fake_images = shared_fakes
        else:
            fake_images = self.generator(torch.randn(batch_size, self.noise_dim), labels)
        g_loss = -self.discriminator(fake_images, labels).mean()
        self.generator_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.generator_optimizer.step()
        self.discriminator.requires_grad_(True)
        self._update_ema()
        self.step += 1
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class ClassifierStep:
    """One Adam step on the softmax cross-entropy, BatchNorm statistics updated from the batch."""

    def __init__(self, model: nn.Module, learning_rate: float, channels_last: bool = False):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format).train()
        self.optimizer = adam(self.model.parameters(), learning_rate, 0.9, 0.999)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=self.memory_format)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}


def layer_parameter_counts(module: nn.Module) -> list[int]:
    """Parameter count of each parameterised layer, in registration (= forward) order."""
    return [
        sum(p.numel() for p in layer.parameters(recurse=False))
        for layer in module.modules()
        if any(True for _ in layer.parameters(recurse=False))
    ]
