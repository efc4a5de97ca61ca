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
    assert len(report["cases"]) == 3
    for case in report["cases"]:
        assert case["image_tokens"] == 300 and len(case["greedy"]) == 6
