"""Moirai: masked encoder over multi-patch-size tokens with a mixture distribution head
(weight-compatible with Salesforce/moirai-1.x)."""

from tsfm.models.spec import FamilySpec, register

SPEC = register(FamilySpec(
    name="moirai",
    config="tsfm.models.moirai.config:MoiraiConfig",
    model="tsfm.models.moirai.model:MoiraiModel",
    module="tsfm.models.moirai.module:MoiraiModule",
    task="tsfm.models.moirai.task:MoiraiTask",
    forecaster="tsfm.models.moirai.forecast:MoiraiForecaster",
    converter="tsfm.models.moirai.convert",
    model_config="moirai_small",
    recognizes=lambda c: {"patch_sizes", "d_model", "num_layers", "distr_output"} <= set(c),
    looks_for="config.json with patch_sizes, d_model, num_layers and distr_output (uni2ts layout)",
))
