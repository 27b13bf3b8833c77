"""How `pepx serve` behaves: `ServeSettings`, a pydantic model whose fields declare each setting's type,
range and default once; a bad value is one `ConfigError` line naming the option (`--max-wait-ms inf: must be
a number in [0, 10000]`), an unknown name one line with the closest known one (`did you mean
'decode_workers'?`). docs/serving.md lists the options.

Threads in serving have two names: `decode_workers` (the pool decoding uploads and drawing Grad-CAM) and
`inference_threads` (`DynamicBatcher`'s threads running the network).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from pepx.data.io import MAX_PIXELS
from pepx.serving.batching import MAX_WAIT_MS
from pepx.settings_errors import Settings

Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ServeSettings(Settings):
    """How the server behaves (every field is a `pepx serve` option; docs/serving.md explains them).

    Args:
        token: bearer token every `/v1/` call must carry; None: no authentication.
        cors_origins: origins allowed to call the API from a browser; empty: no CORS headers at all.
        max_upload_mb: largest request body (all files of one request together).
        max_files: most `file` fields in one request.
        max_pixels: largest decoded image (width x height); bigger ones are refused as decompression bombs.
        max_batch: most images in one forward pass (1: dynamic batching off).
        max_wait_ms: longest wait for more images to fill a batch.
        max_queue: most images waiting for inference; beyond it requests get 503 + Retry-After.
        decode_workers: threads that decode uploads and draw Grad-CAM maps.
        cam_size: longest side of the Grad-CAM pictures returned, in pixels.
        runtime_info: how the runtime was chosen (shown by /v1/health).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_upload_mb: Annotated[Float, Field(ge=0.001, le=1024.0)] = 32.0
    max_files: Annotated[Int, Field(ge=1, le=256)] = 16
    max_pixels: Annotated[Int, Field(ge=1, le=1_000_000_000)] = MAX_PIXELS
    max_batch: Annotated[Int, Field(ge=1, le=1024)] = 16
    max_wait_ms: Annotated[Float, Field(ge=0.0, le=MAX_WAIT_MS)] = 5.0
    max_queue: Annotated[Int, Field(ge=1, le=100_000)] = 64
    decode_workers: Annotated[Int, Field(ge=1, le=64)] = 2
    cam_size: Annotated[Int, Field(ge=16, le=4096)] = 512
    runtime_info: dict[str, Any] = Field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


__all__ = ["ServeSettings"]
