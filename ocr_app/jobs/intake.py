"""Uploaded files -> the pages of a book, checked cheaply before anything is stored.

Page images, multi-page TIFFs and PDFs are counted without decoding a pixel
(``recognition.page_loader.count_pages``); a zip is opened and each member
taken as an uploaded file, in name order (one whose path leaves the zip's folder is listed,
not read). A file that cannot be read at all still becomes one page, failed with its reason,
so one bad page fails that page and not the book.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import lzma
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from recognition.image_file import FORMAT_SUFFIXES, ImageError, claimed_format

from ..errors import ApiError

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"   # an empty zip is its end-of-central-directory record alone


@dataclass
class SourceFile:
    """One readable upload (or zip member): its bytes and how many pages it has."""

    name: str
    data: bytes
    sha256: str
    extension: str
    page_count: int


@dataclass
class UnreadableFile:
    name: str
    code: str
    message: str


def file_extension(data: bytes) -> str:
    """The stored file's suffix, by the format its content was read as (never the uploader's: a file named
    .html is stored as what it is). Only files read as pages get here: a PDF or one of the core's formats."""
    if data.startswith(b"%PDF-"):
        return ".pdf"
    return FORMAT_SUFFIXES.get(claimed_format(data[:16]) or "", ".bin")


def _source(name: str, data: bytes, max_pixels: int, max_pages: int) -> SourceFile | UnreadableFile:
    try:
        pages = count_pages_checked(data, max_pixels, max_pages)
    except ImageError as exc:
        return UnreadableFile(name, exc.code, exc.message)
    return SourceFile(name, data, hashlib.sha256(data).hexdigest(), file_extension(data), pages)


def count_pages_checked(data: bytes, max_pixels: int, max_pages: int) -> int:
    """The file's page count, or ``max_pages + 1`` once it has more (the rest is never walked)."""
    from recognition.page_loader import count_pages

    if not data:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    pages = count_pages(data, max_pixels=max_pixels, stop_after=max_pages)
    if pages == 0:
        raise ImageError("no_pages", "the file has no pages")
    return pages


def _zip_members(name: str, data: bytes, limits: IntakeLimits,
                 budget: int) -> list[tuple[str, bytes | UnreadableFile]]:
    """The zip's files, unpacked, or why one is not; ``budget`` is what is left of the job's bytes after the
    uploads before it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist()
                 if not info.is_dir() and (_leaves_the_folder(info.filename) or not _hidden(info.filename))]
    # zipfile raises more than BadZipFile on a damaged directory: ValueError (an end record whose offsets go
    # negative), NotImplementedError (a "version needed" above what it reads), EOFError and OSError
    except (zipfile.BadZipFile, ValueError, NotImplementedError, EOFError, OSError) as exc:
        raise ApiError("corrupt_zip", f"{name} is not a readable zip file ({exc})") from None
    if len(infos) > limits.max_pages:
        raise ApiError("too_many_pages", f"{name} holds {len(infos)} files; a job takes at most {limits.max_pages} "
                                         "pages", 413)
    # declared sizes bound what is unpacked: zipfile stops a member at its declared size (a lying one fails its CRC)
    if sum(info.file_size for info in infos if not _leaves_the_folder(info.filename)) > budget:
        raise ApiError("job_too_large", f"{name} unpacks to more than the {limits.max_bytes} bytes a job takes "
                                        "(with the files before it)", 413)
    members: list[tuple[str, bytes | UnreadableFile]] = []
    for info in sorted(infos, key=lambda i: i.filename):
        member = f"{name}/{info.filename}"
        if _leaves_the_folder(info.filename):
            # Never unpacked anywhere, but not skipped unseen either (a '..' part looked hidden): the user is
            # told which file of the zip was not read, and why.
            members.append((member, UnreadableFile(member, "unsafe_zip_path", f"{info.filename!r} is not read: its "
                                                   "path leaves the zip's folder ('..' or absolute)")))
            continue
        try:
            members.append((member, _unpack(archive, info)))
        # CRC, encryption, method; a damaged deflate or LZMA stream (zlib.error, LZMAError; bzip2's is an
        # OSError), one cut short (EOFError), bad offsets (ValueError)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError,
                EOFError, ValueError) as exc:
            members.append((member, UnreadableFile(member, "corrupt_zip_member", f"cannot unpack: {exc}")))
    return members


UNPACK_CHUNK = 1 << 20


def _unpack(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, at most its declared size in memory.

    ``ZipFile.read`` inflates everything its one read of the compressed stream yields and only then cuts
    it to the declared size: a 1 MB member declaring 1 000 bytes took 2 GB. Reading in chunks bounds each
    inflate step, and ZipExtFile stops at the declared size (a member that lies then fails its CRC).
    """
    chunks = []
    with archive.open(info) as member:
        while chunk := member.read(UNPACK_CHUNK):
            chunks.append(chunk)
    return b"".join(chunks)


def _leaves_the_folder(path: str) -> bool:
    """A member path that would land outside the folder it is unpacked into: absolute (``/x``, ``C:/x``) or
    with a ``..`` part, whichever slash separates them (zips made on Windows may hold backslashes). A colon
    alone is no drive: ``a:b.png`` is a file name Linux and macOS allow."""
    normal = path.replace("\\", "/")
    return normal.startswith("/") or re.match(r"[A-Za-z]:/", normal) is not None or ".." in normal.split("/")


def _hidden(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


@dataclass
class IntakeLimits:
    max_pages: int
    max_bytes: int
    max_pixels: int


def read_uploads(files: list[tuple[str, bytes]], limits: IntakeLimits) -> list[SourceFile | UnreadableFile]:
    """Every upload (zips opened) as a readable source or an unreadable one, in upload order."""
    if not files:
        raise ApiError("missing_files", "send the pages as one or more multipart file fields named 'files' "
                                        "(page images, multi-page TIFFs, PDFs or a zip of images)")
    if sum(len(data) for _, data in files) > limits.max_bytes:
        raise ApiError("job_too_large", f"the files add up to more than {limits.max_bytes} bytes", 413)
    sources: list[SourceFile | UnreadableFile] = []
    unpacked = 0   # the job's bytes as they will sit in memory and storage: every zip counted unpacked, together
    for name, data in files:
        name = "".join(c for c in name if c.isprintable()) or "upload"   # shown, stored, used in file names
        if data.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
            members = _zip_members(name, data, limits, limits.max_bytes - unpacked)
            unpacked += sum(len(content) for _, content in members if isinstance(content, bytes))
            for member, content in members:
                member = "".join(c for c in member if c.isprintable())
                if isinstance(content, UnreadableFile):
                    sources.append(dataclasses.replace(content, name=member))
                else:
                    sources.append(_source(member, content, limits.max_pixels, _pages_left(sources, limits)))
        else:
            unpacked += len(data)
            if unpacked > limits.max_bytes:
                raise ApiError("job_too_large", f"the files add up to more than {limits.max_bytes} bytes "
                                                "(zips counted unpacked)", 413)
            sources.append(_source(name, data, limits.max_pixels, _pages_left(sources, limits)))
    if not sources:
        raise ApiError("missing_files", "the upload holds no files (an empty zip, or one of folders only?)")
    if not any(isinstance(s, SourceFile) for s in sources):
        reasons = "; ".join(f"{s.name}: {s.code}" for s in sources[:10])
        raise ApiError("no_readable_pages", f"none of the files is a page image, TIFF, PDF or zip of them ({reasons})")
    total = _page_total(sources)
    if total == 0:
        raise ApiError("missing_files", "the upload holds no pages (an empty zip?)")
    if total > limits.max_pages:
        raise ApiError("too_many_pages", f"the upload has more than {limits.max_pages} pages, the most a job takes",
                       413)
    return sources


def _page_total(sources: list[SourceFile | UnreadableFile]) -> int:
    return sum(s.page_count if isinstance(s, SourceFile) else 1 for s in sources)


def _pages_left(sources: list[SourceFile | UnreadableFile], limits: IntakeLimits) -> int:
    """How many pages the next file may have (counting stops one past it: the job is refused then anyway)."""
    return max(0, limits.max_pages - _page_total(sources))


def page_names(sources: list[SourceFile | UnreadableFile]) -> list[list[str]]:
    """Output file stems: ``scan01`` for a one-page file, ``book-p0003`` for page 3 of a book; never twice."""
    used: set[str] = set()
    names = []
    for source in sources:
        stem = safe_stem(source.name)
        count = source.page_count if isinstance(source, SourceFile) else 1
        wanted = [stem] if count == 1 else [f"{stem}-p{n:04d}" for n in range(1, count + 1)]
        unique = []
        for name in wanted:
            candidate, k = name, 2
            while candidate.lower() in used:
                candidate, k = f"{name}-{k}", k + 1
            used.add(candidate.lower())
            unique.append(candidate)
        names.append(unique)
    return names


def safe_stem(name: str) -> str:
    stem = PurePosixPath(name.replace("\\", "/")).stem
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "page"
    return cleaned[:150]
