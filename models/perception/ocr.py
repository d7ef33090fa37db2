"""On-screen text: RapidOCR (PP-OCRv4 mobile, ONNX) on sampled frames, merged over time.

>>> reader = TextReader()                 # once per process
>>> session = reader.session()            # once per video
>>> for images, times in windows:         # bounded memory: one window at a time
...     session.feed(images, times)
>>> items = session.finish()              # list[TextItem], in time order

Which frames are read: at most one per ``interval_s`` (1 s), and only when the picture changed
since the last frame read (see :data:`CHANGE_LEVEL`); a frame that barely changed is taken to
show what the last read showed. Reads of consecutive read frames that say the same thing
(difflib ratio of at least :data:`SAME_TEXT_RATIO`) are one :class:`TextItem`; an item ends
when a read frame no longer shows it.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.perception.frames import check_frames, content_box, gray_thumbnail
from models.perception.result import TextItem
from models.perception.weights import verified

# A thumbnail pixel "changed" when its gray level moved by more than 0.1 of the range (about
# 25 of 255 levels): far above codec noise (a few levels) and below the contrast of any
# legible text against its background.
CHANGE_LEVEL = 0.1
# Read a frame again when at least 1% of the thumbnail's pixels changed. One line of caption
# text (a twentieth of the frame's height, half its width) covers about 2.5% of the picture,
# so a caption appearing, going or changing always crosses it; a static shot never does.
CHANGE_FRACTION = 0.01
THUMB_WIDTH = 96
# RapidOCR's confidence is the mean per-character CTC probability. Clean reads score above
# 0.9; reads under 0.6 mean that on average more than one character in three was a guess.
MIN_CONFIDENCE = 0.6
# Text needs two letters or digits: single characters are mostly edges and textures.
MIN_CHARS = 2
# Two reads are the same text when difflib's ratio (2 x matches / total length) on their
# normalised forms is at least 0.8: one wrong character in a ten-character text gives 0.9,
# two gives 0.8, while different words score far lower.
SAME_TEXT_RATIO = 0.8
# The recogniser often prefers "blank" over " " between words ("SUNRISERANCH") even though
# the space holds 20-60% of the mass in that column; every other column gives the space
# almost nothing. A blank column whose best non-blank symbol is the space, with at least this
# probability, is read as a space.
SPACE_PROB = 0.1


def normalise_text(text: str) -> str:
    """Upper case, single spaces, trimmed: the form reads are compared in."""
    return re.sub(r"\s+", " ", text).strip().upper()


def _key(text: str) -> str:
    # Comparison form: spaces are what the recogniser gets wrong most, so they do not count.
    return normalise_text(text).replace(" ", "")


def same_text(a: str, b: str) -> float:
    """difflib ratio of two texts in comparison form, in [0, 1]."""
    return difflib.SequenceMatcher(None, _key(a), _key(b), autojunk=False).ratio()


def _space_aware(decoder: Any) -> Any:
    """A copy of RapidOCR's CTC decoder that also reads likely spaces (see SPACE_PROB)."""
    from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

    class SpaceAwareDecode(CTCLabelDecode):
        def __call__(
            self, preds: np.ndarray, return_word_box: bool = False, **kwargs: Any
        ) -> list[Any]:
            space = len(self.character) - 1  # RapidOCR appends " " last (blank is 0)
            index = preds.argmax(axis=2)  # (N, columns)
            prob = preds.max(axis=2)
            best_symbol = preds[:, :, 1:].argmax(axis=2) + 1
            fill = (index == 0) & (best_symbol == space) & (preds[:, :, space] >= SPACE_PROB)
            index = np.where(fill, space, index)
            # The column surely holds no letter: its confidence is P(blank) + P(space).
            prob = np.where(fill, preds[:, :, 0] + preds[:, :, space], prob)
            return self.decode(index, prob, False, is_remove_duplicate=True)

    out = SpaceAwareDecode.__new__(SpaceAwareDecode)
    out.__dict__.update(decoder.__dict__)
    return out


@dataclass(frozen=True)
class Read:
    """One text box read on one frame; ``box`` in fractions (left, top, right, bottom)."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]


class TextReader:
    """RapidOCR with the checked PP-OCRv4 models, loaded once per process.

    Args:
        interval_s: Least time between two frames read.
        min_confidence: Reads below this are dropped.
        threads: ONNX Runtime threads per model (None: all cores).
        device: Accepted for symmetry with :class:`~models.perception.tags.Tagger`; the
            packaged onnxruntime is CPU-only, so OCR always runs on the CPU.
    """

    def __init__(
        self,
        *,
        device: object = None,
        interval_s: float = 1.0,
        min_confidence: float = MIN_CONFIDENCE,
        threads: int | None = None,
    ) -> None:
        from rapidocr_onnxruntime import RapidOCR

        det, rec, cls = verified("rapidocr")
        options: dict[str, Any] = {}
        if threads is not None:
            options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        self.engine = RapidOCR(
            det_model_path=str(det),
            rec_model_path=str(rec),
            cls_model_path=str(cls),
            text_score=min_confidence,
            # Detect at the frame's own size (at most 960 px): RapidOCR's default scales the
            # short side *up* to 736 px, which for a 540x960 frame costs about twice the work
            # and read no text here that the frame's own size missed.
            det_limit_type="max",
            det_limit_side_len=960,
            # Text turned upside down is rare in video; the angle classifier costs about a
            # quarter of each read.
            use_cls=False,
            **options,
        )
        self.engine.text_rec.postprocess_op = _space_aware(self.engine.text_rec.postprocess_op)
        self.interval_s = interval_s
        self.min_confidence = min_confidence
        self._lock = threading.Lock()

    def read(self, image: np.ndarray) -> list[Read]:
        """The text boxes of one uint8 (H, W, 3) RGB frame, junk dropped, top to bottom."""
        check_frames(image[None])
        h, w = image.shape[:2]
        top, bottom, left, right = content_box(image)  # black bars hold no text: skip them
        picture = np.ascontiguousarray(image[top:bottom, left:right, ::-1])  # RapidOCR: BGR
        with self._lock:
            result, _ = self.engine(picture)
        reads = []
        for points, text, score in result or []:
            text = re.sub(r"\s+", " ", str(text)).strip()
            if float(score) < self.min_confidence or sum(c.isalnum() for c in text) < MIN_CHARS:
                continue
            xy = np.asarray(points, dtype=np.float64)  # (4, 2) in the cropped picture
            x0, y0 = xy.min(axis=0) + np.array([left, top])
            x1, y1 = xy.max(axis=0) + np.array([left, top])
            box = (
                round(max(0.0, x0 / w), 4),
                round(max(0.0, y0 / h), 4),
                round(min(1.0, x1 / w), 4),
                round(min(1.0, y1 / h), 4),
            )
            reads.append(Read(text, float(score), box))
        return sorted(reads, key=lambda r: (r.box[1], r.box[0]))

    def session(self) -> TextSession:
        """A new per-video session."""
        return TextSession(self)


@dataclass
class _Open:
    """An item still on screen: its spellings and when it was seen."""

    start: float
    last_seen: float
    spellings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    best: Read | None = None

    def add(self, read: Read) -> None:
        self.spellings[read.text] += read.confidence
        if self.best is None or read.confidence > self.best.confidence:
            self.best = read

    def item(self, end: float) -> TextItem:
        # The spelling with the most total confidence: seen often and read clearly.
        text = max(self.spellings.items(), key=lambda kv: (kv[1], len(kv[0])))[0]
        assert self.best is not None
        return TextItem(
            start=round(self.start, 3),
            end=round(max(end, self.start), 3),
            text=text,
            confidence=round(self.best.confidence, 4),
            box=self.best.box,
        )


class TextSession:
    """Reads one video's frames window by window; keeps only what is on screen now.

    Times in consecutive ``feed`` calls must increase. Memory: one thumbnail and the open
    items, whatever the video's length.
    """

    def __init__(self, reader: TextReader) -> None:
        self.reader = reader
        self.items: list[TextItem] = []
        self.open: list[_Open] = []
        self.last_thumb: np.ndarray | None = None
        self.last_read_time: float | None = None
        self.last_time: float | None = None  # the last frame fed (read or not)
        self.frames_read = 0

    def changed(self, thumb: np.ndarray) -> bool:
        """Whether a frame differs enough from the last frame read to be read again."""
        if self.last_thumb is None or self.last_thumb.shape != thumb.shape:
            return True
        moved = np.abs(thumb - self.last_thumb) > CHANGE_LEVEL
        return bool(moved.mean() >= CHANGE_FRACTION)

    def feed(self, images: np.ndarray, times: np.ndarray) -> None:
        """Consider a window of frames: uint8 (T, H, W, 3) RGB, float times (T,) seconds."""
        check_frames(images, times)
        for image, t in zip(images, np.asarray(times, dtype=np.float64), strict=True):
            t = float(t)
            due = (
                self.last_read_time is None
                or t - self.last_read_time >= self.reader.interval_s - 1e-6
            )
            thumb = gray_thumbnail(image, THUMB_WIDTH) if due else None
            if thumb is not None and self.changed(thumb):
                self._update(self.reader.read(image), t)
                self.last_thumb = thumb
                self.last_read_time = t
                self.frames_read += 1
            else:  # unchanged (or not due): it shows what the last read frame showed
                for item in self.open:
                    item.last_seen = t
            self.last_time = t

    def _update(self, reads: list[Read], t: float) -> None:
        # Match each read to the open item it resembles most (one to one, best pairs first).
        pairs = sorted(
            (
                (same_text(r.text, item.best.text if item.best else ""), i, j)
                for i, r in enumerate(reads)
                for j, item in enumerate(self.open)
            ),
            reverse=True,
        )
        used_reads: set[int] = set()
        matched: set[int] = set()
        for ratio, i, j in pairs:
            if ratio < SAME_TEXT_RATIO or i in used_reads or j in matched:
                continue
            used_reads.add(i)
            matched.add(j)
            self.open[j].add(reads[i])
            self.open[j].last_seen = t
        # Gone from this read frame: it ended between the last frame that showed it and now.
        still = []
        for j, item in enumerate(self.open):
            if j in matched:
                still.append(item)
            else:
                self.items.append(item.item((item.last_seen + t) / 2))
        # New text: it appeared between the previous frame fed and now.
        start = t if self.last_time is None else (self.last_time + t) / 2
        for i, read in enumerate(reads):
            if i not in used_reads:
                item = _Open(start=start, last_seen=t)
                item.add(read)
                still.append(item)
        self.open = still

    def finish(self) -> list[TextItem]:
        """All items of the video, in time order (near-duplicates merged); ends the session."""
        end = self.last_time if self.last_time is not None else 0.0
        for item in self.open:
            self.items.append(item.item(end + self.reader.interval_s / 2))
        self.open = []
        return merge_items(self.items, gap_s=self.reader.interval_s)


def merge_items(items: list[TextItem], gap_s: float) -> list[TextItem]:
    """Join items with the same text (see SAME_TEXT_RATIO) whose times touch or are at most
    ``gap_s`` apart (one missed read), keeping the more confident spelling and box."""
    merged: list[TextItem] = []
    for item in sorted(items, key=lambda x: (x.start, x.end)):
        for k in range(len(merged) - 1, -1, -1):
            prev = merged[k]
            if (
                item.start - prev.end <= gap_s
                and same_text(prev.text, item.text) >= SAME_TEXT_RATIO
            ):
                best = prev if prev.confidence >= item.confidence else item
                merged[k] = TextItem(
                    start=min(prev.start, item.start),
                    end=max(prev.end, item.end),
                    text=best.text,
                    confidence=best.confidence,
                    box=best.box,
                )
                break
        else:
            merged.append(item)
    return sorted(merged, key=lambda x: (x.start, x.box[1]))
