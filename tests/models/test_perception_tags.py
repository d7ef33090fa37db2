"""ImageNet table, EfficientNet-Lite0 tagger, tag aggregation and the Lite0 captioner backbone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.perception.result import Tag, TimedTags
from models.perception.tags import (
    TABLE_PATH,
    Tagger,
    build_efficientnet_lite0,
    imagenet_classes,
    lite0_features,
    names,
    summarize,
    top_labels,
)

# ---------------------------------------------------------------------- the ImageNet table


def test_imagenet_table_has_1000_unique_synsets_and_is_small():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert len({c.synset for c in classes}) == 1000
    assert all(re.fullmatch(r"n\d{8}", c.synset) and c.label for c in classes)
    assert TABLE_PATH.stat().st_size < 300_000
    assert json.loads(TABLE_PATH.read_text())["classes"][0]["synset"] == "n01440764"  # tench


def test_imagenet_table_maps_classes_to_common_names():
    by_label = {c.label: c for c in imagenet_classes()}
    dogs = [c for c in imagenet_classes() if 151 <= c.index <= 268]  # the 118 dog classes
    assert all(c.names[0] == "dog" for c in dogs)
    assert by_label["golden retriever"].names == ("dog", "mammal", "animal")
    for car in ("sports car", "convertible", "cab", "beach wagon"):
        assert by_label[car].names[:1] == ("car",) and "vehicle" in by_label[car].names
        assert "container" not in by_label[car].names
    assert by_label["tabby"].names[0] == "cat"
    assert by_label["brown bear"].names[0] == "bear"
    assert by_label["bald eagle"].names[:2] == ("bird of prey", "bird")
    assert by_label["Granny Smith"].names[0] == "fruit" and "food" in by_label["Granny Smith"].names
    assert by_label["pizza"].names[-1] == "food"
    assert by_label["daisy"].names[0] == "flower"
    assert by_label["teddy"].names == ("toy",)
    assert by_label["tench"].names[0] == "fish"
    assert by_label["canoe"].names[0] == "boat"


# ---------------------------------------------------------------------- aggregation (no model)


def _tag(label: str, score: float, names_: tuple[str, ...] = ()) -> Tag:
    return Tag(label=label, synset=f"n{abs(hash(label)) % 10**8:08d}", score=score, names=names_)


def test_summarize_keeps_tags_above_threshold_per_segment_and_best_segment_for_video():
    dog = ("dog", "mammal", "animal")
    frames = [
        TimedTags(0.0, 0.0, (_tag("beagle", 0.5, dog), _tag("kite", 0.05))),
        TimedTags(1.0, 1.0, (_tag("beagle", 0.3, dog), _tag("basset", 0.3, dog))),
        TimedTags(2.0, 2.0, (_tag("canoe", 0.9, ("boat",)),)),
        TimedTags(3.0, 3.0, (_tag("canoe", 0.7, ("boat",)),)),
    ]
    summary = summarize(frames, [(0.0, 2.0), (2.0, 4.0)], threshold=0.15)
    first, second = summary.segment_tags
    assert [t.label for t in first.tags] == ["beagle", "basset"]
    assert first.tags[0].score == pytest.approx(0.4)
    assert [t.label for t in second.tags] == ["canoe"]
    assert [t.label for t in summary.tags] == ["canoe", "beagle", "basset"]  # strongest first
    assert dict(summary.names)["dog"] == pytest.approx(0.55)  # breeds add up
    assert dict(summary.names)["boat"] == pytest.approx(0.8)
    # one span: the canoe is in half the frames, a mean of 0.4
    whole = summarize(frames)
    assert whole.segment_tags == ()
    assert {t.label: t.score for t in whole.tags}["canoe"] == pytest.approx(0.4)
    assert names(frames, threshold=0.0)[0] == ("boat", pytest.approx(0.4))
    assert summarize([]).tags == ()


# ---------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(device="cpu")


def _pad(image: np.ndarray, size: tuple[int, int] = (540, 960)) -> np.ndarray:
    """Fit a photo into 540x960 with black bars, as models.media's Fit.PAD does."""
    import cv2

    h, w = image.shape[:2]
    scale = min(size[0] / h, size[1] / w)
    nh, nw = round(h * scale), round(w * scale)
    out = np.zeros((*size, 3), np.uint8)
    y, x = (size[0] - nh) // 2, (size[1] - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def test_embed_and_classify_shapes_and_batches(tagger: Tagger):
    images = np.random.default_rng(0).integers(0, 255, (5, 100, 180, 3), dtype=np.uint8)
    tagger.batch_size = 2
    try:
        features, probs = tagger.embed_and_classify(images)
    finally:
        tagger.batch_size = 32
    assert features.shape == (5, 1280) and features.dtype == torch.float32
    assert probs.shape == (5, 1000)
    assert torch.allclose(probs.sum(-1), torch.ones(5), atol=1e-4)
    one, _ = tagger.embed_and_classify(images[3:4])
    assert torch.allclose(one[0], features[3], atol=1e-4)  # batching does not change a frame
    tags = tagger.tag_frames(images, np.arange(5.0), top_k=3)
    assert [t.start for t in tags] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(len(t.tags) <= 3 for t in tags)
    with pytest.raises(ValueError, match="uint8"):
        tagger.embed_and_classify(images.astype(np.float32))


# Words of the manifest's `visible` lists that name an object under another ImageNet name.
SYNONYMS = {"beach": ("seashore", "sandbar"), "kites": (), "people": ()}
# Photos none of whose listed objects is an ImageNet-1k class: people, a toy kite (ImageNet's
# "kite" is the bird), a plaza and flower beds.
NOT_IN_IMAGENET = {"photos/kite_flyer_plaza_coco569.jpg"}


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _matches(visible: list[str], tags: tuple[Tag, ...]) -> list[str]:
    words = set()
    for w in top_labels(tags):
        words.add(w)
        words.update(w.split())
    hits = []
    for v in visible:
        wanted = {_singular(v.lower()), *SYNONYMS.get(v.lower(), ())}
        if wanted & words:
            hits.append(v)
    return hits


@pytest.mark.slow
def test_photos_expected_object_in_top5(tagger: Tagger, real_data: Path, real_manifest):
    photos = {k: v for k, v in real_manifest.items() if k.startswith("photos/")}
    report, hits, known = [], 0, 0
    for name, item in sorted(photos.items()):
        image = _pad(np.asarray(Image.open(real_data / name).convert("RGB")))
        (frame,) = tagger.tag_frames(image[None], np.zeros(1), top_k=5)
        found = _matches(item["visible"], frame.tags)
        if name not in NOT_IN_IMAGENET:
            known += 1
            hits += bool(found)
        report.append(f"{name}: {[t.label for t in frame.tags]} -> {found}")
    print("\n".join(report))
    assert hits >= 0.7 * known, "\n".join(report)


@pytest.mark.slow
def test_eagle_photo_gives_an_eagle_class(tagger: Tagger, real_data: Path):
    image = np.asarray(Image.open(real_data / "photos/eagle.jpg").convert("RGB"))
    (frame,) = tagger.tag_frames(image[None], np.zeros(1))
    assert "bald eagle" in [t.label for t in frame.tags]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("clip", "word"), [("bear.mp4", "bear"), ("cat.mp4", "cat"), ("teddy_bear.mp4", "teddy")]
)
def test_real_clips_are_tagged(tagger: Tagger, real_data: Path, clip: str, word: str):
    from models.media import sample_frames

    images, times = sample_frames(real_data / "clips" / clip, fps=1.0, size=(540, 960), fit="pad")
    frame_tags = tagger.tag_frames(images, times)
    summary = summarize(frame_tags)
    said = top_labels(summary.tags) + [n for n, _ in summary.names]
    top = [t.label for f in frame_tags for t in f.tags[:5]]
    assert any(word in w for w in said) or any(word in w for w in top), (summary, top)


# ---------------------------------------------------------------------- the captioner backbone


def _lite_config():
    from tests.conftest import tiny_config

    base = tiny_config(300)
    videobert = {**base.videobert_config.to_dict(), "visual_feature_size": 1280}
    return tiny_config(300, visual_backbone="efficientnet-lite0", videobert_config=videobert)


def test_lite0_backbone_in_captioner_gives_its_features_and_round_trips(tmp_path):
    from models.captioner.backbones import EfficientNetLiteBackbone, backbone_id
    from models.captioner.modeling_captioner import VideoCaptionerModel

    config = _lite_config()
    assert config.image_size == 224
    model = VideoCaptionerModel(config).eval()
    assert isinstance(model.visual_backbone, EfficientNetLiteBackbone)
    frames = torch.randint(0, 256, (2, 3, 3, 224, 224), dtype=torch.uint8)
    features = model.visual_backbone(frames)
    assert features.shape == (2, 3, 1280)
    reference = lite0_features(
        build_efficientnet_lite0(), (frames.flatten(0, 1).float() - 127.0) / 128.0
    )
    assert torch.allclose(features.flatten(0, 1), reference, atol=1e-4)
    # frozen and never saved: the checkpoint holds no Lite0 weight
    assert not any(k.startswith("visual_backbone.") for k in model.state_dict())
    assert not any(p.requires_grad for p in model.visual_backbone.tower.parameters())
    model.train()
    assert not model.visual_backbone.tower.training
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size < 5_000_000  # Lite0 alone is 18.8 MB
    again = VideoCaptionerModel.from_pretrained(tmp_path).eval()
    assert again.config.visual_backbone == "efficientnet-lite0"
    assert torch.equal(again.visual_backbone(frames), features)
    assert backbone_id(again.visual_backbone) == backbone_id(model.visual_backbone)
    assert backbone_id(model.visual_backbone).startswith("efficientnet-lite0-")


def test_lite0_backbone_config_is_checked():
    from models.captioner.configuration_videobert import VideoCaptionerConfig

    with pytest.raises(ValueError, match="unknown visual_backbone"):
        VideoCaptionerConfig(visual_backbone="resnet")
    with pytest.raises(ValueError, match="not both"):
        VideoCaptionerConfig(
            visual_backbone="efficientnet-lite0",
            visual_backbone_config={"model_type": "clip_vision_model"},
        )
    assert VideoCaptionerConfig().visual_backbone is None
