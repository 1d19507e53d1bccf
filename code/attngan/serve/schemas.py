"""Request and response bodies of the API (pydantic models, shown in the OpenAPI docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

MAX_SEED = 2**32 - 1  # --manualSeed also seeds NumPy, which takes seeds below 2**32


class GenerateRequest(BaseModel):
    """Images for one or several captions. Limits (captions, images, characters) are the
    server's, listed by ``/v1/info``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "captions": ["a small red circle at the top left of a blue background"],
                    "n": 2,
                    "seed": 100,
                    "attention": True,
                }
            ]
        },
    )

    captions: list[StrictStr] = Field(min_length=1, description="the captions to draw")
    n: StrictInt = Field(1, ge=1, description="images per caption")
    seed: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description=(
            "the noise: the same captions, n and seed give the images of `attngan-sample --caption ... --n N "
            "--manualSeed SEED`; none: a random seed, returned in the response"
        ),
    )
    stages: list[StrictInt] | None = Field(
        None,
        min_length=1,
        description=("the image sizes to return, e.g. [64, 256], of those the generator draws; none: all"),
    )
    attention: StrictBool = Field(False, description="also each word's attention map over each attention stage's image")
    format: Literal["url", "base64"] = Field(
        "url", description=("url: PNGs kept by the server for a while under /images/; base64: the PNG files inline")
    )


class ImageOut(BaseModel):
    width: int
    height: int
    url: str | None = Field(None, description="the PNG, with format 'url'")
    base64: str | None = Field(None, description="the PNG file, base64-encoded, with format 'base64'")


class WordMap(BaseModel):
    word: str
    image: ImageOut = Field(description="the word's attention map, upsampled and overlaid on the stage's image")


class StageAttention(BaseModel):
    size: int = Field(description="the size of the image the maps are drawn over")
    words: list[WordMap]


class Sample(BaseModel):
    stages: list[ImageOut] = Field(description="the requested stages' images, smallest first")
    attention: list[StageAttention] | None = Field(None, description="with attention: per attention stage")
    attention_figure: ImageOut | None = Field(
        None,
        description=(
            "with attention: every attention stage's image and word maps, labelled, as attngan-sample's *_attention.png"
        ),
    )


class CaptionOut(BaseModel):
    caption: str
    tokens: list[str] = Field(description="the caption's words as the tokenizer reads them (lowercase ASCII)")
    words: list[str] = Field(description="the tokens kept: those in the vocabulary, which the generator reads")
    dropped: list[str] = Field(description="the tokens dropped as out of the vocabulary")
    images: list[Sample]


class BatchOut(BaseModel):
    rows: int = Field(description="images drawn in the generator call that drew this request's")
    requests: int = Field(description="requests in that call")


class GenerateResponse(BaseModel):
    seed: int
    captions: list[CaptionOut]
    batch: BatchOut
    elapsed: float = Field(description="seconds from arrival to response")


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, naming the field and what was expected")
    field: str | None = Field(None, description="the request field at fault, e.g. captions[1]")


class BirdRequest(BaseModel):
    """The original's request: ``{"caption": "..."}`` (``seed`` is ours, optional)."""

    caption: StrictStr
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED)


class Bird(BaseModel):
    """The original's fields: small/medium/large are the 64/128/256 images (null where the
    generator has no such stage), map1/map2 the attention figures of stages 2 and 3."""

    small: str | None
    medium: str | None
    large: str | None
    map1: str | None
    map2: str | None
    caption: str
    elapsed: float
    seed: int


class BirdResponse(BaseModel):
    bird: Bird


class BirdImages(BaseModel):
    small: str | None
    medium: str | None
    large: str | None


class Birds(BaseModel):
    """Six samples of one caption, as the original's /birds."""

    bird1: BirdImages
    bird2: BirdImages
    bird3: BirdImages
    bird4: BirdImages
    bird5: BirdImages
    bird6: BirdImages
    caption: str
    elapsed: float
    seed: int


class BirdsResponse(BaseModel):
    bird: Birds
