"""Chronos-2: group-attention encoder with covariates (weight-compatible with amazon/chronos-2)."""

from tsfm.models.spec import FamilySpec, register

SPEC = register(FamilySpec(
    name="chronos2",
    config="tsfm.models.chronos2.config:Chronos2Config",
    model="tsfm.models.chronos2.model:Chronos2Model",
    module="tsfm.models.chronos2.module:Chronos2Module",
    task="tsfm.models.chronos2.task:Chronos2Task",
    forecaster="tsfm.models.chronos2.forecast:Chronos2Forecaster",
    converter="tsfm.models.chronos2.convert",
    model_config="chronos2_mini",
    recognizes=lambda c: "chronos_config" in c and ("Chronos2Model" in (c.get("architectures") or [])
                                                    or c.get("chronos_pipeline_class") == "Chronos2Pipeline"),
    looks_for="config.json with chronos_config and a Chronos2Model architecture (amazon/chronos-2)",
    covariates=True,
))
