"""Content parts on the chat face, as the Vercel AI SDK (`@ai-sdk/openai` 3.0, `openai.chat(...)`) sends
them: a PDF file part becomes `{"type": "file", "file": {"filename", "file_data"}}` (served: see
test_documents.py), an audio file part `{"type": "input_audio", ...}`. No model behind Switchyard is sent
audio, so it is refused rather than dropped while the model answers without it, with the Responses and
Anthropic faces' code for a part or block not served (`invalid_request`)."""

from __future__ import annotations

import orjson
import pytest

from switchyard.gateway import responses
from switchyard.gateway.completions import parse_request
from switchyard.gateway.errors import InvalidRequest

pytestmark = pytest.mark.unit

PDF = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRi4uLi4=", "format": "wav"}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}


def body(*messages: dict[str, object]) -> bytes:
    return orjson.dumps({"model": "auto", "messages": list(messages)})


@pytest.mark.parametrize(("part", "kind"), [(AUDIO, "input_audio"), ({"type": "video"}, "video")])
def test_parts_no_model_here_reads_are_refused_not_dropped(part: dict[str, object], kind: str) -> None:
    sent = body({"role": "user", "content": [{"type": "text", "text": "Summarise"}, part]})
    with pytest.raises(InvalidRequest) as err:
        parse_request(sent, max_prompt_chars=1000)
    assert (err.value.status, err.value.code, err.value.param) == (
        400,
        "invalid_request",
        "messages.0.content.1",
    )
    assert f"'{kind}'" in err.value.message and "text, image_url" in err.value.message


def test_the_part_is_named_where_it_is() -> None:
    sent = body({"role": "system", "content": "Be brief."}, {"role": "user", "content": [AUDIO]})
    with pytest.raises(InvalidRequest) as err:
        parse_request(sent, max_prompt_chars=1000)
    assert err.value.param == "messages.1.content.0"


def test_text_images_pdfs_and_an_assistants_refusal_pass() -> None:
    parsed = parse_request(
        body(
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE, PDF]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot say."}]},
            {"role": "user", "content": [{"type": "text", "text": "Try again."}]},
        ),
        max_prompt_chars=1000,
    )
    assert [m.role for m in parsed.messages] == ["user", "assistant", "user"]
    assert parsed.messages[1].content == [{"type": "text", "text": "I cannot say."}]
    assert parsed.messages[0].content[2] == PDF  # type: ignore[index]


@pytest.mark.parametrize(
    ("part", "field"),
    [
        ({"type": "input_text", "text": None}, "text"),
        ({"type": "output_text"}, "text"),
        ({"type": "input_image", "image_url": 1}, "image_url"),
        ({"type": "refusal", "refusal": []}, "refusal"),
    ],
)
def test_a_responses_part_of_a_served_type_with_a_field_of_another_type_names_the_field(
    part: dict[str, object], field: str
) -> None:
    """The Responses face's parts: a served part whose field is not a string is refused naming that field
    (`invalid_type`), not as a part of a type not served, which the message listed as served."""
    sent = {
        "model": "auto",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}, part]}],
    }
    with pytest.raises(InvalidRequest) as err:
        responses.parse_request(orjson.dumps(sent), max_prompt_chars=1000)
    assert (err.value.code, err.value.param) == ("invalid_type", f"input.0.content.1.{field}")
    assert "not supported" not in err.value.message
