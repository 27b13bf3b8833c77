"""Uploaded files: size limit, type sniffed from the bytes, decoding, each failure as an HTTP status + reason.

    413  the request body is over the limit (`BodyLimit` refuses a declared Content-Length over it at once and
         counts the bytes as they arrive, so a missing or false Content-Length does not get round it), too
         many files, or an image with more pixels than `max_pixels` (a decompression bomb: refused from its
         header, before any pixel is decoded)
    415  the bytes are not PNG, JPEG or DICOM, whatever the file name or the Content-Type say
    422  empty, truncated or undecodable, DICOM without pixel data - with the decoder's reason

Where the bytes live: Starlette keeps an uploaded part in memory up to 1 MB and beyond that in an anonymous
temporary file (created already unlinked, readable only by this process); `read_upload` copies the part into
memory, up to the limit, and closes it, which frees the file. Decoding then runs on the bytes in memory
(`pepx.data.read_image_bytes`, the same decoder as `pepx predict`'s files); nothing is written anywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pepx.data.errors import ImageReadError, ImageTooLargeError
from pepx.data.io import MAX_PIXELS, has_dicom_marker, read_image_bytes

#: Media types accepted, by their leading bytes (DICOM: the `DICM` marker after the 128-byte preamble).
ACCEPTED = ("image/png", "image/jpeg", "application/dicom")
_CHUNK = 1 << 20


class UploadError(Exception):
    """An upload refused with HTTP `status` and a one-line `reason` naming the file."""

    def __init__(self, status: int, filename: str, reason: str) -> None:
        self.status, self.filename, self.reason = status, filename, reason
        super().__init__(f"{filename}: {reason}")


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit; FastAPI turns it into the 413 response."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 (JSON, with the limit).

    Written here rather than taking Starlette's `max_body_size` (Starlette >= 1.6): that one answers a
    declared oversize body in plain text without the limit, and would pin the newest FastAPI."""

    def __init__(self, app: ASGIApp, max_bytes: int, hint: str = "") -> None:
        self.app, self.max_bytes = app, max_bytes
        self.detail = f"request body is over the upload limit of {max_bytes / 1e6:g} MB{hint}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen, started = 0, False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.detail)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:  # raised outside a FastAPI route's body parsing
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self.detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Upload:
    """One uploaded file read into memory."""

    filename: str
    data: bytes


def sniff(data: bytes) -> str | None:
    """The media type of `data` from its leading bytes: one of `ACCEPTED`, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if has_dicom_marker(data[:132]):
        return "application/dicom"
    return None


async def read_upload(upload: UploadFile, max_bytes: int) -> Upload:
    """Copy one part into memory (at most `max_bytes`, else 413) and close it."""
    name = upload.filename or "upload"
    chunks, size = [], 0
    try:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise UploadError(413, name, f"file is over the upload limit of {max_bytes / 1e6:g} MB")
            chunks.append(chunk)
    finally:
        await upload.close()
    return Upload(name, b"".join(chunks))


def decode(upload: Upload, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """The image as float32 [H, W] in [0, 1] (as `pepx.data.read_image`) and its sniffed media type.

    Raises `UploadError` with 415, 422 or 413 (see the module docstring)."""
    name, data = upload.filename, upload.data
    if not data:
        raise UploadError(422, name, "empty file (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise UploadError(415, name, "not a PNG, JPEG or DICOM file (judged by its content, not its name)")
    try:
        image = read_image_bytes(data, name, max_pixels=max_pixels, dicom=kind == "application/dicom")
    except ImageTooLargeError as err:
        raise UploadError(413, name, err.reason) from None
    except ImageReadError as err:
        raise UploadError(422, name, err.reason) from None
    return image, kind


__all__ = ["ACCEPTED", "BodyLimit", "BodyTooLarge", "Upload", "UploadError", "decode", "read_upload", "sniff"]
