"""Gemini's request bodies as the face reads them: `generateContent`'s (contents, tools, tool config,
generation config), `countTokens`' and the embedding methods'. Field names come in Gemini's camelCase or in
snake case (the Python SDK sends `thinking_budget` and `parameters_json_schema` so): both are read; fields
the face does not know are ignored (`safetySettings`, `mediaResolution`, ...)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from switchyard.common.events.base import MAX_TOKENS
from switchyard.common.events.tasks import MAX_CHOICES, MAX_EMBEDDING_DIMENSIONS

MAX_EMBEDDINGS = 100  # Gemini's limit on one batchEmbedContents request
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")  # a function declaration's name


class _Gemini(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


_URL_SAFE = str.maketrans("-_", "+/")


class Blob(_Gemini):
    mime_type: str
    data: str = Field(min_length=1)

    @field_validator("data")
    @classmethod
    def _standard_base64(cls, data: str) -> str:
        """Gemini's JSON takes bytes in either base64 alphabet, padded or not (proto3's JSON mapping), and
        google-genai sends URL-safe base64 (`Part.from_bytes`); the pipeline's data URLs, and OpenAI's and
        Anthropic's sources, are standard base64, padded."""
        return data.translate(_URL_SAFE) + "=" * (-len(data) % 4)


class FileData(_Gemini):
    mime_type: str | None = None
    file_uri: str = Field(min_length=1)


class CallPart(_Gemini):
    id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    args: dict[str, Any] | None = None


class ResponseMedia(_Gemini):
    """A part of a function response (Gemini 3's multimodal function responses): an image or a PDF."""

    inline_data: Blob | None = None
    file_data: FileData | None = None


class ResponsePart(_Gemini):
    id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    response: dict[str, Any] | None = None
    parts: list[ResponseMedia] | None = None


class Part(_Gemini):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: CallPart | None = None
    function_response: ResponsePart | None = None
    thought: bool | None = Field(default=None, strict=True)
    thought_signature: str | None = None  # a Gemini model's, kept by the executor by call id: not read here
    executable_code: dict[str, Any] | None = None
    code_execution_result: dict[str, Any] | None = None


class Content(_Gemini):
    # "function" and "tool": roles some clients give function responses
    role: Literal["user", "model", "function", "tool"] | None = None
    parts: list[Part] = Field(default_factory=list)


class FunctionDeclaration(_Gemini):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _gemini_name(cls, v: str) -> str:
        """Gemini's rule, in its words (its reference allows colons too): a name it refuses was passed on
        and answered by whichever model the router picked."""
        if not FUNCTION_NAME.fullmatch(v):
            raise ValueError(
                "Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, "
                "A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64."
            )
        return v


class Tool(_Gemini):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    function_declarations: list[FunctionDeclaration] | None = None


class FunctionCallingConfig(_Gemini):
    mode: Literal["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"] | None = None
    # a subset of the declarations (at most 128): bounded, as a list of millions was read and echoed
    allowed_function_names: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=128
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ToolConfig(_Gemini):
    function_calling_config: FunctionCallingConfig | None = None


class ThinkingConfig(_Gemini):
    include_thoughts: bool | None = Field(default=None, strict=True)
    thinking_budget: int | None = Field(default=None, ge=-1, le=MAX_TOKENS, strict=True)
    thinking_level: Literal["THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"] | None = None

    @field_validator("thinking_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class GenerationConfig(_Gemini):
    stop_sequences: list[str] | None = Field(default=None, max_length=5)
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    candidate_count: int | None = Field(default=None, ge=1, le=MAX_CHOICES, strict=True)
    max_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    top_k: float | None = Field(default=None, ge=0, strict=True)  # accepted, not passed on
    seed: int | None = Field(default=None, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    response_logprobs: bool | None = Field(default=None, strict=True)
    logprobs: int | None = Field(default=None, strict=True)
    response_modalities: list[str] | None = None
    speech_config: dict[str, Any] | None = None
    image_config: dict[str, Any] | None = None
    thinking_config: ThinkingConfig | None = None


class GenerateContentRequest(_Gemini):
    contents: list[Content] = Field(min_length=1)
    system_instruction: Content | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    cached_content: str | None = None

    def config(self) -> GenerationConfig:
        return self.generation_config or GenerationConfig()

    def thoughts(self) -> bool:
        """Whether the answer shows the model's thoughts (`thinkingConfig.includeThoughts`)."""
        thinking = self.config().thinking_config
        return bool(thinking and thinking.include_thoughts)


class CountTokensRequest(_Gemini):
    """`countTokens`: `contents`, or a whole `generateContentRequest` (its system instruction and tools
    counted too)."""

    contents: list[Content] | None = None
    generate_content_request: GenerateContentRequest | None = None


class EmbedContentRequest(_Gemini):
    model: str | None = None  # in a batch: each request's own, which must be the path's
    content: Content
    task_type: str | None = None  # accepted: the pipeline's embedding models take no task type
    title: str | None = None
    # the task's bound, as the OpenAI face's `dimensions` (past it: a ValidationError building the task)
    output_dimensionality: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_DIMENSIONS, strict=True)


class BatchEmbedContentsRequest(_Gemini):
    requests: list[EmbedContentRequest] = Field(min_length=1, max_length=MAX_EMBEDDINGS)
