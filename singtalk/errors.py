"""One exception family users can act on.

Every error the library raises on purpose derives from :class:`SingtalkError`;
its message is meant to be shown to a person as is (no traceback needed).
"""


class SingtalkError(Exception):
    """Root of all singtalk errors; ``str(err)`` is a user-facing message."""


class AudioError(SingtalkError):
    """The audio itself cannot be used."""


class UnreadableAudio(AudioError):
    """The file is not audio ffmpeg can decode (corrupt, truncated, not audio)."""


class NoAudioStream(AudioError):
    """The container holds no audio stream (a video without sound, an image...)."""


class TooShort(AudioError):
    """Less sound than the classifier needs."""


class TooLong(AudioError):
    """More audio than this installation accepts."""


class SilentAudio(AudioError):
    """Nothing audible: digital silence or only noise far below any voice."""


class NoVoice(AudioError):
    """Vocal extraction found no voice: what it kept is far quieter than the music.

    Raised only where samples, not an answer, are asked for (:meth:`singtalk.classify.Classifier.load` with
    ``separate``); classifying (``Classifier.analyse``, ``classify_source``, ``singtalk classify``) answers
    ``no_voice`` with a note instead.
    """


class DownloadRefused(SingtalkError):
    """A URL refused before any download (scheme, private host, playlist, too long)."""


class DownloadFailed(SingtalkError):
    """A permitted download that did not succeed."""


class SeparationUnavailable(SingtalkError):
    """Vocal extraction cannot run (missing or partial Spleeter weights)."""


class ModelError(SingtalkError):
    """A model that is missing, unreadable or incompatible with this code."""


class StoreLocked(SingtalkError):
    """Another job holds the model store's lock."""


class DatasetError(SingtalkError):
    """A labelled set or feature table that is malformed."""
