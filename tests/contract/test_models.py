"""The contract every registered model keeps, checked over `list_models()` (issue 10).

Every preset builds on the meta device with the `pretrained_cfg` it declares. The forward checks run on a small
configuration of each preset: batch 2; images of 32 px (at least the preset's `min_input_size`; for a preset with a
fixed input size, the smallest multiple of its minimum side from 32 px up, e.g. 42 px for 14 px patches) through
`img_size` where the preset takes it; sequences of 64 tokens over a vocabulary of 64 (`max_len`, `seq_len`,
`vocab_size`); 10 classes for image classifiers; operators (task "operator", input_size (channels, *grid)) map
fields on a grid of at most 32 points per axis to fields on the same grid; 64 points of [-1, 1]^D for coordinate
networks (task `coordinate-regression`, input_size (D,), output (B, 64, out_features), no classifier interface); image
reconstructions (task `image-reconstruction`, GON: the output has the input's shape, no classifier interface). The
size rule: a preset whose small configuration still has more than 30M parameters (counted on the meta device) is
built on the meta device only and its forward checks are skipped: a smaller preset of the same class runs them, or,
where none exists (Perceiver, Longformer), the paper's own tests build the class small.

Forward checks: the declared output shape and finite values in train and eval mode (a fresh model in eval mode on a
normal input included), the bad-input battery for images (float64 and float16 are cast; uint8, wrong channels, wrong
rank and, where the input size is fixed, a wrong size are `ValueError`s; batch 0 gives an empty output; the minimum
image size is exact), save/load round trip (after a training-mode forward, so that running statistics have moved),
and the classifier interface. The sequence models' bad inputs (token ids, empty sequences) are not part of this
file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import pytest
import torch
from torch import nn

import archzoo
from archzoo.registry import IMAGE_TASKS, accepted_kwargs, get_pretrained_cfg

MAX_PARAMS = 30e6            # the size rule: above it (in the small configuration) a preset is built on meta only
BATCH, SIDE, LENGTH, VOCAB, CLASSES = 2, 32, 64, 64, 10
TASKS = ("image-classification", "panoptic-segmentation", "sequence-classification", "language-modeling",
         "masked-language-modeling", "operator", "coordinate-regression", "image-reconstruction")
COORDINATES = "coordinate-regression"        # implicit representations: coordinates (B, N, D) -> values (B, N, C)


@dataclass
class Preset:
    """One preset, its small configuration and a pristine model of it (built once, handed out as copies)."""

    name: str

    @cached_property
    def declared(self) -> dict:
        return get_pretrained_cfg(self.name)

    @property
    def image(self) -> bool:
        return self.declared["task"] in IMAGE_TASKS

    @property
    def operator(self) -> bool:
        """A field-to-field operator (FNO): input (C, *grid), output (out_channels, *grid) on the same grid."""
        return self.declared["task"] == "operator"

    @cached_property
    def side(self) -> int:
        """The image side of the forward checks (see the module docstring)."""
        cfg = self.declared
        low = cfg.get("min_input_size", (0, 0, 1))[-1]
        return -(-SIDE // low) * low if cfg.get("fixed_input_size") else max(SIDE, low)

    @cached_property
    def overrides(self) -> dict:
        """The small configuration: the overrides of the size rule that the preset accepts."""
        small = dict(img_size=self.side, max_len=LENGTH, seq_len=LENGTH, vocab_size=VOCAB)
        if self.declared["task"] == "image-classification":
            small["num_classes"] = CLASSES
        return {k: v for k, v in small.items() if k in accepted_kwargs(self.name)}

    @cached_property
    def params(self) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in archzoo.create_model(self.name, **self.overrides).parameters())

    @cached_property
    def pristine(self) -> nn.Module:
        if self.params > MAX_PARAMS:
            pytest.skip(f"{self.params / 1e6:.0f}M parameters with {self.overrides} > {MAX_PARAMS / 1e6:.0f}M: "
                        "built on the meta device only (size rule)")
        torch.manual_seed(0)
        return archzoo.create_model(self.name, **self.overrides)

    def fresh(self) -> nn.Module:
        """A copy of the small model as built, never run before."""
        return copy.deepcopy(self.pristine)

    @cached_property
    def shared(self) -> nn.Module:
        """The small model in eval mode for the tests that need no fresh model and leave it in eval mode, with a
        classifier's head redrawn N(0, 1), so that a zero-initialised head (ViT, Mixer, BiT) cannot hide a
        difference in the features."""
        model = self.fresh().eval()
        if hasattr(model, "get_classifier"):
            for p in model.get_classifier().parameters():
                nn.init.normal_(p)
        return model

    def model(self) -> nn.Module:
        """A copy of `shared` for a test that changes it."""
        return copy.deepcopy(self.shared)

    def input(self, batch: int = BATCH) -> torch.Tensor:
        """A normal input of the small model's `pretrained_cfg["input_size"]` (images at `SIDE` where free)."""
        cfg, gen = self.pristine.pretrained_cfg, torch.Generator().manual_seed(1)
        if cfg["task"] == COORDINATES:                   # LENGTH points of [-1, 1]^D
            return torch.rand(batch, LENGTH, cfg["input_size"][0], generator=gen) * 2 - 1
        if self.operator:                                  # the declared grid, at most SIDE points per axis
            c, *grid = cfg["input_size"]
            return torch.randn(batch, c, *(min(n, SIDE) for n in grid), generator=gen)
        if not self.image:
            n = min(LENGTH, cfg["input_size"][0])
            return torch.randint(self.pristine.vocab_size, (batch, n), generator=gen)
        c, h, w = cfg["input_size"]
        if not cfg.get("fixed_input_size"):
            h = w = self.side
        return torch.randn(batch, c, h, w, generator=gen)

    def output_shape(self, model: nn.Module, x: torch.Tensor):
        """The output shape that the task and `num_classes` in `pretrained_cfg` declare for input `x`."""
        task = model.pretrained_cfg["task"]
        if task == COORDINATES:
            return (*x.shape[:-1], model.out_features)
        if task == "image-reconstruction":
            return tuple(x.shape)
        width = model.pretrained_cfg["num_classes"] or model.num_features
        if task == "operator":
            return (x.shape[0], model.out_channels, *x.shape[2:])
        if task == "panoptic-segmentation":
            b, _, h, w = x.shape
            return {"semantic": (b, width, h, w), "center": (b, 1, h, w), "offset": (b, 2, h, w)}
        per_token = task.endswith("language-modeling")
        return (*x.shape[:2], width) if per_token else (x.shape[0], width)


def run(model: nn.Module, x: torch.Tensor):
    """`model(x)` without gradients, with the random draws of a model that samples in eval mode (Reformer's LSH
    rotations) seeded, so that two calls on the same input are comparable."""
    torch.manual_seed(2)
    with torch.no_grad():
        return model(x)


def shape_of(y):
    return {k: tuple(v.shape) for k, v in y.items()} if isinstance(y, dict) else tuple(y.shape)


def tensors(y) -> list[torch.Tensor]:
    return list(y.values()) if isinstance(y, dict) else [y]


@pytest.fixture(scope="module", params=archzoo.list_models())
def preset(request) -> Preset:
    """Module scope, so pytest runs every test of one preset before building the next one."""
    return Preset(request.param)


@pytest.fixture
def image_preset(preset) -> Preset:
    if not preset.image:
        pytest.skip("not an image model")
    return preset


@pytest.fixture
def classifier(preset) -> Preset:
    if preset.declared["task"] in ("panoptic-segmentation", "operator", COORDINATES, "image-reconstruction"):
        pytest.skip("not a classifier")
    return preset


# ----------------------------------------------------------------------------- every preset, meta device


def test_builds_on_the_meta_device_as_its_pretrained_cfg_declares(preset):
    cfg = preset.declared
    assert cfg["task"] in TASKS
    if preset.image:
        assert len(cfg["input_size"]) == 3 and len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]
    elif preset.operator:
        assert len(cfg["input_size"]) in (2, 3)                     # (channels, *grid), 1-D or 2-D
    else:
        assert len(cfg["input_size"]) == 1
    with torch.device("meta"):
        model = archzoo.create_model(preset.name)
    built = model.pretrained_cfg
    assert (built["input_size"], built["num_classes"], built["model"]) == (cfg["input_size"], cfg["num_classes"],
                                                                            preset.name)
    assert getattr(model, "num_classes", cfg["num_classes"]) == cfg["num_classes"]


def test_accepted_keywords_are_known_and_others_are_refused(preset):
    accepted = accepted_kwargs(preset.name)
    assert accepted is not None, "the factory's **kwargs lead to no inspectable signature"
    with pytest.raises(ValueError, match=f"{preset.name} does not take 'bogus_option'; it takes .*{accepted[0]}"):
        archzoo.create_model(preset.name, bogus_option=1)


# ----------------------------------------------------------------------------- forward, small configuration


def test_forward_has_the_declared_shape_and_is_finite_in_eval_and_train_mode(preset):
    model, x = preset.fresh(), preset.input()
    for mode in ("eval", "train"):                       # eval first: a fresh model, BN without statistics
        y = run(getattr(model, mode)(), x)
        assert shape_of(y) == preset.output_shape(model, x), mode
        assert all(torch.isfinite(t).all() for t in tensors(y)), f"non-finite output in {mode} mode"


def test_save_and_load_round_trip_gives_identical_state_and_outputs(preset, tmp_path):
    model, x = preset.shared, preset.input()
    run(model.train(), x)                                # move running statistics away from their initial values
    model.eval().save_pretrained(tmp_path)
    loaded = archzoo.from_pretrained(tmp_path).eval()
    assert loaded.pretrained_cfg == model.pretrained_cfg
    state, restored = model.state_dict(), loaded.state_dict()
    assert list(state) == list(restored) and all(torch.equal(state[k], restored[k]) for k in state)
    for a, b in zip(tensors(run(model, x)), tensors(run(loaded, x)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- images: the bad-input battery


def test_float64_and_float16_images_are_cast_to_the_parameters_dtype(image_preset):
    model, x = image_preset.shared, image_preset.input()
    for a, b in zip(tensors(run(model, x)), tensors(run(model, x.double())), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)          # float64 -> float32 of a float32 x is exact
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors(run(model, x.half())))


def test_integer_images_wrong_channels_and_wrong_rank_are_value_errors(image_preset):
    model, x = image_preset.shared, image_preset.input()
    with pytest.raises(ValueError, match="expected a floating-point tensor.*got torch.uint8"):
        run(model, (x.clamp(0, 1) * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="expected shape"):
        run(model, torch.cat([x, x[:, :1]], dim=1))
    with pytest.raises(ValueError, match="expected shape"):
        run(model, x[0])
    if model.pretrained_cfg.get("fixed_input_size"):
        with pytest.raises(ValueError, match="expected shape"):
            run(model, torch.cat([x, x], dim=-1))


def test_an_empty_batch_gives_an_empty_output(image_preset):
    model, x = image_preset.shared, image_preset.input(batch=0)
    assert shape_of(run(model, x)) == image_preset.output_shape(model, x)


def test_the_minimum_image_size_runs_and_one_pixel_less_is_a_value_error(image_preset):
    model = image_preset.shared
    cfg = model.pretrained_cfg
    if "min_input_size" not in cfg:
        pytest.skip("no minimum image size")
    c, side, _ = cfg["min_input_size"]
    if cfg.get("fixed_input_size"):                      # the size is a construction argument
        with pytest.raises(ValueError, match="img_size"):
            archzoo.create_model(image_preset.name, **{**image_preset.overrides, "img_size": side - 1})
        model = archzoo.create_model(image_preset.name, **{**image_preset.overrides, "img_size": side}).eval()
    else:
        small = side - 1
        with pytest.raises(ValueError, match=f"of (at least|between) {side}x{side}.* pixels, got {small}x{small}"):
            run(model, torch.randn(BATCH, c, small, small))
    assert all(torch.isfinite(t).all() for t in tensors(run(model, torch.randn(BATCH, c, side, side))))


# ----------------------------------------------------------------------------- the classifier interface


def test_forward_is_forward_head_of_forward_features_and_the_head_comes_last(classifier):
    model, x = classifier.shared, classifier.input()
    logits = run(model, x)
    torch.manual_seed(2)                                 # the draws of `run`
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), logits, rtol=0, atol=0)
        head = model.get_classifier()
        assert isinstance(head, nn.Module)
        torch.testing.assert_close(head(model.forward_head(features, pre_logits=True)), logits, rtol=0, atol=0)
    assert logits.shape[-1] == model.num_classes == model.pretrained_cfg["num_classes"]


def test_reset_classifier_changes_the_output_width(classifier):
    model, x = classifier.model(), classifier.input()
    model.reset_classifier(7)
    assert model.num_classes == model.pretrained_cfg["num_classes"] == 7
    assert run(model, x).shape[-1] == run(model.get_classifier(), torch.zeros(1, model.num_features)).shape[-1] == 7
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity) and run(model, x).shape[-1] == model.num_features


# ----------------------------------------------------------------------------- registry conventions


def test_pretrained_true_says_there_are_no_weights_and_how_to_load_your_own():
    with pytest.raises(ValueError, match=r"no pretrained weights.*archzoo.from_pretrained\(dir\)"):
        archzoo.create_model("resnet20", pretrained=True)
    assert archzoo.create_model("resnet20", pretrained=False).num_classes == 10
    assert archzoo.list_models(pretrained=True) == archzoo.list_models("resnet*", pretrained=True) == []


def test_an_unknown_keyword_is_a_value_error_listing_the_accepted_ones_and_also_a_type_error():
    with pytest.raises(ValueError, match=r"resnet18 does not take 'img_size'; it takes .*in_chans.*num_classes"):
        archzoo.create_model("resnet18", img_size=32)
    with pytest.raises(TypeError):                      # what Python raises for an unexpected keyword
        archzoo.create_model("resnet18", img_size=32)


def test_overrides_update_the_pretrained_cfg():
    with torch.device("meta"):
        model = archzoo.create_model("vit_ti16", img_size=32, num_classes=10, in_chans=1)
        lm = archzoo.create_model("reformer_tiny", axial_shape=(8, 16))
    cfg = model.pretrained_cfg
    assert (cfg["input_size"], cfg["num_classes"], cfg["kwargs"]) == ((1, 32, 32), 10, dict(img_size=32,
                                                                                            num_classes=10, in_chans=1))
    assert (cfg["mean"], cfg["task"]) == (get_pretrained_cfg("vit_ti16")["mean"], "image-classification")
    assert lm.pretrained_cfg["input_size"] == (128,)


def test_a_pretrained_cfg_declared_in_part_is_an_error():
    with pytest.raises(ValueError, match=r"lacks \['mean', 'std'\]"):
        archzoo.register_model("_never", paper="resnet", input_size=(3, 8, 8), num_classes=2,
                               task="image-classification")
    with pytest.raises(ValueError, match=r"unknown keys \['crop_pct'\]"):
        archzoo.register_model("_never", paper="resnet", input_size=(8,), num_classes=2, task="language-modeling",
                               crop_pct=0.9)
