"""Typed request and response bodies of the forecasting endpoint (pydantic; FastAPI builds the
OpenAPI schema from them).

Family options are declared here once, with their types and bounds; which of them a served model
takes comes from its forecaster's ``forecast_options`` (checked per request in
:mod:`tsfm.serve.engine`), so no family's limits are written here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tsfm.levels import DEFAULT_QUANTILES

Value = float | None  # JSON null (or NaN) = missing
Level = Annotated[float, Field(gt=0.0, lt=1.0)]

# Options a client may set, by name (a family takes the subset its forecaster declares). `device`
# (a forecaster option of Moirai) is the server's choice and is not settable over HTTP.
OPTION_FIELDS = (
    "num_samples", "seed", "batch_size", "context_length", "patch_size", "freq", "cross_learning",
    "max_output_patches", "unrolled_quantiles", "temperature", "top_k", "top_p", "dtype",
)


class SeriesInput(BaseModel):
    """One series to forecast."""

    model_config = ConfigDict(extra="forbid", strict=True)

    target: list[Value] | list[list[Value]] = Field(
        description="The context, oldest first: a list of numbers (univariate) or a list of equally long "
        "lists, one per variate (multivariate, [V][T]). null (or NaN) marks a missing value; at least one "
        "value must be observed.",
        min_length=1,
    )
    past_covariates: dict[str, list[Value]] = Field(
        default_factory=dict,
        description="Named covariates over the context, each as long as the target (families that take "
        "covariates only; see GET /v1/models).",
    )
    future_covariates: dict[str, list[Value]] = Field(
        default_factory=dict,
        description="Known-future covariates, each prediction_length long; each also needs its past values in "
        "past_covariates. Every input of a request must name the same known-future covariates.",
    )


class ForecastParameters(BaseModel):
    """The horizon, the quantile levels and the family options of a request (shared by its inputs)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prediction_length: int = Field(24, ge=1, description="Steps to forecast (at most the server's max_prediction_length).")
    quantile_levels: list[Level] = Field(
        default_factory=lambda: list(DEFAULT_QUANTILES), min_length=1, max_length=99,
        description="Quantile levels in (0, 1) to return.",
    )
    # family options: a request may set only those its model's family takes (GET /v1/models lists them)
    num_samples: int | None = Field(None, ge=1, le=10_000, description="Sample paths per series (sampling families).")
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1,
        description="Random seed (sampling families). A seeded request is computed on its own, never merged with "
        "others, so its answer is reproducible.",
    )
    batch_size: int | None = Field(None, ge=1, le=4_096, description="The family's internal batch size.")
    context_length: int | None = Field(None, ge=1, le=1_000_000, description="Use at most this many last context steps.")
    patch_size: int | Literal["auto"] | None = Field(None, description='Moirai patch size, or "auto" (per-series backtest).')
    freq: str | None = Field(
        None, pattern=r"^[0-9]*[A-Za-z][A-Za-z0-9-]{0,15}$", description="Pandas frequency string (Moirai patch sizes).",
    )
    cross_learning: bool | None = Field(
        None, description="Chronos-2: forecast the request's series jointly. Such a request is never merged with others.",
    )
    max_output_patches: int | None = Field(None, ge=1, le=1_024, description="Chronos-2 patches per forward pass.")
    unrolled_quantiles: list[Level] | None = Field(
        None, min_length=1, max_length=99, description="Chronos-2 levels unrolled beyond one pass (levels of the model).",
    )
    temperature: float | None = Field(None, gt=0.0, le=1_000.0, description="Chronos sampling temperature.")
    top_k: int | None = Field(None, ge=0, le=1_000_000, description="Chronos top-k sampling (0: off).")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Chronos nucleus sampling.")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(None, description="Compute dtype (autocast).")


class ForecastRequest(BaseModel):
    """``POST /v1/forecast``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, max_length=200, description="Served model's name (optional when one is served).")
    inputs: list[SeriesInput] = Field(min_length=1, description="The series to forecast (at most the server's max_series).")
    parameters: ForecastParameters = Field(default_factory=ForecastParameters)


class SeriesForecast(BaseModel):
    """The forecast of one input. Arrays are [H] for a univariate input and [V][H] for a multivariate one;
    null where the model produced no finite value."""

    mean: list[float | None] | list[list[float | None]] = Field(
        description="Point forecast. None of the served families returns a predictive mean through "
        "predict_quantiles, so this is the median (the 0.5 quantile, computed even when not requested); "
        "mean_kind says so."
    )
    quantiles: dict[str, list[float | None] | list[list[float | None]]] = Field(
        description='One array per requested level, keyed by the level as given (e.g. "0.1").'
    )


class BatchInfo(BaseModel):
    requests: int = Field(description="Requests merged into the model call that answered this one.")
    series: int = Field(description="Series in that call.")
    inference_ms: float = Field(description="Time of that call.")


class ForecastResponse(BaseModel):
    model: str
    family: str
    prediction_length: int
    quantile_levels: list[float]
    mean_kind: Literal["median", "mean"] = Field(description="What `mean` holds: the median for every family today.")
    predictions: list[SeriesForecast] = Field(description="One per input, in order.")
    latency_ms: float = Field(description="Time from the request's arrival to this answer, in milliseconds.")
    batch: BatchInfo


class ModelInfo(BaseModel):
    name: str
    family: str
    source: str | None = Field(description="Local checkpoint the model was loaded from.")
    uri: str | None = Field(description="What the server was asked to load (a path, a catalogue name or models:/NAME@ALIAS).")
    options: list[str] = Field(description="Family options a request may set in `parameters`.")
    covariates: bool = Field(description="Whether the family uses past / known-future covariates.")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: a problem is listed; the server still answers.")
    models: dict[str, str] = Field(description="Served model name -> family.")
    family: str | None = Field(description="The family when a single model is served.")
    requests_served: int = Field(description="Forecast requests answered with 200.")
    requests_rejected: int = Field(description="Forecast requests answered with an error.")
    problems: list[str]
    uptime_s: float


class ErrorBody(BaseModel):
    detail: str | list[dict] = Field(description="Why: a sentence, or pydantic's list of field errors (loc names the field).")
