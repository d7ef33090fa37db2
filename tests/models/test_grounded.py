"""The grounded captioner: warm start, what it stores, retrieval, evidence, and real files.

Every model here is tiny and real: a 2-layer BERT and its WordPiece vocabulary saved by the
test stand in for all-MiniLM-L6-v2 (the packaged weights are tested in the default-model
tests), so the same loading code runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertModel

from models.captioner.answers import NO_ANSWER, Answer
from models.captioner.configuration_grounded import GroundedCaptionerConfig
from models.captioner.grounded_pipeline import GroundedPipeline
from models.captioner.grounding import (
    DESCRIBE,
    READ_AT_MOST,
    Piece,
    PieceCache,
    VideoContext,
    evidence_targets,
    pack,
    read_evidence,
    select_pieces,
    stretch_tags,
)
from models.captioner.modeling_grounded import (
    GroundedCaptionerModel,
    TextEncoder,
    build_grounded,
    warm_start,
)
from models.perception.result import Perception, SpeechSegment, Tag, TextItem, TimedTags, Transcript
from tests.conftest import GROUNDED_CLASSES, tiny_grounded_config

CLASSES = GROUNDED_CLASSES


def tiny_config(bert: Path, classes: int = len(CLASSES)) -> GroundedCaptionerConfig:
    return tiny_grounded_config(bert, classes)


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir: Path) -> GroundedCaptionerModel:
    torch.manual_seed(0)
    return build_grounded(tiny_config(tiny_bert_dir), class_names=CLASSES).eval()


def context(duration: float = 8.0, has_audio: bool = True) -> VideoContext:
    times = np.arange(duration) + 0.5
    classes = np.tile(np.array([0, 2, 1, 3, 4]), (len(times), 1))
    scores = np.tile(np.array([0.6, 0.2, 0.05, 0.02, 0.01], dtype=np.float32), (len(times), 1))
    pieces = [
        Piece(
            "speech",
            1.0,
            3.0,
            "said in english: anna bought three apples.",
            "anna bought three apples.",
        ),
        Piece("text", 0.0, 4.0, "on screen: beware", "beware"),
        *stretch_tags(times, classes, scores, duration, [(c, ()) for c in CLASSES]),
    ]
    return VideoContext(
        duration, has_audio, times, classes, scores,
        np.zeros((len(times), 16, 101), np.float16), np.full(len(times), has_audio), pieces,
    )  # fmt: skip


def test_warm_start_copies_bert_layers_exactly(tiny_bert_dir: Path) -> None:
    # A BART encoder layer warm-started from BERT layer i computes what that BERT layer
    # computes (same post-LN layout, GELU, scaling): Rothe et al.'s mapping, checked.
    bert = BertModel.from_pretrained(tiny_bert_dir, add_pooling_layer=False).eval()
    model = GroundedCaptionerModel(tiny_config(tiny_bert_dir)).eval()
    warm_start(model, bert)
    x = torch.randn(2, 5, 32)
    mask = torch.zeros(2, 1, 1, 5)
    top = bert.config.num_hidden_layers - 1  # the joint encoder's only layer takes the top one
    theirs = bert.encoder.layer[top](x, attention_mask=mask)
    theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    ours = model.encoder_layers[0](x, mask)
    ours = ours[0] if isinstance(ours, tuple) else ours
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    positions = (
        bert.embeddings.position_embeddings.weight + bert.embeddings.token_type_embeddings.weight[0]
    )
    torch.testing.assert_close(model.decoder_positions.weight, positions[:40])


def test_checkpoint_holds_no_text_encoder_and_round_trips(
    tiny_model: GroundedCaptionerModel, tmp_path: Path
) -> None:
    keys = tiny_model.state_dict().keys()
    assert not [k for k in keys if "word_embeddings" in k and not k.startswith("videobert")]
    assert "tag_table" in keys
    tiny_model.save_pretrained(tmp_path)
    again = GroundedCaptionerModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    cache = PieceCache(tiny_model.text_encoder)
    packed = pack(
        [context()],
        ["what animal is shown?"],
        cache,
        max_frames=8,
        max_question_tokens=16,
        max_context_tokens=48,
    )
    # The log-mel front end is computed, not saved: a loaded model must have it right.
    torch.testing.assert_close(again.audio_backbone.mel.bank, tiny_model.audio_backbone.mel.bank)
    sound = torch.randn(3, 16000)
    torch.testing.assert_close(
        again.audio_backbone.mel(sound), tiny_model.audio_backbone.mel(sound)
    )
    first, second = tiny_model.encode(**packed.inputs), again.encode(**packed.inputs)
    assert torch.isfinite(first.states).all()
    torch.testing.assert_close(first.states, second.states)
    a, b = tiny_model.greedy(first)[0], again.greedy(second)[0]
    assert torch.equal(a, b)
    torch.testing.assert_close(again.tag_table, tiny_model.tag_table)


def test_training_step_reaches_only_trainable_parts(tiny_bert_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_grounded(tiny_config(tiny_bert_dir), class_names=CLASSES).train()
    cache = PieceCache(model.text_encoder)
    packed = pack(
        [context(), context(has_audio=False)],
        ["what did anna buy?", "what is shown?"],
        cache,
        max_frames=8,
        max_question_tokens=16,
        max_context_tokens=48,
    )
    tok = model.text_encoder.tokenizer
    labels = tok(["three apples", "a dog"], padding=True, return_tensors="pt")["input_ids"][:, 1:]
    labels = labels.masked_fill(labels.eq(0), -100)
    evidence = evidence_targets(
        packed,
        [
            [{"kind": "speech", "start": 1.0, "end": 3.0}],
            [{"kind": "visual", "start": 0.0, "end": 5.0}],
        ],
    )
    assert evidence.sum() >= 2
    out = model(
        labels=labels,
        evidence=evidence,
        audio_classes=torch.zeros(2, 8, dtype=torch.long),
        **packed.inputs,
    )
    assert out.loss is not None and torch.isfinite(out.loss)
    assert set(out.losses or {}) == {"text", "evidence", "audio"}
    out.loss.backward()
    assert model.decoder_layers[0].encoder_attn.q_proj.weight.grad is not None
    assert model.videobert.fusion.visual_gate.weight.grad is not None  # type: ignore[union-attr]
    assert all(p.grad is None for p in model.text_encoder.model.parameters())


def test_copying_lets_the_decoder_write_a_word_it_only_reads(
    tiny_model: GroundedCaptionerModel,
) -> None:
    # "apples" is in the transcript. With the output layer told never to write it, the
    # pointer still gives it probability; without copying it has none left.
    cache = PieceCache(tiny_model.text_encoder)
    packed = pack(
        [context()],
        ["what did anna buy?"],
        cache,
        max_frames=8,
        max_question_tokens=16,
        max_context_tokens=48,
    )
    word = tiny_model.text_encoder.tokenizer.convert_tokens_to_ids("apples")
    encoded = tiny_model.encode(**packed.inputs)
    start = torch.tensor([[2]])
    saved = tiny_model.final_logits_bias.clone()
    try:
        tiny_model.final_logits_bias[word] = -1e4
        _, with_copy = tiny_model.decode(encoded, start)
        tiny_model.config.copy = False
        _, without = tiny_model.decode(encoded, start)
    finally:
        tiny_model.config.copy = True
        tiny_model.final_logits_bias.copy_(saved)
    assert with_copy[0, -1, word].exp() > 1e-4
    assert without[0, -1, word].exp() < 1e-8


def test_retrieval_keeps_what_the_question_is_about(tiny_bert_dir: Path) -> None:
    cache = PieceCache(TextEncoder(str(tiny_bert_dir)))
    pieces = [Piece("audio", 0, 60, "sound: no one speaks", "no speech")]
    pieces += [Piece("visual", t, t + 5, "seen: zebra", "zebra") for t in range(0, 60, 5)]
    pieces.insert(6, Piece("text", 27, 29, "on screen: beware dog", "beware dog"))
    budget = 3 + 4 + 3  # the audio fact, the sign, one tag stretch
    chosen = select_pieces(pieces, "what text appears on screen?", cache, budget)
    assert chosen[0].kind == "audio"  # whole-video facts are always read
    assert any(p.kind == "text" for p in chosen)
    assert sum(len(cache.get([p.text])[0][0]) for p in chosen) <= budget
    assert [p.start for p in chosen] == sorted(p.start for p in chosen)
    assert select_pieces(pieces, "what text appears on screen?", cache, 10_000) == pieces


def test_retrieval_finds_the_one_sentence_among_many_alike(tiny_bert_dir: Path) -> None:
    # An hour of talk: many sentences where someone bought something; one about soup.
    cache = PieceCache(TextEncoder(str(tiny_bert_dir)))
    names, things = ["anna", "tom", "maria", "leo"], ["bread", "tea", "rice", "milk", "cake"]
    said = [f"{n} bought the {t} today." for n in names for t in things] * 10
    said.insert(137, "sam bought the soup today.")
    pieces = [Piece("speech", i, i + 1, f"said in english: {t}", t) for i, t in enumerate(said)]
    budget = 4 * len(cache.get([pieces[0].text])[0][0])
    chosen = select_pieces(pieces, "who bought the soup?", cache, budget)
    assert "sam bought the soup today." in [p.snippet for p in chosen]
    # A question reads only the few most like it (the model picks well among few); a
    # description reads as many as fit.
    assert len(chosen) == READ_AT_MOST
    assert len(select_pieces(pieces, DESCRIBE, cache, budget)) == 4


def test_evidence_names_the_units_scored_highest(tiny_model: GroundedCaptionerModel) -> None:
    cache = PieceCache(tiny_model.text_encoder)
    packed = pack(
        [context()],
        ["what did anna buy?"],
        cache,
        max_frames=8,
        max_question_tokens=16,
        max_context_tokens=48,
    )
    units = len(packed.units[0])
    scores = torch.full((1, units), -10.0)
    speech = next(i for i, u in enumerate(packed.units[0]) if u[0] == "speech")
    scores[0, speech] = 5.0
    frames = packed.frame_unit_offset[0]
    scores[0, frames + 2] = 4.9
    scores[0, frames + 3] = 4.9
    audio_logits = torch.zeros(1, 8, 5)
    audio_logits[0, :, 3] = 1.0  # music
    found = read_evidence(packed, scores, audio_logits)[0]
    assert found[0].kind == "speech" and found[0].snippet == "anna bought three apples."
    assert (found[0].start, found[0].end) == (1.0, 3.0)
    sound = [e for e in found if e.kind == "audio"]
    assert len(sound) == 1 and sound[0].snippet == "music"
    assert sound[0].start == pytest.approx(2.0) and sound[0].end == pytest.approx(4.0)


def test_pipeline_reads_a_real_file_and_answers_with_evidence(
    tiny_bert_dir: Path, make_video, tmp_path: Path
) -> None:
    # The tagger's 1000 classes (names do not matter here: the file's tags are given).
    model = build_grounded(tiny_config(tiny_bert_dir, 1000), class_names=CLASSES * 200).eval()
    path = make_video("h264_aac_mp4", duration=4)
    tags = lambda t: TimedTags(t, t, (Tag("golden retriever", "n02099601", 0.7, ("dog",)),))  # noqa: E731
    found = Perception(
        duration_s=4.0,
        transcript=Transcript(
            "en", 0.9, (SpeechSegment(0.5, 2.0, "anna bought three apples.", "en", 0.9),)
        ),
        text=(TextItem(1.0, 3.0, "BEWARE", 0.9),),
        frame_tags=tuple(tags(t + 0.5) for t in range(4)),
    )
    pipe = GroundedPipeline(model, device="cpu")
    ctx = pipe.context(found, path, isolate=False)
    assert ctx.has_audio and ctx.audio_heard.all()
    assert ctx.audio_mels.std() > 0  # the soundtrack was read, not zeros
    assert {p.kind for p in ctx.pieces} == {"speech", "text", "visual"}
    pipe.save_context(ctx, tmp_path / "context.npz")
    again = pipe.load_context(tmp_path / "context.npz")
    assert again.pieces == ctx.pieces and np.array_equal(again.audio_mels, ctx.audio_mels)
    answers = pipe.answer(again, ["what did anna buy?", "is there music?"])
    assert len(answers) == 2 and all(isinstance(a, Answer) for a in answers)
    for a in answers:
        if a.text == NO_ANSWER:
            assert a.evidence == ()
        for e in a.evidence:
            assert 0.0 <= e.start <= e.end <= 4.0
    segments = pipe.describe_segments(again, 2.0)
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.0), (2.0, 4.0)]
    with pytest.raises(ValueError, match="empty"):
        pipe.answer(again, ["  "])


def test_decoded_text_reads_as_prose() -> None:
    from models.captioner.grounded_pipeline import tidy

    decoded = 'a dog and a dog can be seen ; the words " beware of the dog " appear ; music - like'
    assert tidy(decoded) == 'a dog can be seen; the words "beware of the dog" appear; music-like'
    assert tidy("a dog and a cat can be seen .") == "a dog and a cat can be seen."
    said = 'a voice says in russian : " видняга " ; the words " english breakfast " appear .'
    assert tidy(said) == 'a voice says in Russian: "видняга"; the words "english breakfast" appear.'
    assert (
        tidy('a voice says in chinese : " 中 間 协 会 "') == 'a voice says in Chinese: "中間协会"'
    )


def test_a_restricted_vocabulary_survives_saving_and_loading(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # The decoder's lookup from word piece to its place among the writable ones is not saved:
    # a loaded model must rebuild it, not read memory garbage (that crashed `train --init`).
    torch.manual_seed(0)
    writable = list(range(5, 40))
    model = build_grounded(tiny_config(tiny_bert_dir), class_names=CLASSES, output_ids=writable)
    model.save_pretrained(tmp_path)
    again = GroundedCaptionerModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    table = again.output_index_table()
    assert table[writable].tolist() == list(range(len(writable)))
    assert int((table >= 0).sum()) == len(writable)
    packed = pack(
        [context()], ["what did anna buy?"], PieceCache(again.text_encoder),
        max_frames=8, max_question_tokens=16, max_context_tokens=48,
    )  # fmt: skip
    end = again.config.decoder_config.eos_token_id
    labels = torch.tensor([[20, 30, 45, end]])  # writable, writable, copy only, the end
    out = again(labels=labels, **packed.inputs)
    torch.testing.assert_close(out.logits, model.eval()(labels=labels, **packed.inputs).logits)


def test_a_transcript_segment_is_read_one_sentence_a_piece() -> None:
    from models.captioner.grounding import sentences

    words = [
        (0.0, 0.4, " Mr."), (0.4, 0.9, " John"), (0.9, 1.6, " Dashwood"), (1.6, 2.0, " had"),
        (2.0, 2.6, " leisure."), (3.1, 3.4, " It"), (3.4, 3.6, " was"), (3.6, 4.2, " late!"),
    ]  # fmt: skip
    text = "Mr. John Dashwood had leisure. It was late!"
    assert sentences(0.0, 4.4, text, "en", words) == [
        (0.0, 2.6, "Mr. John Dashwood had leisure.", "en"),  # a title is not an end
        (3.1, 4.2, "It was late!", "en"),  # timed by its words
    ]
    # Without word timings: shares of the characters; one sentence stays whole.
    (first, second) = sentences(10.0, 20.0, "One two three. Four five six.", "en")
    assert first[:1] == (10.0,) and second[1] == 20.0 and first[1] == second[0]
    assert sentences(0.0, 2.0, "just one sentence", None) == [(0.0, 2.0, "just one sentence", None)]


def span_model(bert: Path) -> tuple[GroundedCaptionerModel, dict[str, torch.Tensor]]:
    """A tiny model with the span head, and the packed inputs of one question about
    :func:`context`."""
    torch.manual_seed(0)
    config = tiny_config(bert)
    config.quote_spans = True
    model = build_grounded(config, class_names=CLASSES)
    packed = pack(
        [context()], ["what did anna buy?"], PieceCache(model.text_encoder),
        max_frames=8, max_question_tokens=16, max_context_tokens=48,
    )  # fmt: skip
    return model, packed.inputs


def test_a_quote_is_picked_whole_by_the_span_head(tiny_bert_dir: Path) -> None:
    # Whatever its weights, a model with the span head quotes a run of whole words of one
    # piece's content (never the question or a label), and closes the quote after it.
    model, inputs = span_model(tiny_bert_dir)
    model.eval()
    tok = model.text_encoder.tokenizer
    quote = tok.convert_tokens_to_ids('"')
    encoded = model.encode(**inputs)
    with torch.no_grad():
        model.final_logits_bias[quote] = 1e4  # the decoder opens a quote first
    ids, _ = model.greedy(encoded)
    seq = ids[0].tolist()
    assert seq[0] == quote
    marks = [i for i, t in enumerate(seq) if t == quote]
    quoted = [tok.decode(seq[a + 1 : b]) for a, b in zip(marks[::2], marks[1::2], strict=False)]
    pieces = (["anna", "bought", "three", "apples", "."], ["beware"])
    runs = [
        {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        for words in pieces
    ]
    # every quote is a run of one piece, and no piece is quoted twice: with both quoted, the
    # decoder that wants nothing but quotes can open no third one
    assert len(quoted) == 2 and len(marks) == 4
    assert sorted(next(k for k, r in enumerate(runs) if q in r) for q in quoted) == [0, 1]


def test_the_span_head_learns_from_the_quotes_of_the_targets(tiny_bert_dir: Path) -> None:
    model, inputs = span_model(tiny_bert_dir)
    model.train()
    tok = model.text_encoder.tokenizer
    labels = tok(['"three apples"'], return_tensors="pt")["input_ids"][:, 1:]
    source = torch.cat([torch.zeros_like(inputs["frame_units"]), inputs["text_ids"]], 1)[0].tolist()
    first = next(
        i for i, t in enumerate(source) if t == tok.convert_tokens_to_ids("three")
    )  # the transcript's "three" (the question has none)
    spans = torch.tensor([[0, 1, first, first + 1]])
    with torch.no_grad():  # what training finds by itself when no spans are given
        assert model.quote_targets(model.encode(**inputs), labels).tolist() == spans.tolist()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(labels=labels, quote_spans=spans, **inputs)
        assert out.losses is not None and "span" in out.losses
        losses.append(float(out.losses["span"].detach()))
        optimizer.zero_grad()
        assert out.loss is not None
        out.loss.backward()
        optimizer.step()
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    ids, _ = model.greedy(model.encode(**inputs))
    assert tok.decode(ids[0], skip_special_tokens=True).replace(" ", "") == '"threeapples"'
