"""The tiny reader (tools/reader): its training data is what the pipeline sends, and vLLM computes
what its torch training model computes.

The engine test exports a tiny random-init reader and runs tools/reader/check_vllm_parity.py's
comparison: same prompt token ids, same greedy tokens, log-probs within 2e-3 (float32), and an image
that visibly matters. The other test needs no engine."""
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/


def test_training_sequences_are_the_chat_encoding_of_prompt_and_answer(tmp_path):
    from mistral_common.protocol.instruct.messages import AssistantMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest, InstructRequest

    from pipeline.tasks.prompts import build_messages
    from tools.reader import data, pagegen

    assert pagegen.make_page(3).pdf == pagegen.make_page(3).pdf  # seeded: same page, same bytes
    tok = data.tokenizer(str(data.write_tekken(tmp_path / "tekken.json")))
    assert tok.instruct_tokenizer.tokenizer.n_words == data.VOCAB_SIZE
    kinds = set()
    for seed, kind in ((11, "invoice"), (12, "report"), (13, "chart")):
        page = pagegen.make_page(seed, kind=kind)
        png = data.render(page)
        for task, instruction, answer in data.requests_for(page, random.Random(seed)):
            kinds.add(task)
            tokens, n_prompt, image = data.encode(tok, png, instruction, answer)
            request = ChatCompletionRequest.from_openai(build_messages(png, instruction, None))
            reference = tok.instruct_tokenizer.encode_instruct(
                InstructRequest(messages=[*request.messages, AssistantMessage(content=answer)]))
            assert tokens == reference.tokens
            assert tokens[n_prompt - 1] == 4  # [/INST]: the loss starts right after it
            assert image.shape[1:] == ((560, 420) if page.shape == "portrait" else (420, 560))
    assert kinds == {"docvqa", "chartqa", "fields"}


@pytest.mark.engine
def test_vllm_computes_what_the_torch_model_computes(tmp_path):
    from tools.reader.check_vllm_parity import compare, random_model

    folder = random_model(tmp_path / "tiny-reader")
    assert len(list(folder.glob("consolidated-*-of-*.safetensors"))) > 1  # the sharded load path
    report = compare(folder, tol=2e-3, steps=6)
    assert report["passes"], report["failures"]
    assert len(report["cases"]) == 3
    for case in report["cases"]:
        assert case["image_tokens"] == 300 and len(case["greedy"]) == 6


def test_reading_targets_put_each_character_of_a_page_in_the_cell_it_is_drawn_in():
    """The per-cell reading loss's targets (tools/reader/reading.py), checked against the page's
    pixels: every cell that names a character has ink, most ink lies in cells that name something
    (not all: table rules, and lines that straddle two rows of cells), and the cells read in
    the [IMG] tokens' order spell the page's lines."""
    import io

    import numpy as np
    from PIL import Image

    from tools.reader import data, pagegen, reading

    page = pagegen.make_page(0, "invoice")
    image = np.asarray(Image.open(io.BytesIO(data.render(page))).convert("L"))
    h, w = image.shape
    targets = reading.cell_targets(page.chars, w, h)
    assert targets.shape == ((h // 28) * (w // 28), reading.SLOTS)
    ink = (image < 128).reshape(h // 28, 28, w // 28, 28).sum(axis=(1, 3)).reshape(-1)
    named = targets[:, 0] != reading.NONE
    assert (ink[named] > 0).all()  # no character named where nothing is drawn
    assert ink[named].sum() > 0.7 * ink.sum()  # 0.78 on this page
    read = "".join(reading.CHARS[t - 1] for row in targets for t in row if 0 < t < reading.OTHER)
    assert f"InvoiceNo:{page.fields['invoice_number']}" in read and f"Totaldue:${page.fields['total']:,.2f}" in read


def test_value_tokens_of_an_answer_weigh_more_than_keys_and_syntax(tmp_path):
    from tools.reader import data

    inner = data.tokenizer(str(data.write_tekken(tmp_path / "tekken.json"))).instruct_tokenizer.tokenizer
    answer = '{"answer":"GBP 13,245.50","value":12.5,"unit":null,"answers":["Q3"]}'
    tokens = inner.encode(answer, bos=False, eos=False) + [inner.eos_id]
    weights = data.value_weights(inner, tokens, answer)
    marked = "".join(inner.id_to_byte_piece(t).decode() for t, wt in zip(tokens[:-1], weights) if wt > 1)
    assert marked == "GBP 13,245.5012.5Q3" and weights[-1] == 1.0
