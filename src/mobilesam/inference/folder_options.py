"""The folder pipeline's options and jobs, apart from the pipeline itself.

Standard library only: the ``mobilesam everything`` command derives its flags
from :class:`PipelineOptions` when its parser is built, which must stay cheap
(no numpy, Pillow or torch import) for every command of the program.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FolderJob:
    """One input image and the name of its result folder under the output folder."""

    path: Path
    name: str


@dataclass(frozen=True)
class PipelineOptions:
    """How much runs beside the segmenting thread.

    ``prefetch``: images read ahead (0: read in the calling thread);
    ``readers``: reader threads (more only help when decoding is slower than
    segmenting); ``write_queue``: finished images waiting for the writer (0: write
    in the calling thread); ``helper_nice``: added to the helper threads' nice value.
    """

    prefetch: int = 2
    readers: int = 1
    write_queue: int = 2
    helper_nice: int = 10

    def __post_init__(self) -> None:
        if self.prefetch < 0 or self.write_queue < 0 or self.readers < 1:
            raise ValueError(f"bad pipeline options {self}")


#: Every stage in the calling thread, one image after another.
SEQUENTIAL = PipelineOptions(prefetch=0, write_queue=0)


__all__ = ["SEQUENTIAL", "FolderJob", "PipelineOptions"]
