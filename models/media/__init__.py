"""The media layer: probe untrusted video files, sample their frames, read their audio.

>>> info = probe("clip.mp4")                          # MediaInfo, or MediaError with a code
>>> images, times = sample_frames("clip.mp4", num_frames=16, size=224)
>>> audio = read_audio("clip.mp4")                    # mono float32 at 16 kHz, or None
>>> windows, mask = audio_windows(audio, 16000, times)  # one window per frame
"""

from models.media.audio import audio_windows
from models.media.errors import MediaError, MediaErrorCode
from models.media.geometry import Fit
from models.media.info import MediaInfo
from models.media.limits import MediaLimits
from models.media.reader import (
    DEFAULT_SAMPLE_RATE,
    Backend,
    Clip,
    Frames,
    load_clip,
    probe,
    read_audio,
    sample_frames,
)
from models.media.sampling import SampleMode

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "Backend",
    "Clip",
    "Fit",
    "Frames",
    "MediaError",
    "MediaErrorCode",
    "MediaInfo",
    "MediaLimits",
    "SampleMode",
    "audio_windows",
    "load_clip",
    "probe",
    "read_audio",
    "sample_frames",
]
