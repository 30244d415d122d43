"""The baseline of the paper's comparison (Sec. 4.1): an autoencoder with the GON's decoder and an encoder of its
own. The encoder is a map of the flattened image, linear (C H W -> latent, `encoder_features=0`) or an MLP
(C H W -> encoder_features -> latent, ReLU); the decoder, the loss and
the latent size are those of `ImplicitGON`, so the two differ only in how the latent is obtained: a learned
encoder E(x) here, the gradient at the origin there."""

from __future__ import annotations

from torch import Tensor, nn

from ...core.checks import check_shape
from .models import ImplicitDecoding


class ImplicitAutoencoder(ImplicitDecoding):
    """z = E(x) for images of `img_size` (the encoder's input is fixed), decoded by the implicit SIREN decoder;
    `loss(x)` is L(x, F(E(x))) averaged over the batch (Eq. 2, as the GON's)."""

    def __init__(self, img_size: int = 28, num_latent: int = 32, hidden_features: int = 64, hidden_layers: int = 2,
                 in_chans: int = 1, encoder_features: int = 256, omega_0: float = 30.0):
        super().__init__(num_latent, hidden_features, hidden_layers, in_chans, omega_0)
        self.img_size = img_size
        pixels = in_chans * img_size**2
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, num_latent)) if not encoder_features else \
            nn.Sequential(nn.Flatten(), nn.Linear(pixels, encoder_features), nn.ReLU(),
                          nn.Linear(encoder_features, num_latent))

    def latent(self, x: Tensor) -> Tensor:                               # (B, C, H, W) -> (B, latent)
        x = self.check(x)
        check_shape(x, "B C H W", H=self.img_size, W=self.img_size)
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:                              # (B, C, H, W) -> (B, C, H, W)
        return self.decode(self.latent(x), x.shape[-2:])

    def loss(self, x: Tensor) -> Tensor:
        x = self.check(x)
        return self.reconstruction_loss(x, self.latent(x)).mean()
