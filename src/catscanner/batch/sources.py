"""SOURCE arguments -> the photos to scan, each with its size and modification time.

A SOURCE is
- a folder: searched recursively for image files (by suffix, as ``catscan scan`` does), sorted;
- a glob pattern: ``photos/**/*.jpg``, ``s3://bucket/2024/*/*.jpg`` (``**`` spans folders);
- a text file of paths (``.txt`` or ``.lst``): one path, URI, folder or glob per line; blank lines
  and lines starting with ``#`` are skipped; relative paths are relative to the current folder;
- a photo file (any name; what is not a photo becomes an error row).

Local paths are stored absolute (``/data/photos/a.jpg``); anything with a scheme
(``s3://``, ``gs://``, ``hdfs://``, ``file://``) is read through ``pyarrow.fs``, imported only then.
Size and mtime come from the listing (one request per 1,000 objects on S3/GCS); they are the
resume key together with the path.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import FileTooLargeError, UnreadableFileError
from ..runtime.decoding import IMAGE_SUFFIXES, file_kind
from ..runtime.schema import text_path
from .options import BatchError

LIST_SUFFIXES = frozenset({".txt", ".lst"})
_GLOB_CHARS = re.compile(r"[*?\[]")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Photo:
    """One photo to scan. ``error`` is set when it could not even be listed (an unreadable folder)."""

    path: str  # absolute local path, or a URI
    size: int | None = None  # bytes, from the listing (None: not found when listed)
    mtime_ns: int | None = None
    error: str | None = None
    error_code: str | None = None

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        """What ``--resume`` compares: the same path (as the rows store it) with the same size and
        mtime was scanned."""
        return (text_path(self.path), self.size, self.mtime_ns)

    @property
    def is_uri(self) -> bool:
        return is_uri(self.path)


@dataclass
class Expansion:
    photos: list[Photo]
    warnings: list[str]


def is_uri(source: str) -> bool:
    return bool(_SCHEME.match(source))


def has_glob(source: str) -> bool:
    return bool(_GLOB_CHARS.search(source))


def _suffix(path: str) -> str:
    return os.path.splitext(path.rstrip("/"))[1].lower()


def expand_sources(sources: Iterable[str]) -> Expansion:
    """All photos named by ``sources``, each once (first mention wins), in the order given."""
    warnings: list[str] = []
    seen: set[str] = set()
    photos: list[Photo] = []
    for source in sources:
        if not is_uri(source) and _suffix(source) in LIST_SUFFIXES and os.path.isfile(source):
            entries = list(_read_list(source))
            for entry in entries:
                _add(_expand_one(entry, warnings), photos, seen)
            if not entries:
                warnings.append(f"{source} lists no paths.")
        else:
            local = urlsplit(source).path if source.startswith("file://") else source
            if not is_uri(local) and not has_glob(local) and not os.path.lexists(local) \
                    and _suffix(local) not in IMAGE_SUFFIXES:  # a mistyped archive root, not a photo
                raise BatchError(f"{source}: no such file or folder. Check the path.")
            _add(_expand_one(source, warnings), photos, seen)
    return Expansion(photos, warnings)


def _add(found: Iterable[Photo], photos: list[Photo], seen: set[str]) -> None:
    for p in found:
        if p.path not in seen:
            seen.add(p.path)
            photos.append(p)


def _read_list(list_file: str) -> Iterator[str]:
    # utf-8-sig: a byte-order mark (Windows Notepad) is not part of the first path; surrogateescape:
    # a path in another encoding (Latin-1 names) keeps its bytes and opens as the file it names
    with open(list_file, encoding="utf-8-sig", errors="surrogateescape") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def _expand_one(source: str, warnings: list[str]) -> list[Photo]:
    if is_uri(source) and not source.startswith("file://"):
        return _expand_uri(source, warnings)
    if source.startswith("file://"):
        source = urlsplit(source).path
    return _expand_local(source, warnings)


# ------------------------------------------------------------------------------------ local
def _local_photo(path: str) -> Photo:
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return Photo(path)  # missing or unreadable: the scan reports it, as ``catscan scan`` does
    return Photo(path, st.st_size, st.st_mtime_ns)


def _expand_local(source: str, warnings: list[str]) -> list[Photo]:
    if os.path.isdir(source):
        found = _walk_local(source, warnings)
        if not found:
            warnings.append(f"{source}: no photos found in this folder (photo files end in {suffix_list()}).")
        return found
    if has_glob(source) and not os.path.exists(source):
        matches = _glob_local(source, warnings)
        if not matches:
            warnings.append(f"{source}: the pattern matched no files.")
        return [_local_photo(m) for m in matches]
    return [_local_photo(source)]


def _glob_local(pattern: str, warnings: list[str]) -> list[str]:
    """Files matching ``pattern`` (``**`` spans folders), sorted, as :func:`glob.glob` names them, but
    never deeper than the pattern reaches and, under ``**``, like :func:`walk_folder`, never through a
    linked folder (``glob`` followed a link to a parent round and round: one photo came out 41 times).
    A pattern without ``**`` reaches a fixed depth, so it follows links as ``glob`` does. As with
    ``glob``, a wildcard does not match a name starting with a dot."""
    first = _GLOB_CHARS.search(pattern).start()
    base = pattern[: pattern.rfind("/", 0, first) + 1]
    rest = pattern[len(base):]
    regex, depth = glob_regex(rest), None if "**" in rest else rest.count("/")
    hidden_ok = rest.startswith(".") or "/." in rest
    matches: list[str] = []
    for here, dirs, names in os.walk(base or ".", followlinks=depth is not None):
        rel = os.path.relpath(here, base or ".")
        rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        if depth is not None and rel.count("/") >= depth:
            dirs.clear()  # the pattern reaches no deeper
        elif depth is None:  # under **: linked folders are not followed
            for d in [d for d in dirs if os.path.islink(os.path.join(here, d))]:
                dirs.remove(d)
                if hidden_ok or not d.startswith("."):
                    warnings.append(f"{os.path.join(here, d)}: a linked folder, not followed under ** "
                                    "(name it on its own to scan it).")
        dirs[:] = sorted(d for d in dirs if hidden_ok or not d.startswith("."))
        matches += [os.path.join(here, n) if base else rel + n for n in names
                    if (hidden_ok or not n.startswith(".")) and regex.match(rel + n)
                    and os.path.isfile(os.path.join(here, n))]
    return sorted(matches)


@dataclass
class FolderListing:
    """What :func:`walk_folder` found: photo files with their ``os.stat`` (None when it failed: the
    scan reports why), (path, message) for what cannot be scanned, and warnings."""

    files: list[tuple[str, os.stat_result | None]]
    problems: list[tuple[str, str]]
    warnings: list[str]


def suffix_list() -> str:
    """The file name endings folders are searched for, for messages."""
    return ", ".join(sorted(IMAGE_SUFFIXES))


def walk_folder(folder: str) -> FolderListing:
    """Image files (by suffix) under ``folder``, sorted, paths joined onto ``folder`` as given. A
    sub-folder that cannot be listed and a photo name that is not a regular file (a named pipe, a
    device) are problems; linked folders are not followed (a link loop would never end), and each
    one skipped is a warning, as are macOS metadata files (``._name.jpg``), which are skipped.
    ``catscan scan`` and ``batch`` list folders with this."""
    listing = FolderListing([], [], [])

    def unlistable(e: OSError) -> None:
        listing.problems.append((e.filename, f"Could not list the folder {e.filename}: {e.strerror}. "
                                             "Check its permissions."))

    apple_double = 0
    for here, dirs, names in os.walk(folder, onerror=unlistable):
        for d in sorted(dirs):
            if os.path.islink(os.path.join(here, d)) and os.path.isdir(os.path.join(here, d)):
                listing.warnings.append(f"{os.path.join(here, d)}: a linked folder, not followed "
                                        "(name it on its own to scan it).")
        dirs.sort()
        for name in sorted(names):
            if _suffix(name) not in IMAGE_SUFFIXES:
                continue
            if name.startswith("._"):  # macOS keeps a file's metadata beside it as ._name: never a photo
                apple_double += 1
                continue
            path = os.path.join(here, name)
            try:
                st = os.stat(path)
            except OSError:
                listing.files.append((path, None))
                continue
            if stat.S_ISREG(st.st_mode):
                listing.files.append((path, st))
            else:
                listing.problems.append((path, f"{path} is not a regular file (it is a {file_kind(st.st_mode)}): "
                                               "give the path of a photo file."))
    if apple_double:
        listing.warnings.append(f"{folder}: skipped {apple_double} macOS metadata files (._*), which are not photos.")
    listing.files.sort(key=lambda f: f[0])
    return listing


def _walk_local(folder: str, warnings: list[str]) -> list[Photo]:
    """Image files under ``folder`` as photos (absolute paths), sorted; what cannot be listed or
    read is an error row."""
    listing = walk_folder(folder)
    warnings += listing.warnings
    errors = [Photo(os.path.abspath(path), error=message, error_code="io_error") for path, message in listing.problems]
    found = [Photo(os.path.abspath(path), st.st_size, st.st_mtime_ns) if st else Photo(os.path.abspath(path))
             for path, st in listing.files]
    return errors + sorted(found, key=lambda p: p.path)


# ------------------------------------------------------------------------------------ URIs
def pyarrow_fs():
    """``pyarrow.fs``, or a clear error when the extra is not installed."""
    try:
        import pyarrow.fs
    except ImportError:
        raise BatchError('reading or writing a URI (s3://, gs://, ...) needs pyarrow: pip install "catscanner[batch]"') from None
    return pyarrow.fs


_FILESYSTEMS: dict[tuple[str, str], tuple[object, str]] = {}  # (scheme, bucket/host) -> (filesystem, prefix)


def resolve_uri(uri: str):
    """(pyarrow filesystem, path inside it, prefix that turns a path back into a URI: ``prefix + path``).

    One filesystem per bucket or host, made on first use (S3 finds the bucket's region once)."""
    parts = urlsplit(uri)
    key = (parts.scheme, parts.netloc)
    if key not in _FILESYSTEMS:
        fs, path = pyarrow_fs().FileSystem.from_uri(uri)
        stripped, path = uri.rstrip("/"), path.rstrip("/")
        if not stripped.endswith(path):
            raise ValueError(f"cannot map {uri} to a path in its filesystem")
        _FILESYSTEMS[key] = (fs, stripped[: len(stripped) - len(path)])
    fs, prefix = _FILESYSTEMS[key]
    if not uri.startswith(prefix):
        raise ValueError(f"cannot map {uri} to a path in its filesystem")
    return fs, uri[len(prefix):], prefix


def _expand_uri(source: str, warnings: list[str]) -> list[Photo]:
    fs_mod = pyarrow_fs()
    if has_glob(source):
        return _glob_uri(source, warnings)
    try:
        fs, path, prefix = resolve_uri(source)
        info = fs.get_file_info(path)
    except (OSError, ValueError) as e:
        return [Photo(source, error=f"Could not read {source}: {e}", error_code="io_error")]
    if info.type == fs_mod.FileType.Directory:
        found = _list_uri(fs, path.rstrip("/"), prefix, recursive=True,
                          keep=lambda p: _suffix(p) in IMAGE_SUFFIXES)
        if not found:
            warnings.append(f"{source}: no photos found under this prefix.")
        return found
    if info.type == fs_mod.FileType.File:
        return [Photo(source, info.size, info.mtime_ns)]
    return [Photo(source)]  # not found: the scan reports it


def _list_uri(fs, base: str, prefix: str, *, recursive: bool, keep) -> list[Photo]:
    fs_mod = pyarrow_fs()
    try:
        infos = fs.get_file_info(fs_mod.FileSelector(base, recursive=recursive, allow_not_found=True))
    except OSError as e:
        return [Photo(prefix + base, error=f"Could not list {prefix + base}: {e}", error_code="io_error")]
    files = [i for i in infos if i.type == fs_mod.FileType.File and keep(i.path)]
    return [Photo(prefix + i.path, i.size, i.mtime_ns) for i in sorted(files, key=lambda i: i.path)]


def glob_regex(pattern: str) -> re.Pattern:
    """A glob pattern as a regex on '/'-separated paths: ``*``, ``?``, ``[...]`` stay inside one
    folder; ``**/`` matches any number of folders (also none)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:  # a character class; like * it never matches the folder separator
                body = pattern[i + 1:end]
                negate = body[:1] in ("!", "^")
                body = (body[1:] if negate else body).replace("\\", "\\\\")
                out.append(f"[^/{body}]" if negate else f"(?!/)[{body}]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _glob_uri(source: str, warnings: list[str]) -> list[Photo]:
    first = _GLOB_CHARS.search(source).start()
    base_uri = source[: source.rfind("/", 0, first) + 1]
    rest = source[len(base_uri):]
    try:
        fs, base, prefix = resolve_uri(base_uri)
    except (OSError, ValueError) as e:
        return [Photo(source, error=f"Could not read {base_uri}: {e}", error_code="io_error")]
    regex = glob_regex(base.rstrip("/") + "/" + rest)
    found = _list_uri(fs, base.rstrip("/"), prefix, recursive="/" in rest or "**" in rest,
                      keep=lambda p: regex.match(p) is not None)
    if not found:
        warnings.append(f"{source}: the pattern matched no files.")
    return found


# ------------------------------------------------------------------------------------ reading
def read_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of a photo at a URI, at most ``max_bytes`` (the errors ``catscan scan`` gives for files)."""
    try:
        fs, path, _ = resolve_uri(uri)
        with fs.open_input_stream(path) as f:
            data = f.read(max_bytes + 1)
    except (OSError, ValueError) as e:
        raise UnreadableFileError(f"Could not read {uri}: {e}. Check the URI and your credentials.") from None
    if len(data) > max_bytes:
        raise FileTooLargeError(f"{uri} is larger than {max_bytes / 2**20:.0f} MiB; photos over "
                                f"{max_bytes / 2**20:.0f} MiB are refused. Resize it or save it as JPEG.")
    return data
